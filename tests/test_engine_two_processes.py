"""Two real `pledgebot run` processes on one database, as with a rolling restart.

One scenario, run once for the module per backend (it waits for real clock minutes): on
one SQLite file (`[sqlite]`), and on one PostgreSQL database (`[postgresql]`, as two
hosts would share it). Both processes start together on a fresh database; the schedules
are then created, edited, paused and cancelled by a third process (this test, through the
same admin code the commands use); at the slot, both processes fire every briefing. Each
test below checks one numbered promise of the engine issue against what the emulator saw.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.briefings.admin import BriefingAdmin, Request
from bot.briefings.compose import Briefing
from bot.briefings.engine import BriefingEngine
from bot.local import Emulator
from bot.pledges.lookup import Catalog
from bot.storage.base import BUSY_TIMEOUT_MS
from bot.storage.schema import SCHEMA_VERSION, STEPS, resolved
from bot.store import Store
from tests.pg_server import drop_database, new_database
from tests.test_robustness_support import (
    SHARED_PACING,
    BotProcess,
    no_collection_pauses,
    rows,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

GUILDS = 100  # ~3 s of posts at the shared budget: long enough for both to post at once
EDITED, PAUSED, CANCELLED, CANCELLED_IN_RETRY = 0, 1, 2, 3
STARTED = "briefing engine planned"
# Generous: on a loaded CI machine two fresh processes migrate, load content and sync
# commands one after the other (SQLite's write lock) before either plans.
START_TIMEOUT = 150


def exited(bot: BotProcess) -> bool:
    return bot.proc is not None and bot.proc.returncode is not None


def started_or_output(bots: list[BotProcess]) -> str:
    """For a start-up that failed: the end of each process's output that did not start."""
    return "\n".join(
        f"--- {bot.name} (exit code {bot.proc.returncode if bot.proc else None}), last lines:\n"
        + "\n".join(bot.output().splitlines()[-15:])
        for bot in bots
        if STARTED not in bot.output()
    )


async def all_started(bots: list[BotProcess]) -> None:
    """Until every process has planned. One that exits first can never plan: it fails the
    test at once, with what it said (the test used to wait out its whole timeout for it,
    and show nothing)."""
    await wait_for(
        lambda: all(STARTED in bot.output() for bot in bots) or any(map(exited, bots)),
        START_TIMEOUT,
        "every process started",
        explain=lambda: started_or_output(bots),
    )
    assert all(STARTED in bot.output() for bot in bots), started_or_output(bots)


