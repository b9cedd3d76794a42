"""Start-up planning (issue 11, item 4): `plan_all` is fast, overlaps the gateway connect,
and a /briefing command arriving meanwhile is never undone by its older snapshot."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.briefings import planner
from bot.briefings.admin import BriefingAdmin, Request
from bot.briefings.engine import BriefingEngine
from bot.briefings.planner import PLAN_QUERY, _parsed_rule, _slot_between
from bot.briefings.recurrence import missed_slots
from bot.briefings.schedules import Schedules
from bot.client import app as app_module
from bot.client.app import PledgeBot
from bot.client.runner import make_bot, wal_kept
from bot.pledges.lookup import Catalog
from bot.store import Store
from tests.e2e import quick, world
from tests.engine_rig import (
    GUILD,
    Rig,
    store_on_both_backends,  # noqa: F401 (the `store` fixture)
)

NINE = datetime(2026, 10, 21, 9, 0, tzinfo=UTC)


def admin(rig: Rig) -> BriefingAdmin:
    catalogs = SimpleNamespace(pledges=Catalog("pledge", []), powers=Catalog("power", []))
    return BriefingAdmin(rig.engine, catalogs, limit=25, default_tz="UTC")  # type: ignore[arg-type]


def after_snapshot(rig: Rig, meanwhile: Callable[[], Awaitable[None]]) -> None:
    """Run `meanwhile` just after plan_all has read its snapshot of the schedules, before
    it plans any of them: a command arriving while start-up planning runs."""
    rows = rig.store.rows

    async def rows_then_meanwhile(sql: str, params: Any = ()) -> Any:
        found = await rows(sql, params)
        if sql == PLAN_QUERY:
            await meanwhile()
        return found

    rig.store.rows = rows_then_meanwhile  # type: ignore[method-assign]


def spy_plans(rig: Rig) -> dict[int, list[datetime]]:
    """Every time the engine plans each schedule, in order."""
    seen: dict[int, list[datetime]] = {}
    plan_at = rig.engine._plan_at

    def recording(schedule_id: int, when: datetime) -> None:
        seen.setdefault(schedule_id, []).append(when)
        plan_at(schedule_id, when)

    rig.engine._plan_at = recording  # type: ignore[method-assign]
    return seen


async def test_an_edit_during_plan_all_is_not_undone_by_its_snapshot(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    other = await rig.schedule(time_of_day="09:00", timezone="UTC")

    async def moderator_edits() -> None:
        await admin(rig).edit(GUILD, 1, schedule.id, Request(time="10:00"))

    after_snapshot(rig, moderator_edits)
    planned_times = spy_plans(rig)
    await rig.engine.plan_all()
    # the snapshot said 09:00; the edit (planned meanwhile) said 10:00, and stands:
    # not even for a moment was the stale 09:00 put back
    assert rig.planned(schedule.id) == NINE + timedelta(hours=1)
    assert NINE not in planned_times[schedule.id]
    assert planned_times[other.id] == [NINE]
    assert rig.planned(other.id) == NINE
    assert rig.engine._touched is None


async def test_a_cancel_during_plan_all_stays_cancelled(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")

    async def moderator_cancels() -> None:
        await admin(rig).cancel(GUILD, 1, schedule.id)

    after_snapshot(rig, moderator_cancels)
    await rig.engine.plan_all()
    assert rig.planned(schedule.id) is None
    assert rig.engine.planned_count() == 0


async def test_a_replan_that_failed_during_plan_all_is_planned_at_its_end(rig: Rig) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    by_id = rig.engine.schedules.by_id

    async def locked(schedule_id: int) -> Any:
        raise sqlite3.OperationalError("database is locked")

    async def a_command_fails_to_replan() -> None:
        rig.engine.schedules.by_id = locked  # type: ignore[method-assign]
        with pytest.raises(sqlite3.OperationalError):
            await rig.engine.plan(schedule.id)
        rig.engine.schedules.by_id = by_id  # type: ignore[method-assign]

    after_snapshot(rig, a_command_fails_to_replan)
    await rig.engine.plan_all()
    # skipped in the snapshot (touched), then planned from the store at the end
    assert rig.planned(schedule.id) == NINE


async def test_a_slot_missed_while_down_is_caught_up_even_if_replanned_meanwhile(
    rig: Rig,
) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")
    rig.clock.now = NINE + timedelta(minutes=5)  # the bot was down over 09:00

    async def replanned_meanwhile() -> None:  # as reconcile or a command would
        await rig.engine.plan(schedule.id)

    after_snapshot(rig, replanned_meanwhile)
    await rig.engine.plan_all()
    # the replan looks at the due 09:00 slot now, rather than moving past it
    assert rig.planned(schedule.id) == NINE + timedelta(minutes=5)
    await rig.engine.catch_up()
    assert len(rig.sender.posts) == 1
    delivery = await rig.engine.schedules.delivery(schedule.id, "2026-10-21T09:00Z")
    assert delivery is not None
    assert (delivery.state, delivery.late) == ("sent", True)
    assert rig.planned(schedule.id) == NINE + timedelta(days=1)
    await rig.engine.fire(schedule.id)  # the look planned for 09:05, should it still run
    assert len(rig.sender.posts) == 1


async def test_a_change_by_another_process_during_plan_all_converges_on_reconcile(
    rig: Rig,
) -> None:
    schedule = await rig.schedule(time_of_day="09:00", timezone="UTC")

    async def another_process_edits() -> None:  # no plan() here: only the change log
        await rig.engine.schedules.update(
            GUILD, schedule.id, {"time_of_day": "11:00"}, by=1, action="edited"
        )

    after_snapshot(rig, another_process_edits)
    await rig.engine.plan_all()
    # the change is after the change id plan_all started from: the next reconcile
    # (every RECONCILE_SECONDS) replans it
    await rig.engine.reconcile()
    assert rig.planned(schedule.id) == NINE + timedelta(hours=2)


async def test_plan_all_yields_and_plans_every_schedule(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner, "PLAN_BATCH", 2)
    made = [
        await rig.schedule(time_of_day=f"{9 + i % 3:02d}:{i:02d}", timezone="UTC", guild_id=g)
        for i, g in enumerate([GUILD, GUILD + (1 << 22)] * 4)
    ]
    await rig.engine.plan_all()
    assert rig.engine.planned_count() == len(made)
    for i, schedule in enumerate(made):
        assert rig.planned(schedule.id) == NINE.replace(hour=9 + i % 3, minute=i)


def restarted(rig: Rig) -> BriefingEngine:
    """The engine of the next process start: same store, clock and Discord, nothing planned."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start(paused=True)  # jobs fire only when the test says
    return BriefingEngine(
        rig.store,
        rig.sender,
        catch_up=timedelta(minutes=30),
        rate_per_second=1000,
        clock=rig.clock,
        sleep=rig.engine.sleep,
        scheduler=scheduler,
    )


