"""The alert dispatcher (bot.follows.dispatch) on a real store, both backends, with a
fake sender and clock: who hears of which change, once, and how every ending is kept."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bot.briefings.planner import Shards
from bot.briefings.retention import ALERTS_KEPT_AT_LEAST, prune_alert_deliveries
from bot.briefings.sender import DeliveryFailure
from bot.follows.compose import MemberAlert
from bot.follows.dispatch import (
    ALERT_WINDOW,
    DEAD_AFTER,
    HOLD_AT_MOST,
    LOOK_BACK,
    POLL_SECONDS,
    QUIET_FOR,
    AlertDispatcher,
    gone_from_this_host,
    worker_name,
)
from bot.follows.follows import FOLLOW_LIMIT, Follows
from bot.rate_budget import RateBudget
from bot.store import Store
from tests.engine_rig import FakeClock, FakeSender, no_sleep, store_on_both_backends

__all__ = ["store_on_both_backends"]

ALICE, BOB, CAROL = 101 << 22, 102 << 22, 103 << 22
GUILD = 81_000_000_000_000_000


@dataclass
class FakeAlertSender(FakeSender):
    """Also DMs: opens channels (one per user), refuses closed DMs as Discord does."""

    dms: list[tuple[int, MemberAlert, str]] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)
    dm_failures: list[str] = field(default_factory=list)

    async def open_dm(self, user_id: int) -> int:
        self.opened.append(user_id)
        return user_id + 1

    async def send_dm(self, channel_id: int, alert: MemberAlert, *, nonce: str, marker: str) -> int:
        if channel_id - 1 in self.closed:
            raise DeliveryFailure("direct messages are closed (Discord error 50007)", kind="pause")
        if self.dm_failures:
            kind = self.dm_failures.pop(0)
            raise DeliveryFailure(f"simulated {kind}", kind=kind)  # type: ignore[arg-type]
        earlier = self.seen_nonces.get(nonce)
        if earlier is not None and self.clock.now - earlier[1] <= self.nonce_window:
            return earlier[0]
        self.dms.append((channel_id - 1, alert, nonce))
        self.seen_nonces[nonce] = (len(self.dms), self.clock.now)
        self.markers[marker] = len(self.dms)
        return len(self.dms)

    def to(self, user_id: int) -> list[MemberAlert]:
        return [alert for user, alert, _ in self.dms if user == user_id]


@dataclass
class AlertRig:
    store: Store
    follows: Follows
    dispatcher: AlertDispatcher
    sender: FakeAlertSender
    clock: FakeClock

    async def rate(self, slug: str, status: str, note: str = "") -> None:
        await self.store.set_status(
            slug, status, note=note, changed_by="operator:ann", evidence_url="https://e.example/1"
        )

    async def settle(self) -> int:
        """A round after the changes have been quiet long enough to travel."""
        self.clock.now = datetime.now(UTC) + QUIET_FOR
        return await self.dispatcher.deliver_pending()

    async def states(self, recipient_id: int) -> list[tuple[str, str | None]]:
        rows = await self.store.rows(
            "SELECT state, error FROM alert_deliveries WHERE recipient_id = ? ORDER BY event_id",
            (recipient_id,),
        )
        return [(r[0], r[1]) for r in rows]


def new_alert_rig(store: Store, shards: Shards | None = None) -> AlertRig:
    clock = FakeClock(datetime.now(UTC))
    sender = FakeAlertSender(clock)
    budget = RateBudget(store.db, 1000, sleep=no_sleep)
    dispatcher = AlertDispatcher(
        store.db,
        sender,
        budget,
        clock=clock,
        sleep=no_sleep,
        **({"shards": shards} if shards else {}),
    )
    return AlertRig(store, Follows(store.db), dispatcher, sender, clock)


@pytest.fixture
def rig(loaded_store: Store) -> AlertRig:
    return new_alert_rig(loaded_store)


async def some_pledges(store: Store, count: int = 2) -> list[str]:
    return [p.slug for p in (await store.pledges())[:count]]


async def test_a_follower_gets_one_dm_per_change_and_only_once(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    assert await rig.follows.add(ALICE, "pledge", pledge) == "added"
    await rig.rate(pledge, "in-progress", "work began")
    assert await rig.settle() == 1
    [alert] = rig.sender.to(ALICE)
    [card] = alert.message.cards
    assert "In progress" in (card.description or "")
    assert any(f.value == "https://e.example/1" for f in card.fields)
    assert any("work began" in f.value for f in card.fields)
    assert [label for _, label in alert.show] == ["Show pledge"]
    assert [s.label for s in alert.stop] == ["Stop alerts for this"]
    assert await rig.settle() == 0  # nothing twice
    assert await rig.states(ALICE) == [("sent", None)]
    assert rig.sender.opened == [ALICE]  # the DM channel is kept: opened once


async def test_changes_made_before_the_alert_went_out_travel_together(rig: AlertRig) -> None:
    pledges = await some_pledges(rig.store, 2)
    await rig.follows.add(ALICE, "pledge", pledges[0])
    statement = (await rig.store.pledges(slugs=pledges))[0].statement_slug
    await rig.follows.add(ALICE, "statement", statement)  # follows both: still one DM
    for status in ("in-progress", "stalled", "broken"):
        await rig.rate(pledges[0], status)
    await rig.rate(pledges[1], "delivered")
    rig.clock.now = datetime.now(UTC)
    assert await rig.dispatcher.deliver_pending() == 0  # still coming in: held
    assert await rig.settle() == 1
    [alert] = rig.sender.to(ALICE)
    assert len(alert.message.cards) == 4
    assert alert.message.content.startswith("🔔 4 changes")
    assert len(alert.show) == 2
    assert {s.kind for s in alert.stop} == {"pledge", "statement"}
    assert [s for s, _ in await rig.states(ALICE)] == ["sent"] * 4


async def test_the_round_after_a_held_change_comes_when_it_settles(rig: AlertRig) -> None:
    """Not at the next poll after that: a change reaches followers `QUIET_FOR` after it
    was recorded (plus a little), however the polls fall."""
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    assert rig.dispatcher.until_next_round() == POLL_SECONDS  # nothing waiting
    await rig.rate(pledge, "in-progress")
    recorded = datetime.now(UTC)
    rig.clock.now = recorded + timedelta(seconds=1.5)
    assert await rig.dispatcher.deliver_pending() == 0  # held
    wait = rig.dispatcher.until_next_round()
    assert 1.0 < wait < POLL_SECONDS  # about 1.5 s: 3 s after the change
    rig.clock.now += timedelta(seconds=wait)
    assert await rig.dispatcher.deliver_pending() == 1
    assert rig.dispatcher.until_next_round() == POLL_SECONDS


async def test_a_change_is_held_no_longer_than_the_limit(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    await rig.rate(pledge, "in-progress")
    first = datetime.now(UTC)
    await rig.rate(pledge, "stalled")
    rig.clock.now = first + HOLD_AT_MOST  # the newest is not quiet yet, the oldest waited
    assert await rig.dispatcher.deliver_pending() == 1


async def test_only_followers_of_what_changed_hear_of_it(rig: AlertRig) -> None:
    pledges = await some_pledges(rig.store, 2)
    await rig.follows.add(ALICE, "pledge", pledges[0])
    await rig.follows.add(BOB, "pledge", pledges[1])
    await rig.rate(pledges[0], "in-progress")
    await rig.settle()
    assert len(rig.sender.to(ALICE)) == 1
    assert rig.sender.to(BOB) == []


async def test_a_power_follow_hears_of_the_pledges_that_rely_on_it(rig: AlertRig) -> None:
    [power] = [w for w in await rig.store.powers() if w.pledges][:1]
    await rig.follows.add(ALICE, "power", power.slug)
    await rig.rate(power.pledges[0], "in-progress")
    await rig.settle()
    [alert] = rig.sender.to(ALICE)
    assert [(s.kind, s.slug) for s in alert.stop] == [("power", power.slug)]


async def test_a_follow_starts_after_the_changes_already_recorded(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.rate(pledge, "in-progress")
    await rig.follows.add(ALICE, "pledge", pledge)
    assert await rig.settle() == 0
    assert rig.sender.dms == []


async def test_closed_dms_pause_the_member_and_record_the_failure(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    rig.sender.closed.add(ALICE)
    await rig.rate(pledge, "in-progress")
    await rig.settle()
    pause = await rig.follows.pause_of(ALICE)
    assert pause is not None and "50007" in pause.reason
    [(state, error)] = await rig.states(ALICE)
    assert state == "failed" and "50007" in (error or "")
    # while paused, nothing is tried: the next change is recorded skipped, with the reason
    await rig.rate(pledge, "stalled")
    await rig.settle()
    assert [s for s, _ in await rig.states(ALICE)] == ["failed", "skipped"]
    assert rig.sender.dms == []
    # told once, on the next command
    told = await rig.follows.pause_to_tell(ALICE)
    assert told is not None and await rig.follows.pause_to_tell(ALICE) is None
    # resumed, with DMs open again: the next change arrives
    rig.sender.closed.clear()
    assert await rig.follows.resume(ALICE)
    await rig.rate(pledge, "broken")
    await rig.settle()
    assert len(rig.sender.to(ALICE)) == 1


async def test_a_retried_dm_is_sent_once(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    rig.sender.dm_failures = ["retry", "retry"]
    await rig.rate(pledge, "in-progress")
    await rig.settle()
    assert len(rig.sender.to(ALICE)) == 1
    assert await rig.states(ALICE) == [("sent", None)]


async def test_a_dm_that_keeps_failing_is_recorded_failed(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    rig.sender.dm_failures = ["fail"]
    await rig.rate(pledge, "in-progress")
    await rig.settle()
    assert await rig.states(ALICE) == [("failed", "simulated fail")]
    assert await rig.settle() == 0  # not retried endlessly


async def test_two_dispatchers_send_each_alert_once(rig: AlertRig) -> None:
    other = new_alert_rig(rig.store)
    other.sender = rig.sender
    other.dispatcher.sender = rig.sender
    pledges = await some_pledges(rig.store, 2)
    for user in (ALICE, BOB, CAROL):
        await rig.follows.add(user, "pledge", pledges[0])
    await rig.rate(pledges[0], "in-progress")
    rig.clock.now = other.clock.now = datetime.now(UTC) + QUIET_FOR
    await asyncio.gather(rig.dispatcher.deliver_pending(), other.dispatcher.deliver_pending())
    assert sorted(user for user, _, _ in rig.sender.dms) == [ALICE, BOB, CAROL]


async def test_members_are_split_between_processes_by_shard(loaded_store: Store) -> None:
    first = new_alert_rig(loaded_store, Shards(2, frozenset({0})))
    second = new_alert_rig(loaded_store, Shards(2, frozenset({1})))
    [pledge] = await some_pledges(loaded_store, 1)
    for user in (ALICE, BOB, CAROL):
        await first.follows.add(user, "pledge", pledge)
    await first.rate(pledge, "in-progress")
    await first.settle()
    await second.settle()
    users = (ALICE, BOB, CAROL)
    assert [u for u, _, _ in first.sender.dms] == [u for u in users if (u >> 22) % 2 == 0]
    assert [u for u, _, _ in second.sender.dms] == [u for u in users if (u >> 22) % 2 == 1]
    assert first.sender.dms and second.sender.dms


async def crash_mid_send(rig: AlertRig) -> None:
    """The rig's dispatcher claims a change for ALICE and sends it, then dies before
    recording the send."""
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    await rig.rate(pledge, "in-progress")
    rig.clock.now = datetime.now(UTC) + QUIET_FOR
    await rig.dispatcher.beat()
    original = rig.dispatcher._finish

    async def die(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    rig.dispatcher._finish = die  # type: ignore[method-assign]
    await rig.dispatcher.deliver_pending()  # (the failure is logged: the round goes on)
    rig.dispatcher._finish = original  # type: ignore[method-assign]
    assert len(rig.sender.dms) == 1
    assert await rig.states(ALICE) == [("claimed", None)]


def another_process(rig: AlertRig) -> AlertDispatcher:
    """A second process (or the same host restarted): same Discord, same clock."""
    other = new_alert_rig(rig.store)
    other.dispatcher.sender = rig.sender
    other.dispatcher.clock = rig.clock
    return other.dispatcher


async def test_a_claim_left_by_a_crash_is_sent_once_on_recovery(rig: AlertRig) -> None:
    await crash_mid_send(rig)
    restarted = another_process(rig)
    # while the crashed process's last heartbeat is fresh, its claim may be in progress
    await restarted.recover_interrupted()
    assert await rig.states(ALICE) == [("claimed", None)]
    # it stopped beating: taken over, re-sent with the same nonce, and Discord dedupes it
    rig.clock.now += DEAD_AFTER + timedelta(seconds=1)
    await restarted.recover_interrupted()
    assert len(rig.sender.dms) == 1
    assert await rig.states(ALICE) == [("sent", None)]


async def test_a_live_process_keeps_its_claims_however_long_it_takes(rig: AlertRig) -> None:
    await crash_mid_send(rig)  # (not dead: it goes on beating)
    other = another_process(rig)
    for _ in range(3):
        rig.clock.now += DEAD_AFTER
        await rig.dispatcher.beat()
        await other.recover_interrupted()
    assert await rig.states(ALICE) == [("claimed", None)]
    assert len(rig.sender.dms) == 1


async def test_a_dead_process_s_claim_is_taken_over_by_one_process(rig: AlertRig) -> None:
    await crash_mid_send(rig)
    rig.clock.now += DEAD_AFTER + timedelta(seconds=1)
    rig.sender.nonce_window = timedelta(0)  # no help from Discord: the claim must hold
    rig.sender.markers.clear()  # nor from the marker: the first send is not found
    first, second = another_process(rig), another_process(rig)
    await asyncio.gather(first.recover_interrupted(), second.recover_interrupted())
    assert len(rig.sender.dms) == 2  # the lost send, and one re-send: not two
    assert await rig.states(ALICE) == [("sent", None)]


async def test_a_claim_recovered_after_the_nonce_window_is_looked_for_first(rig: AlertRig) -> None:
    await crash_mid_send(rig)
    rig.clock.now += timedelta(minutes=10)  # Discord has forgotten the nonce
    rig.sender.nonce_window = timedelta(0)
    await another_process(rig).recover_interrupted()
    assert len(rig.sender.dms) == 1 and rig.sender.lookups
    assert await rig.states(ALICE) == [("sent", None)]


async def test_a_change_older_than_the_window_is_recorded_missed(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    await rig.rate(pledge, "in-progress")
    rig.clock.now = datetime.now(UTC) + ALERT_WINDOW + timedelta(minutes=1)
    await rig.dispatcher.deliver_pending()
    assert rig.sender.dms == []
    assert [s for s, _ in await rig.states(ALICE)] == ["missed"]


async def test_the_limit_and_clear(rig: AlertRig) -> None:
    # the store keeps what it is given (the commands check items exist)
    for number in range(FOLLOW_LIMIT):
        assert await rig.follows.add(ALICE, "pledge", f"pledge-{number}") == "added"
    assert await rig.follows.add(ALICE, "statement", "one-more") == "limit"
    assert await rig.follows.add(ALICE, "pledge", "pledge-0") == "already"
    assert await rig.follows.add(BOB, "pledge", "pledge-0") == "added"  # a limit per member
    await rig.follows.remember_dm_channel(ALICE, 5)
    assert await rig.follows.clear(ALICE) == FOLLOW_LIMIT
    assert await rig.follows.of(ALICE) == []
    assert len(await rig.follows.of(BOB)) == 1
    assert await rig.store.scalar("SELECT count(*) FROM followers WHERE user_id = ?", (ALICE,)) == 0


async def test_a_server_alert_channel_gets_one_post_per_change(rig: AlertRig) -> None:
    pledges = await some_pledges(rig.store, 2)
    await rig.follows.set_alert_channel(GUILD, 7, role_id=9, statement_slug=None, by=1)
    await rig.rate(pledges[0], "in-progress")
    await rig.rate(pledges[1], "delivered")
    await rig.settle()
    assert [(c, b.content.startswith("<@&9>")) for c, b, _ in rig.sender.posts] == [(7, True)] * 2
    assert await rig.settle() == 0
    assert [s for s, _ in await rig.states(GUILD)] == ["sent", "sent"]


async def test_a_forbidden_alert_channel_is_paused_and_moderators_told(rig: AlertRig) -> None:
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.set_alert_channel(GUILD, 7, role_id=None, statement_slug=None, by=1)
    rig.sender.problem = "pledgebot is missing Send Messages in #alerts"
    await rig.rate(pledge, "in-progress")
    await rig.settle()
    setting = await rig.follows.alert_channel(GUILD)
    assert setting is not None and setting.paused_reason == rig.sender.problem
    assert rig.sender.posts == [] and len(rig.sender.notices) == 1
    await rig.rate(pledge, "stalled")
    await rig.settle()
    assert [s for s, _ in await rig.states(GUILD)] == ["failed", "skipped"]


async def test_a_statement_follow_hears_of_a_new_edition(rig: AlertRig) -> None:
    content = (await rig.store.statements())[0]
    full = await rig.store.statement_content(content.slug)
    assert full is not None
    await rig.follows.add(ALICE, "statement", content.slug)
    from dataclasses import replace

    changed = replace(full.pledges[0], summary=full.pledges[0].summary + " Now changed.")
    added = replace(full.pledges[0], slug="a-new-pledge", title="A new pledge")
    await rig.store.replace_content(
        [replace(full, pledges=(changed, *full.pledges[1:], added))], meta={}
    )
    await rig.settle()
    [alert] = rig.sender.to(ALICE)
    titles = [c.title for c in alert.message.cards]
    assert any(t.startswith("Summary changed") for t in titles)
    assert "New pledge: A new pledge" in titles


async def test_pruning_old_alert_rows_never_sends_an_alert_again(rig: AlertRig) -> None:
    """Retention deletes finished alert rows only past the dispatcher's look-back, so a
    change whose row is gone is never found pending again."""
    assert ALERTS_KEPT_AT_LEAST > LOOK_BACK
    [pledge] = await some_pledges(rig.store, 1)
    await rig.follows.add(ALICE, "pledge", pledge)
    await rig.rate(pledge, "in-progress")
    await rig.settle()
    assert len(rig.sender.dms) == 1
    now = datetime.now(UTC)
    # a retention of one day, a day later: the row is within the look-back, so it stays
    assert await prune_alert_deliveries(rig.store, older_than=now, now=now + timedelta(days=1)) == 0
    rig.clock.now = now + timedelta(days=1)
    await rig.dispatcher.deliver_pending()
    later = now + ALERTS_KEPT_AT_LEAST + timedelta(days=1)
    assert await prune_alert_deliveries(rig.store, older_than=later, now=later) == 1
    rig.clock.now = later
    await rig.dispatcher.deliver_pending()
    assert len(rig.sender.dms) == 1


def test_a_process_gone_from_this_host_is_known_dead_at_once() -> None:
    """A restart after `kill -9` on the same host takes over the dead process's claims
    without waiting for its heartbeat to age; anything else waits for the heartbeat."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    host = socket.gethostname()
    assert gone_from_this_host(f"{host}/{ended.stdout.strip()}/ab12")
    assert not gone_from_this_host(worker_name())  # this very process
    assert not gone_from_this_host(f"{host}/1/ab12")  # running (init), maybe not ours
    assert not gone_from_this_host(f"another-{host}/{ended.stdout.strip()}/ab12")
    assert not gone_from_this_host("not a worker name")
