"""The briefing engine reads the store at fire time (issue: on time and exactly once).

Each test is named after the numbered failure it guards against. A fake clock and a fake
sender (tests/engine_rig.py) stand in for time and Discord; the store is real: SQLite
and PostgreSQL (each test runs on both, `[sqlite]` and `[postgresql]`).
The same promises with two real `pledgebot run` processes are in
tests/test_engine_two_processes.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.briefings import planner
from bot.briefings.admin import BriefingAdmin, Request
from bot.briefings.engine import BriefingEngine, marker_for
from bot.models import utc_slot
from bot.pledges.lookup import Catalog
from bot.store import Store
from tests.engine_rig import (
    FakeSender,
    Rig,
    new_rig,
    store_on_both_backends,  # noqa: F401 (the `store` fixture)
    write_lock_held_elsewhere,
)

NINE = datetime(2026, 10, 21, 9, 0, tzinfo=UTC)


def admin(rig: Rig, engine: BriefingEngine | None = None) -> BriefingAdmin:
    catalogs = SimpleNamespace(pledges=Catalog("pledge", []), powers=Catalog("power", []))
    return BriefingAdmin(engine or rig.engine, catalogs, limit=25, default_tz="UTC")


def other_engine(rig: Rig) -> BriefingEngine:
    """A second process's engine on the same database file (its own plan, same store)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start(paused=True)
    return BriefingEngine(
        rig.store,
        FakeSender(rig.clock),
        catch_up=timedelta(minutes=30),
        rate_per_second=1000,
        clock=rig.clock,
        sleep=rig.engine.sleep,
        scheduler=scheduler,
    )


async def test_item1_an_edit_made_through_another_process_moves_the_post(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    await rig.engine.plan_all()
    assert rig.planned(schedule.id) == NINE
    elsewhere = other_engine(rig)
    try:
        await admin(rig, elsewhere).edit(schedule.guild_id, 1, schedule.id, Request(time="10:00"))
    finally:
        await elsewhere.stop()
    # the stale 09:00 job fires here: it posts nothing and replans at the new time
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)
    assert rig.sender.posts == []
    assert rig.planned(schedule.id) == NINE + timedelta(hours=1)
    rig.clock.now = NINE + timedelta(hours=1)
    await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 1