async def test_plan_all_notes_missed_slots_after_the_hour_rounding(rig: Rig) -> None:
    # created at 09:30 with a 09:20 rule: the 09:20 of that day is before it began
    created = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)
    fresh = await rig.schedule(created=created, time_of_day="09:20", timezone="UTC")
    rig.clock.now = datetime(2026, 10, 20, 10, 0, tzinfo=UTC)
    await rig.engine.plan_all()
    assert rig.engine._missed == []
    assert rig.planned(fresh.id) == datetime(2026, 10, 21, 9, 20, tzinfo=UTC)
    # down from before the next day's 09:20 until just after it: that one is caught up
    rig.clock.now = datetime(2026, 10, 21, 9, 25, tzinfo=UTC)
    engine = restarted(rig)
    try:
        await engine.plan_all()
        assert engine._missed == [fresh.id]
        await engine.catch_up()
    finally:
        await engine.stop()
    assert len(rig.sender.posts) == 1
    delivery = await rig.engine.schedules.delivery(fresh.id, "2026-10-21T09:20Z")
    assert delivery is not None
    assert (delivery.state, delivery.late) == ("sent", True)


RULES = [
    ("09:20", "daily", None, None),
    ("00:00", "mon,wed", None, None),
    ("23:59", "weekdays", None, None),
    (None, None, "45 * * * *", None),
    (None, None, "30 2 * * sun", None),
    ("02:30", None, None, "2026-03-29"),
    ("01:30", "daily", None, None),
]
ZONES = ["UTC", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"]


def test_slot_between_agrees_with_a_full_scan() -> None:
    """The cached answer (rounded to the hour, fixed up) is the exact one, across DST
    changes and zones whose offsets are not whole hours."""
    chance = random.Random(4)
    start = datetime(2026, 3, 20, tzinfo=UTC)
    disagreements = []
    asked = 0
    for _ in range(3000):
        rule = chance.choice(RULES)
        zone = chance.choice(ZONES)
        since = start + timedelta(seconds=chance.randrange(0, 20 * 86400))
        if chance.random() < 0.5:  # exactly on a minute, as stored slots are
            since = since.replace(second=0)
        now = since + timedelta(seconds=chance.choice([0, 30, 60, 599, 3600, 86400, 3 * 86400]))
        exact = bool(missed_slots(_parsed_rule(*rule), zone, since, now, limit=1))
        asked += 1
        if _slot_between(rule, zone, since, now) != exact:
            disagreements.append((rule, zone, since, now, exact))
    assert asked == 3000
    assert disagreements == []


# -- when the bot plans: in discord.py's idle wait before on_ready ----------------------


async def test_the_bot_plans_once_its_servers_are_in_and_before_on_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    plan_all = BriefingEngine.plan_all

    async def watched_plan_all(engine: BriefingEngine) -> None:
        bot = seen["bot"]
        seen["at_plan"] = ([g.unavailable for g in bot.guilds], bot.is_ready())
        await plan_all(engine)

    monkeypatch.setattr(BriefingEngine, "plan_all", watched_plan_all)
    async with world(tmp_path) as w:
        store = await Store.open(w.config.database_path)
        try:
            made = [
                await Schedules(store).create(
                    guild_id=w.guild.id,
                    created_by=w.moderator.id,
                    limit=25,
                    fields={
                        "channel_id": w.briefings.id,
                        "timezone": "UTC",
                        "time_of_day": hhmm,
                        "days": "daily",
                        "content": "digest",
                    },
                )
                for hhmm in hours_ahead(3, 3, 5)
            ]
        finally:
            await store.close()
        bot = make_bot(w.config, bot_class=quick(PledgeBot), guild_ready_timeout=1.0)
        seen["bot"] = bot

        async def on_ready() -> None:
            assert bot.engine is not None
            seen.setdefault("planned_at_ready", bot.engine.planned_count())

        bot.add_listener(on_ready, "on_ready")
        task = asyncio.create_task(bot.start(w.emu.token))
        try:
            await asyncio.wait_for(bot.engine_started.wait(), 20)
        finally:
            await bot.close()
            await asyncio.gather(task, return_exceptions=True)
    # planning began with both servers in and on_ready still a second away ...
    assert seen["at_plan"] == ([False, False], False)
    # ... and was over before it
    assert seen["planned_at_ready"] == len(made) == 3


def hours_ahead(*hours: int) -> list[str]:
    """Times of day (UTC) that many hours from now: nothing falls due during a test."""
    now = datetime.now(UTC)
    return [(now + timedelta(hours=h, minutes=i)).strftime("%H:%M") for i, h in enumerate(hours)]


class FakeGuild:
    def __init__(self, unavailable: bool) -> None:
        self.unavailable = unavailable


class FakeBot:
    """What `_servers_streamed` reads of the bot."""

    def __init__(self) -> None:
        self.guilds: list[FakeGuild] = []
        self.ready = False

    def is_ready(self) -> bool:
        return self.ready

    def is_closed(self) -> bool:
        return False


async def test_planning_waits_for_ready_or_every_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "SERVERS_POLL_SECONDS", 0.001)
    bot = FakeBot()
    waiting = asyncio.create_task(PledgeBot._servers_streamed(bot))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    assert not waiting.done()  # no READY yet: no servers known
    bot.guilds = [FakeGuild(False), FakeGuild(True)]
    await asyncio.sleep(0.02)
    assert not waiting.done()  # one server still to come
    bot.guilds[1].unavailable = False
    await asyncio.wait_for(waiting, 1)
    # a server that stays unavailable (an outage): planning waits for on_ready instead
    bot.guilds = [FakeGuild(True)]
    waiting = asyncio.create_task(PledgeBot._servers_streamed(bot))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    assert not waiting.done()
    bot.ready = True
    await asyncio.wait_for(waiting, 1)


