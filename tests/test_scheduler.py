"""The briefing engine with a controllable clock and a fake sender; a real store, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.briefings.engine import nonce_for
from bot.briefings.planner import Plans, Shards
from bot.briefings.sender import FailureKind
from tests.engine_rig import (
    Rig,
    store_on_both_backends,  # noqa: F401 (the `store` fixture)
)

PLANS = [
    # (fields, timezone, start, end, expected slots)
    (
        {"time_of_day": "09:00", "days": "daily"},
        "Europe/London",
        datetime(2026, 10, 20, 12, 0, tzinfo=UTC),
        datetime(2026, 10, 23, 12, 0, tzinfo=UTC),
        ["2026-10-21T09:00", "2026-10-22T09:00", "2026-10-23T09:00"],
    ),
    (
        {"time_of_day": "09:00", "days": "weekdays"},
        "Europe/London",
        datetime(2026, 10, 23, 12, 0, tzinfo=UTC),  # a Friday
        datetime(2026, 10, 27, 12, 0, tzinfo=UTC),
        ["2026-10-26T09:00", "2026-10-27T09:00"],
    ),
    (
        {"cron": "15 7 * * 0"},  # cron numbering: Sunday
        "UTC",
        datetime(2026, 10, 20, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 2, 0, 0, tzinfo=UTC),
        ["2026-10-25T07:15", "2026-11-01T07:15"],
    ),
    (
        {"time_of_day": "18:30", "run_date": "2026-10-22"},
        "Europe/London",
        datetime(2026, 10, 20, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        ["2026-10-22T18:30"],
    ),
    (  # autumn: 01:30 happens twice in London on 25 Oct; posts once
        {"time_of_day": "01:30"},
        "Europe/London",
        datetime(2026, 10, 24, 2, 0, tzinfo=UTC),
        datetime(2026, 10, 26, 3, 0, tzinfo=UTC),
        ["2026-10-25T01:30", "2026-10-26T01:30"],
    ),
    (  # spring: 01:30 does not exist in London on 29 Mar; still posts once, at 02:30
        {"time_of_day": "01:30"},
        "Europe/London",
        datetime(2026, 3, 28, 2, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 3, 0, tzinfo=UTC),
        ["2026-03-29T02:30", "2026-03-30T01:30"],
    ),
    (
        {"time_of_day": "01:30"},
        "America/New_York",
        datetime(2026, 10, 31, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
        ["2026-11-01T01:30", "2026-11-02T01:30"],
    ),
    (
        {"time_of_day": "01:30"},
        "America/New_York",
        datetime(2026, 3, 7, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 12, 0, tzinfo=UTC),
        ["2026-03-08T01:30", "2026-03-09T01:30"],
    ),
]


@pytest.mark.parametrize(("fields", "zone", "start", "end", "expected"), PLANS)
async def test_posts_each_slot_exactly_once(
    rig: Rig,
    fields: dict[str, Any],
    zone: str,
    start: datetime,
    end: datetime,
    expected: list[str],
) -> None:
    rig.clock.now = start
    schedule = await rig.schedule(created=start, timezone=zone, **fields)
    assert await rig.run_until(schedule.id, end, zone) == expected
    assert len(rig.sender.posts) == len(expected)
    assert len({nonce for _, _, nonce in rig.sender.posts}) == len(expected)
    states = [d.state for d in await rig.engine.schedules.deliveries(schedule.id)]
    assert states == ["sent"] * len(expected)


async def test_a_one_off_finishes_after_posting(rig: Rig) -> None:
    schedule = await rig.schedule(created=rig.clock.now, time_of_day="18:30", run_date="2026-10-22")
    await rig.run_until(schedule.id, datetime(2026, 11, 1, tzinfo=UTC))
    finished = await rig.engine.schedules.by_id(schedule.id)
    assert finished is not None
    assert finished.state == "finished"
    assert rig.planned(schedule.id) is None


async def test_a_slot_claimed_before_is_not_posted_again(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "sent"
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "already-claimed"
    assert len(rig.sender.posts) == 1


@pytest.mark.parametrize(
    ("down_for", "posted_late", "missed"),
    [
        (timedelta(minutes=10), 1, 0),
        (timedelta(minutes=45), 0, 1),
        (timedelta(days=3, hours=2), 0, 4),
    ],
)
async def test_catch_up_after_downtime(
    rig: Rig, down_for: timedelta, posted_late: int, missed: int
) -> None:
    created = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    schedule = await rig.schedule(created=created, time_of_day="09:00", timezone="UTC")
    rig.clock.now = datetime(2026, 10, 21, 9, 0, tzinfo=UTC) + down_for
    await rig.engine.run_due(schedule.id)
    deliveries = await rig.engine.schedules.deliveries(schedule.id)
    assert len(rig.sender.posts) == posted_late
    assert sum(d.late and d.state == "sent" for d in deliveries) == posted_late
    assert sum(d.state == "missed" for d in deliveries) == missed
    # never replayed: a second start does nothing more
    await rig.engine.run_due(schedule.id)
    assert len(rig.sender.posts) == posted_late
    nxt = await rig.engine.plan(schedule.id)
    assert nxt is not None
    assert nxt[1] > rig.clock.now


async def test_restart_between_claim_and_send_posts_once(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    slot = "2026-10-21T09:00Z"
    # first process: claimed and sent, then died before recording the result
    assert await rig.engine.schedules.claim(schedule.id, slot, late=False)
    rig.sender.seen_nonces[nonce_for(schedule.id, slot)] = (99, rig.clock.now)
    await rig.engine.recover_interrupted()
    delivery = await rig.engine.schedules.delivery(schedule.id, slot)
    assert delivery is not None
    assert (delivery.state, delivery.message_id) == ("sent", 99)
    assert rig.sender.posts == []


async def test_restart_after_claim_before_send_posts_once(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    slot = "2026-10-21T09:00Z"
    assert await rig.engine.schedules.claim(schedule.id, slot, late=False)
    await rig.engine.recover_interrupted()
    await rig.engine.recover_interrupted()
    assert len(rig.sender.posts) == 1


@pytest.mark.parametrize("kind", ["retry"])
async def test_transient_failures_are_retried(rig: Rig, kind: FailureKind) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    rig.sender.failures = [kind, kind]
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "sent"
    assert len(rig.sender.posts) == 1


async def test_retries_give_up_without_touching_the_schedule(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    rig.sender.failures = ["retry"] * 10
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "failed"
    kept = await rig.engine.schedules.by_id(schedule.id)
    assert kept is not None
    assert kept.state == "active"
    assert kept.last_error == "simulated retry"


async def test_refused_post_pauses_with_one_notice(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    await rig.engine.plan(schedule.id)
    rig.sender.failures = ["pause"]
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "paused"
    paused = await rig.engine.schedules.by_id(schedule.id)
    assert paused is not None
    assert (paused.state, paused.pause_reason) == ("paused", "simulated pause")
    assert len(rig.sender.notices) == 1
    assert rig.planned(schedule.id) is None
    # a later slot firing for a paused schedule posts nothing and sends no second notice
    await rig.engine.fire(schedule.id)
    assert rig.sender.posts == []
    assert len(rig.sender.notices) == 1


async def test_channel_problem_pauses_before_posting(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00")
    rig.sender.problem = "pledgebot is missing Send Messages in #briefings"
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "paused"
    assert rig.sender.posts == []
    assert "missing Send Messages" in rig.sender.notices[0][1]


async def test_spotlight_rotates_and_remembers(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", content="spotlight")
    titles = []
    for day in (21, 22, 23):
        current = await rig.engine.schedules.by_id(schedule.id)
        assert current is not None
        await rig.engine.deliver(current, f"2026-10-{day}T09:00Z", late=False)
        titles.append(rig.sender.posts[-1][1].cards[0].title)
    assert len(set(titles)) == 3


async def test_changes_briefing_skips_when_nothing_changed(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", content="changes")
    assert await rig.engine.deliver(schedule, "2026-10-21T09:00Z", late=False) == "skipped"
    await rig.store.set_status("europol-partnership", "in-progress", note="n", changed_by="t")
    assert await rig.engine.deliver(schedule, "2026-10-22T09:00Z", late=False) == "sent"
    assert "Status changes" in rig.sender.posts[0][1].cards[0].title


async def test_shards_own_their_guilds(rig: Rig) -> None:
    shards = Shards(count=2, ids=frozenset({1}))
    assert shards.owns(1 << 22)
    assert not shards.owns(2 << 22)


async def test_a_firing_later_than_the_window_is_recorded_as_missed(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.clock.now = datetime(2026, 10, 21, 9, 45, tzinfo=UTC)
    await rig.engine.fire(schedule.id)
    delivery = await rig.engine.schedules.delivery(schedule.id, "2026-10-21T09:00Z")
    assert delivery is not None
    assert delivery.state == "missed"
    assert rig.sender.posts == []
    assert rig.planned(schedule.id) is not None  # the chain goes on


async def test_a_firing_a_little_late_is_posted_and_marked_late(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.clock.now = datetime(2026, 10, 21, 9, 5, tzinfo=UTC)
    await rig.engine.fire(schedule.id)
    delivery = await rig.engine.schedules.delivery(schedule.id, "2026-10-21T09:00Z")
    assert delivery is not None
    assert (delivery.state, delivery.late) == ("sent", True)


def test_plans_keep_each_schedule_at_one_instant_and_each_instant_its_live_ids() -> None:
    nine = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    ten = nine + timedelta(hours=1, microseconds=7)
    plans = Plans()
    assert plans.add(5, nine) and not plans.add(700, nine)  # the instant's first, then not
    assert plans.add(3, ten)
    assert (len(plans), plans.instants(), plans.get(5), plans.get(3)) == (3, 2, nine, ten)
    assert plans.get(4) is None and plans.get(10_000) is None
    assert plans.discard(5) is None  # 700 is still planned at nine
    assert plans.add(5, nine) is False  # planned again: listed twice, taken once
    assert plans.discard(3) == ten  # ten has nothing left
    assert plans.take(ten) == [] and plans.instants() == 1
    assert sorted(plans.take(nine)) == [5, 700]
    assert (len(plans), plans.instants(), plans.get(700)) == (0, 0, None)
    assert plans.discard(700) is None