class NoDiscord:
    """The third process only changes schedules; it never posts."""

    async def channel_problem(self, guild_id: int, channel_id: int) -> str | None:
        return None

    async def post(self, channel_id: int, briefing: Briefing, **_: Any) -> int:
        raise AssertionError("the editing process must not post")

    async def find_post(self, channel_id: int, marker: str, *, since: datetime) -> int | None:
        return None

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None:
        return None


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """`wait_for` with a predicate that reads the database (on either backend)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def moderator_elsewhere(database: Path | str) -> tuple[Store, BriefingAdmin]:
    store = await Store.open(database)
    engine = BriefingEngine(
        store,
        NoDiscord(),
        catch_up=timedelta(minutes=30),
        rate_per_second=50,
        scheduler=AsyncIOScheduler(timezone=UTC),  # never started: it plans nothing here
    )
    catalogs = SimpleNamespace(pledges=Catalog("pledge", []), powers=Catalog("power", []))
    return store, BriefingAdmin(engine, catalogs, limit=25, default_tz="UTC")


@dataclass
class Outcome:
    slot: datetime
    messages: list[list[dict[str, Any]]]
    post_times: list[float]
    rate_limited: int
    deliveries: dict[int, list[tuple[str, str, str | None]]]
    logs: list[str]
    requests: list[tuple[float, str, str, int]] = field(default_factory=list)


def whole_minute_after(now: datetime, margin: float) -> datetime:
    slot = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while (slot - now).total_seconds() < margin:
        slot += timedelta(minutes=1)
    return slot


async def scenario(tmp_path: Path, database: Path | str) -> Outcome:
    """`database`: a SQLite file that does not exist yet, or an empty PostgreSQL database
    (both processes create the schema)."""
    emu = Emulator(token="two-processes", rate_limit_per_second=50)
    await emu.start()
    bots: list[BotProcess] = []
    try:
        guilds = [
            emu.add_guild(f"Server {i}", channels=("general", "briefings")) for i in range(GUILDS)
        ]
        channels = [g.channels["briefings"] for g in guilds]
        config = write_config(
            tmp_path / "bots.toml",
            database=database,
            emulator=emu,
            log_level="DEBUG",
            extra=SHARED_PACING,
        )
        bots = [BotProcess(tmp_path, config, emu.token, name=f"bot{i}") for i in (1, 2)]
        await asyncio.gather(*(bot.start() for bot in bots))
        await all_started(bots)
        slot = whole_minute_after(datetime.now(UTC), margin=12)
        store, admin = await moderator_elsewhere(database)
        try:
            ids = []
            for guild, channel in zip(guilds, channels, strict=True):
                card = await admin.schedule(
                    guild.id,
                    1,
                    Request(channel_id=channel.id, time=slot.strftime("%H:%M"), timezone="UTC"),
                )
                ids.append(int(card.title.split("#")[1].split()[0]))
            await asyncio.sleep(2)  # both processes have planned them by now (reconcile)
            later = (slot + timedelta(minutes=1)).strftime("%H:%M")
            await admin.edit(guilds[EDITED].id, 1, ids[EDITED], Request(time=later))
            await admin.pause(guilds[PAUSED].id, 1, ids[PAUSED])
            await admin.cancel(guilds[CANCELLED].id, 1, ids[CANCELLED])
            retried = channels[CANCELLED_IN_RETRY]
            emu.fail_next("POST", rf"/channels/{retried.id}/messages", status=503, count=2)

            def refused_once() -> bool:
                return any(
                    r.status == 503 and r.path.endswith(f"/channels/{retried.id}/messages")
                    for r in emu.requests
                )

            wait = (slot - datetime.now(UTC)).total_seconds()
            await wait_for(refused_once, wait + 30, "the first refused post")
            await admin.cancel(guilds[CANCELLED_IN_RETRY].id, 1, ids[CANCELLED_IN_RETRY])

            async def settled() -> bool:
                done = await store.scalar(
                    "SELECT count(*) FROM deliveries WHERE state != 'claimed' AND slot = ?",
                    (slot.strftime("%Y-%m-%dT%H:%MZ"),),
                )
                return int(done) >= GUILDS - 3  # all but the edited, paused and cancelled ones

            await wait_until(settled, 60, "every slot dealt with")
            edited_slot = slot + timedelta(minutes=1)
            wait = (edited_slot - datetime.now(UTC)).total_seconds()
            await wait_for(
                lambda: len(emu.messages(channels[EDITED])) >= 1, wait + 30, "the edited post"
            )
            await asyncio.sleep(3)  # room for a duplicate to show up, if there were one
        finally:
            await store.close()
        running = [bot.proc is not None and bot.proc.returncode is None for bot in bots]
        logs = [bot.output() for bot in bots]
        for bot in bots:
            await bot.stop()
        deliveries: dict[int, list[tuple[str, str, str | None]]] = {}
        reader = await Store.open(database)
        try:
            found = await reader.rows(
                "SELECT schedule_id, slot, state, error FROM deliveries ORDER BY id"
            )
        finally:
            await reader.close()
        for schedule_id, slot_key, state, error in found:
            deliveries.setdefault(ids.index(schedule_id), []).append((slot_key, state, error))
        posts = [
            r.time
            for r in emu.requests
            if r.method == "POST" and r.path.endswith("/messages") and r.status == 200
        ]
        return Outcome(
            slot,
            [emu.messages(c) for c in channels],
            posts,
            emu.rate_limited_count,
            deliveries,
            logs if all(running) else ["a process exited early", *logs],
            [(r.time, r.method, r.path, r.status) for r in emu.requests],
        )
    finally:
        for bot in bots:
            await bot.stop()
        await emu.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    tmp_path = tmp_path_factory.mktemp("two-processes")
    if request.param == "sqlite":
        # does not exist yet: both processes create it
        with no_collection_pauses():
            return asyncio.run(scenario(tmp_path, tmp_path / "fresh.db"))
    server = str(request.getfixturevalue("pg_server"))

    async def on_postgresql() -> Outcome:
        dsn = await new_database(server)  # empty: both processes migrate it
        try:
            return await scenario(tmp_path, dsn)
        finally:
            await drop_database(server, dsn)

    with no_collection_pauses():
        return asyncio.run(on_postgresql())


def posted_at(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["timestamp"])


def test_item1_an_edit_through_another_process_posts_at_the_new_time_only(
    outcome: Outcome,
) -> None:
    edited = outcome.messages[EDITED]
    assert len(edited) == 1
    assert posted_at(edited[0]) >= outcome.slot + timedelta(minutes=1)
    slots = [d[0] for d in outcome.deliveries.get(EDITED, [])]
    assert slots == [(outcome.slot + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")]


def test_item2_paused_or_cancelled_elsewhere_never_posts_even_during_retries(
    outcome: Outcome,
) -> None:
    assert outcome.messages[PAUSED] == []
    assert outcome.messages[CANCELLED] == []
    assert outcome.messages[CANCELLED_IN_RETRY] == []
    [(_, state, error)] = outcome.deliveries[CANCELLED_IN_RETRY]
    assert state == "failed"
    assert error == "not posted: the briefing was cancelled before it went out"


def test_item3_two_processes_share_one_rate_budget(outcome: Outcome) -> None:
    others = [m for i, m in enumerate(outcome.messages) if i > CANCELLED_IN_RETRY]
    assert [len(m) for m in others] == [1] * len(others)
    refused = [r for r in outcome.requests if r[3] == 429]
    assert outcome.rate_limited == 0, "\n".join(
        [
            f"{t - refused[0][0]:+.3f} s {method} {path} {status}"
            for t, method, path, status in outcome.requests
            if abs(t - refused[0][0]) < 1.0
        ]
        + [line for log in outcome.logs for line in log.splitlines() if "rate budget" in line]
    )
    times = sorted(outcome.post_times)
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 50
    # Both processes fired every briefing at the slot, and the claims were contested. Which
    # one wins them is a race: one process may win every claim (seen on PostgreSQL under
    # load), so only one of them is sure to have lost some.
    fired = f"date[{outcome.slot.strftime('%Y-%m-%d %H:%M:%S')} UTC]"
    for log in outcome.logs:
        assert any(fired in line and "executed successfully" in line for line in log.splitlines())
    assert any(": already claimed" in log for log in outcome.logs)


def test_item4_two_processes_start_together_on_a_fresh_database(outcome: Outcome) -> None:
    assert len(outcome.logs) == 2  # both were still running at the end
    for log in outcome.logs:
        assert STARTED in log
        assert "Traceback" not in log


async def test_item4_two_processes_start_together_on_an_older_database(tmp_path: Path) -> None:
    database = tmp_path / "older.db"
    with sqlite3.connect(database) as conn:  # as pledgebot left it before migration 4
        for step in STEPS[:3]:
            for script in resolved(step, "sqlite"):
                assert isinstance(script, str)
                conn.executescript(script)
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    emu = Emulator(token="older")
    await emu.start()
    bots = [
        BotProcess(
            tmp_path,
            write_config(tmp_path / "c.toml", database=database, emulator=emu),
            emu.token,
            name=f"old{i}",
        )
        for i in (1, 2)
    ]
    try:
        await asyncio.gather(*(bot.start() for bot in bots))
        await all_started(bots)
        assert [bot.proc.returncode for bot in bots if bot.proc] == [None, None]
        assert all("Traceback" not in bot.output() for bot in bots)
    finally:
        for bot in bots:
            await bot.stop()
        await emu.stop()
    assert rows(database, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


async def test_item4_start_up_outwaits_another_process_holding_the_file(tmp_path: Path) -> None:
    """The first process to open a file switches it to WAL, holding it exclusively across
    four fsyncs: on a slow disk, seconds apiece. A process starting meanwhile waited only
    as long as a write does (5 s), then exited with "database is locked" (seen with fsyncs
    slowed to 1.5 s). Here another connection holds the file for longer than that:
    start-up waits, then starts."""
    database = tmp_path / "held.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    emu = Emulator(token="held-elsewhere")
    await emu.start()
    bot = BotProcess(
        tmp_path,
        write_config(tmp_path / "c.toml", database=database, emulator=emu),
        emu.token,
        name="held",
    )
    try:
        await bot.start()
        with pytest.raises(TimeoutError):  # it must not give up while the file is held
            await wait_for(lambda: exited(bot), BUSY_TIMEOUT_MS / 1000 + 2, "the process to exit")
        holder.execute("ROLLBACK")
        await all_started([bot])
    finally:
        holder.close()
        await bot.stop()
        await emu.stop()
