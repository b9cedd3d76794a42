"""Retention: old delivery rows go, in batches; what the bot still reads stays.

Each schedule keeps its latest scheduled slot (the engine plans and claims after it), its
latest row and its latest sent post; rows in flight (`claimed`) stay; the audit of
schedule changes and the status history are never pruned. The engine plans the same
after a prune, and a prune inside the running bot never holds up a member's command.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.briefings import retention
from bot.briefings.retention import LAST_PRUNE_KEY, prune_daily, prune_deliveries, prune_if_due
from bot.briefings.schedules import Schedules
from bot.store import Store
from tests.e2e import embed_text, running_bot, with_config, world
from tests.engine_rig import (
    Rig,
    sqlite_only,
    store_on_both_backends,  # noqa: F401 (the `store` fixture)
)

NOW = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
DAYS = 180
CUTOFF = NOW - timedelta(days=DAYS)


async def add_deliveries(store: Store, schedule_id: int, rows: list[tuple[str, str, int]]) -> None:
    """(slot instant or manual key, state, manual) rows, each claimed at its slot's time."""
    async with store.transaction() as conn:
        await conn.executemany(
            "INSERT INTO deliveries(schedule_id, slot, state, claimed_at, finished_at, manual) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (schedule_id, slot, state, claimed, claimed, manual)
                for slot, state, manual, claimed in (
                    (slot, state, manual, _claimed_at(slot)) for slot, state, manual in rows
                )
            ],
        )


def _claimed_at(slot: str) -> str:
    instant = datetime.strptime(slot.removeprefix("manual:"), "%Y-%m-%dT%H:%MZ")
    return instant.replace(tzinfo=UTC).isoformat()


def daily(start: datetime, days: int) -> list[str]:
    return [(start + timedelta(days=i)).strftime("%Y-%m-%dT%H:%MZ") for i in range(days)]


async def what_the_bot_reads(schedules: Schedules, ids: list[int]) -> list[tuple[object, ...]]:
    found = []
    for schedule_id in ids:
        last = await schedules.last_delivery(schedule_id)
        sent = await schedules.last_delivery(schedule_id, sent_only=True)
        found.append((await schedules.last_slot(schedule_id), last, sent))
    return [*found, await schedules.last_slots()]


async def test_pruning_keeps_each_schedules_latest_and_never_the_audit(rig: Rig) -> None:
    store, schedules = rig.store, rig.engine.schedules
    # A: two years of daily posts. B: gone quiet long ago; its newest row is a missed slot,
    # its newest post older, and a later manual send-now. C: a claim still in flight.
    a, b, c = [await rig.schedule(time_of_day="09:00") for _ in range(3)]
    a_slots = daily(NOW - timedelta(days=730), 730)
    await add_deliveries(store, a.id, [(s, "sent", 0) for s in a_slots])
    old = daily(NOW - timedelta(days=400), 30)
    await add_deliveries(store, b.id, [(s, "sent", 0) for s in old[:-1]] + [(old[-1], "missed", 0)])
    await add_deliveries(store, b.id, [(f"manual:{old[5]}", "sent", 1)])
    await add_deliveries(store, c.id, [(old[0], "failed", 0), (old[1], "claimed", 0)])
    await rig.engine.schedules.update(
        c.guild_id, c.id, {"role_id": 7}, by=1, action="edited"
    )  # some audit to keep
    await store.set_status("europol-partnership", "in-progress", note="x", changed_by="t")
    audit = await store.rows("SELECT * FROM schedule_changes ORDER BY id")
    history = await store.rows("SELECT * FROM status_history ORDER BY id")
    before = await what_the_bot_reads(schedules, [a.id, b.id, c.id])
    pauses: list[float] = []

    async def note_pause(seconds: float) -> None:
        pauses.append(seconds)

    removed = await prune_deliveries(store, older_than=CUTOFF, batch_rows=100, sleep=note_pause)

    kept = {
        (r[0], r[1], r[2])
        for r in await store.rows("SELECT schedule_id, slot, state FROM deliveries")
    }
    recent_a = {(a.id, s, "sent") for s in a_slots if _claimed_at(s) >= CUTOFF.isoformat()}
    assert kept == recent_a | {
        (b.id, old[-1], "missed"),  # B's latest row and latest scheduled slot
        (b.id, f"manual:{old[5]}", "sent"),  # B's latest sent post (manual, newest id)
        (c.id, old[1], "claimed"),  # in flight: never touched
    }
    assert removed == 730 + 31 + 2 - len(kept)
    assert len(pauses) == removed // 100  # one short transaction per 100 rows, then a pause
    assert await what_the_bot_reads(schedules, [a.id, b.id, c.id]) == before
    assert await store.rows("SELECT * FROM schedule_changes ORDER BY id") == audit
    assert await store.rows("SELECT * FROM status_history ORDER BY id") == history
    assert await prune_deliveries(store, older_than=CUTOFF) == 0  # nothing more to do