async def test_planning_waits_for_the_gateway_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No READY at all (a gateway that never becomes ready, or a bot in no servers):
    planning starts anyway once PLANNING_WAITS_AT_MOST has passed."""
    monkeypatch.setattr(app_module, "SERVERS_POLL_SECONDS", 0.001)
    monkeypatch.setattr(app_module, "PLANNING_WAITS_AT_MOST", 0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(PledgeBot._servers_streamed(FakeBot()), 1)  # type: ignore[arg-type]
    assert loop.time() - began >= 0.05  # it waited that long, however busy the machine


async def test_plan_all_reads_in_chunks_and_an_edit_between_chunks_stands(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up reads the schedules a few thousand at a time (the peak memory of one read
    of 100,000 rows stays resident); every schedule is planned across the chunks, and an
    edit made between two reads is planned as edited."""
    monkeypatch.setattr(planner, "PLAN_CHUNK", 3)
    schedules = [await rig.schedule(time_of_day="09:00", timezone="UTC") for _ in range(8)]
    last = schedules[-1]
    reads = 0

    async def moderator_edits() -> None:
        nonlocal reads
        reads += 1
        if reads == 1:  # after the first chunk, before the last schedule's chunk is read
            await admin(rig).edit(GUILD, 1, last.id, Request(time="10:00"))

    after_snapshot(rig, moderator_edits)
    await rig.engine.plan_all()
    assert reads == 3  # 3 + 3 + 2 rows
    assert [rig.planned(s.id) for s in schedules[:-1]] == [NINE] * 7
    assert rig.planned(last.id) == NINE + timedelta(hours=1)