async def test_item1_reconcile_picks_up_changes_from_other_processes(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    await rig.engine.plan_all()
    await rig.engine.schedules.update(
        schedule.guild_id, schedule.id, {"time_of_day": "11:00"}, by=1, action="edited"
    )
    await rig.engine.reconcile()
    assert rig.planned(schedule.id) == NINE + timedelta(hours=2)
    await rig.engine.schedules.update(
        schedule.guild_id, schedule.id, {"state": "paused"}, by=1, action="paused"
    )
    await rig.engine.reconcile()
    assert rig.planned(schedule.id) is None
    created = await rig.schedule(time_of_day="12:00", timezone="UTC")
    await rig.engine.reconcile()
    assert rig.planned(created.id) == NINE + timedelta(hours=3)


async def test_item1_a_change_reaches_another_process_within_a_second(
    store_location: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes, each with its own connections: a change committed by one is planned
    by the other within a second. On PostgreSQL the change's NOTIFY does it (the poll is
    made too slow to); on SQLite the change-log poll, once a second."""
    here, there = await Store.open(store_location), await Store.open(store_location)
    rig_here, rig_there = new_rig(here), new_rig(there)
    within = 1.0
    if there.db.dialect == "postgresql":
        monkeypatch.setattr(planner, "RECONCILE_SECONDS", 60.0)
    else:
        within += planner.RECONCILE_SECONDS  # a poll's wait, then its read
    try:
        schedule = await rig_here.schedule(time_of_day="09:00", timezone="UTC")
        await rig_there.engine.plan_all()  # starts its reconcile loop (and LISTEN)
        assert rig_there.planned(schedule.id) == NINE
        for hour, changes in [
            (10, {"time_of_day": "10:00"}),
            (None, {"state": "paused"}),
            (11, {"state": "active", "time_of_day": "11:00"}),
        ]:
            started = time.monotonic()
            await rig_here.engine.schedules.update(
                schedule.guild_id, schedule.id, changes, by=1, action="edited"
            )
            expected = None if hour is None else NINE.replace(hour=hour)
            while rig_there.planned(schedule.id) != expected:
                assert time.monotonic() - started < within, changes
                await asyncio.sleep(0.01)
    finally:
        for rig_ in (rig_here, rig_there):
            await rig_.engine.stop()
        await here.close()
        await there.close()


async def test_item2_cancel_during_retries_never_posts(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.sender.failures = ["retry"]

    async def moderator_cancels_while_waiting(delay: float) -> None:
        if delay >= 2:  # the engine's retry wait, not the rate budget's
            await admin(rig).cancel(schedule.guild_id, 1, schedule.id)

    rig.engine.sleep = moderator_cancels_while_waiting
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)
    assert rig.sender.posts == []
    delivery = await rig.engine.schedules.delivery(schedule.id, utc_slot(NINE))
    assert delivery is not None
    assert delivery.state == "failed"
    assert delivery.error == "not posted: the briefing was cancelled before it went out"


async def test_item2_pause_during_retries_never_posts(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.sender.failures = ["retry", "retry"]

    async def moderator_pauses_while_waiting(delay: float) -> None:
        if delay >= 2 and (await rig.engine.schedules.by_id(schedule.id)).state == "active":  # type: ignore[union-attr]
            await admin(rig).pause(schedule.guild_id, 1, schedule.id)

    rig.engine.sleep = moderator_pauses_while_waiting
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)
    assert rig.sender.posts == []


async def test_item5_one_unreadable_row_is_paused_and_the_rest_run(rig: Rig) -> None:
    good = await rig.schedule(time_of_day="09:00", timezone="UTC")
    bad_zone = await rig.schedule(time_of_day="09:00", timezone="UTC")
    bad_cron = await rig.schedule(time_of_day="09:00", timezone="UTC")
    async with rig.store.transaction() as conn:
        await conn.execute(
            "UPDATE schedules SET timezone = 'Mars/Olympus' WHERE id = ?", (bad_zone.id,)
        )
        await conn.execute(
            "UPDATE schedules SET time_of_day = NULL, cron = '61 25 * * *' WHERE id = ?",
            (bad_cron.id,),
        )
    await rig.engine.plan_all()
    assert rig.planned(good.id) == NINE
    for bad in (bad_zone, bad_cron):
        paused = await rig.engine.schedules.by_id(bad.id)
        assert paused is not None
        assert paused.state == "paused"
        assert paused.pause_reason is not None
        assert "can't be read" in paused.pause_reason
        assert rig.planned(bad.id) is None
    rig.clock.now = NINE
    await rig.engine.catch_up()
    await rig.engine.fire(good.id)
    assert len(rig.sender.posts) == 1


async def test_item5_catch_up_and_recovery_go_on_past_a_bad_row(rig: Rig) -> None:
    schedules = [await rig.schedule(time_of_day="09:00", timezone="UTC") for _ in range(3)]
    rig.clock.now = NINE + timedelta(minutes=5)  # the bot was down over the slot
    await rig.engine.plan_all()
    for schedule in schedules:  # each was interrupted between claim and send yesterday
        assert await rig.engine.schedules.claim(
            schedule.id, "2026-10-20T09:00Z", late=False, now=rig.clock.now.isoformat()
        )
    # then the middle one's rows break: its recovery and its catch-up both fail
    async with rig.store.transaction() as conn:
        await conn.execute(
            "UPDATE deliveries SET claimed_at = 'not a time' WHERE schedule_id = ?",
            (schedules[1].id,),
        )
        await conn.execute(
            "UPDATE schedules SET timezone = 'Nowhere/Else' WHERE id = ?", (schedules[1].id,)
        )
    await rig.engine.catch_up()
    states = [(await rig.engine.schedules.by_id(s.id)).state for s in schedules]  # type: ignore[union-attr]
    assert states == ["active", "paused", "active"]
    for schedule in (schedules[0], schedules[2]):
        sent = [d.slot for d in await rig.engine.schedules.deliveries(schedule.id)]
        assert sent == ["2026-10-20T09:00Z", utc_slot(NINE)]
    assert len(rig.sender.posts) == 4  # two recovered posts and two caught-up ones


async def test_item6_a_database_locked_at_claim_time_loses_no_slot(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    await rig.engine.plan_all()
    rig.clock.now = NINE
    # another process holds the write lock past the timeout
    async with write_lock_held_elsewhere(rig.store, monkeypatch):
        await rig.engine.fire(schedule.id)
        assert rig.sender.posts == []
        retry = rig.planned(schedule.id)
        assert retry is not None
        assert NINE < retry <= NINE + timedelta(seconds=10)  # looks again soon
    rig.clock.now = retry
    await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 1
    delivery = await rig.engine.schedules.delivery(schedule.id, utc_slot(NINE))
    assert delivery is not None
    assert delivery.state == "sent"
    assert rig.planned(schedule.id) == NINE + timedelta(days=1)


async def test_item6_a_lock_past_the_window_records_the_slot_as_missed(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.clock.now = NINE + timedelta(minutes=31)
    await rig.engine.fire(schedule.id)
    delivery = await rig.engine.schedules.delivery(schedule.id, utc_slot(NINE))
    assert delivery is not None
    assert delivery.state == "missed"
    assert delivery.error is not None


async def test_item7_catch_up_zero_still_posts_on_time(rig: Rig) -> None:
    engine = BriefingEngine(  # as configured with catch_up_minutes = 0
        rig.store,
        rig.sender,
        catch_up=timedelta(0),
        rate_per_second=1000,
        clock=rig.clock,
        sleep=rig.engine.sleep,
        scheduler=rig.engine.scheduler,
    )
    try:
        schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
        rig.clock.now = NINE + timedelta(milliseconds=20)  # how late a job really fires
        await engine.fire(schedule.id)
        assert len(rig.sender.posts) == 1
        # but after downtime nothing is caught up
        rig.clock.now = NINE + timedelta(days=1, minutes=10)
        await engine.fire(schedule.id)
        assert len(rig.sender.posts) == 1
        missed = await engine.schedules.delivery(schedule.id, utc_slot(NINE + timedelta(days=1)))
        assert missed is not None
        assert missed.state == "missed"
    finally:
        await engine.stop()


async def test_item8_changing_the_time_zone_never_skips_a_post(rig: Rig) -> None:
    tokyo_nine = datetime(2026, 10, 21, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    rig.clock.now = tokyo_nine - timedelta(hours=12)
    schedule = await rig.schedule(time_of_day="09:00", timezone="Asia/Tokyo")
    assert await rig.run_until(schedule.id, tokyo_nine) == ["2026-10-21T00:00"]
    rig.clock.now = tokyo_nine + timedelta(hours=1)
    await admin(rig).edit(
        schedule.guild_id, 1, schedule.id, Request(timezone="America/Los_Angeles")
    )
    la_nine = datetime(2026, 10, 21, 16, 0, tzinfo=UTC)  # the same local date, 09:00 PDT
    planned = await rig.engine.plan(schedule.id)
    assert planned is not None
    assert planned[1] == la_nine
    rig.clock.now = la_nine
    await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 2


async def test_item9_a_change_made_while_a_post_waits_is_in_the_next_one(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", content="changes", timezone="UTC")
    await rig.store.set_status("europol-partnership", "in-progress", note="first", changed_by="t")

    async def a_status_changes_meanwhile() -> None:
        rig.sender.during_post = None
        await rig.store.set_status(
            "organised-crime-strategy", "delivered", note="second", changed_by="t"
        )

    rig.sender.during_post = a_status_changes_meanwhile
    rig.sender.failures = ["retry"]  # and the first try fails, so the send finishes later
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)
    first = rig.sender.posts[0][1]
    assert [f.value.split("\n")[-1] for f in first.cards[0].fields] == ["first"]
    rig.clock.now = NINE + timedelta(days=1)
    await rig.engine.fire(schedule.id)
    second = rig.sender.posts[1][1]
    assert [f.value.split("\n")[-1] for f in second.cards[0].fields] == ["second"]


async def test_item11_a_resend_past_the_nonce_window_looks_in_the_channel_first(
    rig: Rig,
) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.sender.lose_answer = True  # Discord posted it, but the answer never came back

    async def slow_retry(delay: float) -> None:
        if delay >= 2:
            rig.clock.now += timedelta(minutes=5)  # past Discord's nonce window

    rig.engine.sleep = slow_retry
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 1
    assert rig.sender.lookups == [marker_for(schedule.id, utc_slot(NINE))]
    delivery = await rig.engine.schedules.delivery(schedule.id, utc_slot(NINE))
    assert delivery is not None
    assert (delivery.state, delivery.message_id) == ("sent", 1)


async def test_item11_a_resend_within_the_nonce_window_trusts_the_nonce(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.sender.lose_answer = True
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 1
    assert rig.sender.lookups == []


async def test_item11_recovery_of_an_old_claim_looks_before_resending(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    slot = utc_slot(NINE)
    assert await rig.engine.schedules.claim(schedule.id, slot, late=False, now=NINE.isoformat())
    # not found in the channel: it is sent (once) and the attempt time is renewed
    rig.clock.now = NINE + timedelta(minutes=10)
    await rig.engine.recover_interrupted()
    assert len(rig.sender.posts) == 1
    assert rig.sender.lookups == [marker_for(schedule.id, slot)]


async def test_item18_a_fan_out_composes_each_briefing_once(rig: Rig, monkeypatch: Any) -> None:
    schedules = [
        await rig.schedule(time_of_day="09:00", timezone="UTC", channel_id=100 + i)
        for i in range(20)
    ]
    reads = 0
    pledges = rig.store.pledges

    async def counted(**kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await pledges(**kwargs)

    monkeypatch.setattr(rig.store, "pledges", counted)
    rig.clock.now = NINE
    for schedule in schedules:
        await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 20
    assert reads == 1
    assert len({id(briefing) for _, briefing, _ in rig.sender.posts}) == 1


async def test_item6_a_store_failure_after_posting_is_recorded_on_the_retry(
    rig: Rig, monkeypatch: Any
) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    finish = rig.engine.schedules.finish
    failed = False

    async def locked_once(*args: Any, **kwargs: Any) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise sqlite3.OperationalError("database is locked")
        await finish(*args, **kwargs)

    monkeypatch.setattr(rig.engine.schedules, "finish", locked_once)
    rig.clock.now = NINE
    await rig.engine.fire(schedule.id)  # posted, but recording it failed
    assert len(rig.sender.posts) == 1
    retry = rig.planned(schedule.id)
    assert retry is not None
    rig.clock.now = retry
    await rig.engine.fire(schedule.id)
    assert len(rig.sender.posts) == 1  # the nonce returned the same post
    delivery = await rig.engine.schedules.delivery(schedule.id, utc_slot(NINE))
    assert delivery is not None
    assert (delivery.state, delivery.message_id) == ("sent", 1)
    assert rig.planned(schedule.id) == NINE + timedelta(days=1)


async def test_item18_briefings_due_together_wait_for_one_composition(
    rig: Rig, monkeypatch: Any
) -> None:
    schedules = [
        await rig.schedule(time_of_day="09:00", timezone="UTC", channel_id=200 + i)
        for i in range(8)
    ]
    reads = 0
    pledges = rig.store.pledges

    async def slow_read(**kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)  # others fall due while this one composes
        return await pledges(**kwargs)

    monkeypatch.setattr(rig.store, "pledges", slow_read)
    rig.clock.now = NINE
    await asyncio.gather(*(rig.engine.fire(s.id) for s in schedules))
    assert len(rig.sender.posts) == 8
    assert reads == 1


async def test_only_a_few_posts_wait_composed_for_their_turn(rig: Rig) -> None:
    """With thousands due at once, each one claimed and composed at once then held its
    message until its turn (`due10k`: 114 -> 215 MiB). Now at most SENDING_AT_ONCE are
    claimed ahead of being sent, and every one is still posted, once."""
    rig.engine._sending = asyncio.Semaphore(3)  # SENDING_AT_ONCE, smaller
    schedules = [await rig.schedule(time_of_day="09:00", timezone="UTC") for _ in range(10)]
    ahead: list[int] = []

    async def count_claimed_but_unsent() -> None:
        # Until the posts behind this one have claimed as far as they may (this one and two
        # more, or all that are left): waited for, not timed, so a slow machine sees it too.
        may = min(3, len(schedules) - len(rig.sender.posts))
        for _ in range(1000):
            unsent = int(await rig.store.scalar("SELECT count(*) FROM deliveries")) - len(
                rig.sender.posts
            )
            if unsent >= may:
                break
            await asyncio.sleep(0.005)
        ahead.append(unsent)

    rig.sender.during_post = count_claimed_but_unsent
    rig.clock.now = NINE
    await asyncio.gather(*(rig.engine.fire(s.id) for s in schedules))
    assert len(rig.sender.posts) == 10
    assert len({nonce for _, _, nonce in rig.sender.posts}) == 10
    assert max(ahead) == 3  # this post and the two behind it, never all ten