async def test_the_engine_plans_the_same_after_pruning(rig: Rig) -> None:
    engine, schedules = rig.engine, rig.engine.schedules
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    rig.clock.now = start
    schedule = await rig.schedule(created=start, time_of_day="09:00", timezone="Europe/London")
    spot = await rig.schedule(created=start, time_of_day="18:00", content="spotlight")
    end = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    fired = await rig.run_until(schedule.id, end, "Europe/London")
    rig.clock.now = start
    await rig.run_until(spot.id, end)
    pruned_at = end - timedelta(days=30)
    (older,) = await rig.store.rows(
        "SELECT count(*) FROM deliveries WHERE claimed_at < ?", (pruned_at.isoformat(),)
    )
    assert len(fired) == 142  # 1 June to 20 October, every day at 09:00 London
    planned = {i: await engine.plan(i) for i in (schedule.id, spot.id)}
    upcoming = {s.id: await engine.upcoming(s, 5) for s in (schedule, spot)}
    cursor = (await schedules.by_id(spot.id)).cursor  # type: ignore[union-attr]

    removed = await prune_deliveries(rig.store, older_than=pruned_at)

    assert removed == older[0] >= 2 * 110  # both keep only their last 30 days
    assert {i: await engine.plan(i) for i in (schedule.id, spot.id)} == planned
    assert {s.id: await engine.upcoming(s, 5) for s in (schedule, spot)} == upcoming
    assert engine.missed_since(schedule, await schedules.last_slot(schedule.id)) == []
    # An old slot whose row was pruned can never be claimed again: a later one is kept.
    pruned_slot = (start + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%MZ")
    assert await schedules.delivery(schedule.id, pruned_slot) is None
    assert not await schedules.claim(schedule.id, pruned_slot, late=False)
    posts = len(rig.sender.posts)
    more = await rig.run_until(schedule.id, end + timedelta(days=3), "Europe/London")
    assert more == ["2026-10-21T09:00", "2026-10-22T09:00", "2026-10-23T09:00"]
    assert len(rig.sender.posts) == posts + 3  # each once: no repeat, no gap
    rig.clock.now = end
    await rig.run_until(spot.id, end + timedelta(days=1))
    assert len(rig.sender.posts) == posts + 3 + 1
    assert (await schedules.by_id(spot.id)).cursor != cursor  # type: ignore[union-attr]


async def test_a_prune_runs_once_a_day_whichever_process(store: Store) -> None:
    rig_schedules = Schedules(store)
    made = await rig_schedules.create(
        guild_id=1,
        created_by=1,
        limit=5,
        fields={"channel_id": 2, "timezone": "UTC", "content": "digest"},
    )
    await add_deliveries(store, made.id, [(s, "sent", 0) for s in daily(NOW, 400)])
    later = NOW + timedelta(days=400)
    assert await prune_if_due(store, DAYS, later) == 400 - DAYS  # one exactly 180 days old stays
    assert await store.get_meta(LAST_PRUNE_KEY) == later.isoformat()
    # Another process an hour later: not due. A day later: due (nothing older to prune yet).
    assert await prune_if_due(store, DAYS, later + timedelta(hours=1)) is None
    assert await prune_if_due(store, DAYS, later + timedelta(days=1)) == 1


async def test_retention_zero_keeps_everything(store: Store) -> None:
    task = asyncio.create_task(prune_daily(store, 0))
    await asyncio.wait_for(task, 1)  # returns at once: no daily task at all
    assert await store.get_meta(LAST_PRUNE_KEY) is None


@sqlite_only("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL's planner picks a scan by size")
async def test_the_change_log_is_read_through_its_index(store: Store) -> None:
    plan = await store.rows(
        "EXPLAIN QUERY PLAN SELECT changed_by, changed_at, action, detail "
        "FROM schedule_changes WHERE schedule_id = ? ORDER BY id",
        (1,),
    )
    assert any("schedule_changes_schedule" in str(r["detail"]) for r in plan), [
        tuple(r) for r in plan
    ]


@pytest.mark.e2e
async def test_the_bot_prunes_in_the_background_while_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 old rows pruned by the running bot; member commands answer in time meanwhile."""
    monkeypatch.setattr(retention, "FIRST_PRUNE_SECONDS", 0.5)
    async with world(tmp_path) as w:
        config = with_config(w, retention_days=30)
        async with running_bot(w, with_config(w, retention_days=0)):  # content, commands
            pass
        store = await Store.open(config.database_path)
        try:
            made = await Schedules(store).create(
                guild_id=w.guild.id,
                created_by=1,
                limit=5,
                fields={"channel_id": w.briefings.id, "timezone": "UTC", "content": "digest"}
                | {"time_of_day": "09:00"},
            )
            start = datetime.now(UTC) - timedelta(days=3000)
            slots = [
                (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%MZ") for i in range(20_000)
            ]
            await add_deliveries(store, made.id, [(s, "sent", 0) for s in slots])
        finally:
            await store.close()

        async with running_bot(w, config) as bot:
            assert bot.services is not None
            bot_store = bot.services.store
            slowest = 0.0
            answers = 0
            deadline = time.monotonic() + 60

            async def pruned() -> bool:
                (row,) = await bot_store.rows("SELECT count(*) FROM deliveries")
                return row[0] == 1 and await bot_store.get_meta(LAST_PRUNE_KEY) is not None

            while not await pruned():
                assert time.monotonic() < deadline, "the prune did not finish within 60 s"
                started = time.monotonic()
                shown = await w.emu.run_command(
                    w.guild,
                    "pledge show",
                    options={"pledge": "europol-partnership"},
                    user=w.member,
                )
                slowest = max(slowest, time.monotonic() - started)
                assert "Europol" in embed_text(shown.message)
                answers += 1
                await asyncio.sleep(0.05)
        assert answers >= 10  # commands really ran while rows were being pruned
        assert slowest < 1.0
        assert w.emu.violations == []