async def test_plan_all_reads_each_chunks_last_slots_with_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up reads the schedules' last slots a chunk at a time too (every schedule's at
    once held tens of MiB after a few days of posting). Down over today's 09:00: the
    schedules that posted it are not missed, the others are, in every chunk."""
    monkeypatch.setattr(planner, "PLAN_CHUNK", 3)
    created = datetime(2026, 10, 19, 12, 0, tzinfo=UTC)
    schedules = [
        await rig.schedule(created=created, time_of_day="09:00", timezone="UTC") for _ in range(8)
    ]
    for posted in schedules[::2]:
        assert await rig.engine.schedules.claim(posted.id, "2026-10-20T09:00Z", late=False)
    manual = schedules[3]  # a manual post is not a slot: it does not stand for 09:00
    assert await rig.engine.schedules.claim(manual.id, "manual:1", late=False, manual=True)
    rig.clock.now = datetime(2026, 10, 20, 9, 10, tzinfo=UTC)
    last_slots = []
    read = rig.engine.schedules.last_slots

    async def counted(first: int = 0, last: int | None = None) -> dict[int, str]:
        last_slots.append((first, last))
        return await read(first, last)

    monkeypatch.setattr(rig.engine.schedules, "last_slots", counted)
    await rig.engine.plan_all()
    ids = [s.id for s in schedules]
    assert last_slots == [(ids[0], ids[2]), (ids[3], ids[5]), (ids[6], ids[7])]
    assert sorted(rig.engine._missed) == ids[1::2]
    assert all(rig.planned(i) == NINE for i in ids)


async def test_opening_a_file_another_process_is_switching_to_wal_waits_for_it(
    tmp_path: Path,
) -> None:
    """Two processes starting on a new (or older, pre-WAL) file both switch it to WAL. The
    switch reads the header, then writes it, and SQLite refuses one of two such at once
    with "database is locked" straight away, whatever the busy timeout: the process exited
    (the likely cause of the two-process tests' CI time-outs). Here the other switch holds
    the file's write lock for 0.3 s; opening waits for it."""
    database = tmp_path / "switching.db"
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # what a switch to WAL holds while it writes the header
    switched = asyncio.get_running_loop().call_later(0.3, other.execute, "ROLLBACK")
    try:
        store = await Store.open(database)
    finally:
        switched.cancel()
        other.close()
    try:
        assert await store.scalar("PRAGMA journal_mode") == "wal"
    finally:
        await store.close()


async def test_start_up_keeps_the_wal_while_the_process_runs(tmp_path: Path) -> None:
    """`pledgebot run` migrates through a store of its own and closes it before the bot
    opens its own. Were that close the file's last, it would checkpoint the file and delete
    its WAL under an exclusive lock, fsyncs and all, while another process starts on it."""
    database = tmp_path / "kept.db"
    wal = tmp_path / "kept.db-wal"
    store = await Store.open(database)
    with wal_kept(database):
        await store.close()
        assert wal.exists()
    assert not wal.exists()  # the keeper's was the last close


FIRST_BRIEFING = """
import asyncio, sys
from datetime import timedelta
from pathlib import Path

from bot.briefings.engine import BriefingEngine
from bot.briefings.schedules import Schedules
from bot.store import Store


async def main(path: str) -> None:
    store = await Store.open(Path(path))
    engine = BriefingEngine(store, None, catch_up=timedelta(hours=1), rate_per_second=50.0)
    await engine.plan_all()
    print("started", "apscheduler" in sys.modules)
    other = await Store.open(Path(path))  # another process's store creates the first one
    fields = {"channel_id": 5, "timezone": "UTC", "time_of_day": "09:00", "content": "digest"}
    created = await Schedules(other).create(guild_id=1, created_by=1, limit=25, fields=fields)
    await other.close()
    await engine.reconcile()
    print("planned", "apscheduler" in sys.modules, engine.scheduler.running)
    when = engine.planned_at(created.id)
    job = engine.scheduler.get_job(f"due:{when.isoformat()}") if when else None
    print("job", job is not None and job.next_run_time == when)
    await engine.stop()
    await store.close()


asyncio.run(main(sys.argv[1]))
"""


def test_apscheduler_is_loaded_with_the_first_briefing_planned(tmp_path: Path) -> None:
    """A process with no briefing to plan never imports APScheduler (1.8 MiB resident);
    the first briefing, created by another process after start-up, loads and starts it
    with the briefing's job. In a process of its own, since this one has imported it."""
    database = tmp_path / "first.db"
    sqlite3.connect(database).close()
    done = subprocess.run(
        [sys.executable, "-c", FIRST_BRIEFING, str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["started False", "planned True True", "job True"]
