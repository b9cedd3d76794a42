"""The briefing engine's test rig: a controllable clock, a fake sender, a real store.

Shared by the engine's test files; the `rig` fixture itself lives in tests/conftest.py
(on `loaded_store`, which reads `store`). A test module that imports
`store_on_both_backends` overrides `store` there, so its `rig` (and `store`) tests run
once per backend: `[sqlite]` and `[postgresql]`. A test about SQLite alone (its file,
its locks) takes `sqlite_only(reason)`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.briefings.compose import Briefing
from bot.briefings.engine import BriefingEngine
from bot.briefings.schedules import Schedule
from bot.briefings.sender import DeliveryFailure, FailureKind
from bot.storage import postgres
from bot.store import Store


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeSender:
    """Records posts; can refuse, fail or be slow on demand. Dedupes nonces like Discord,
    for `nonce_window` (on the rig's clock) only."""

    clock: FakeClock
    posts: list[tuple[int, Briefing, str]] = field(default_factory=list)
    markers: dict[str, int] = field(default_factory=dict)
    notices: list[tuple[int, str]] = field(default_factory=list)
    failures: list[FailureKind] = field(default_factory=list)
    problem: str | None = None
    seen_nonces: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    nonce_window: timedelta = timedelta(minutes=3)
    lookups: list[str] = field(default_factory=list)
    # a failure raised after the post went through: the answer was lost on the way back
    lose_answer: bool = False
    # runs as a post goes out (e.g. a moderator acting meanwhile)
    during_post: Callable[[], Awaitable[None]] | None = None

    async def channel_problem(self, guild_id: int, channel_id: int) -> str | None:
        return self.problem

    async def post(
        self, channel_id: int, briefing: Briefing, *, nonce: str, role_id: int | None, marker: str
    ) -> int:
        if self.during_post is not None:
            await self.during_post()
        if self.failures:
            kind = self.failures.pop(0)
            raise DeliveryFailure(f"simulated {kind}", kind=kind)
        earlier = self.seen_nonces.get(nonce)
        if earlier is not None and self.clock.now - earlier[1] <= self.nonce_window:
            return earlier[0]
        self.posts.append((channel_id, briefing, nonce))
        self.seen_nonces[nonce] = (len(self.posts), self.clock.now)
        self.markers[marker] = len(self.posts)
        if self.lose_answer:
            self.lose_answer = False
            raise DeliveryFailure("simulated timeout after posting", kind="retry")
        return len(self.posts)

    async def find_post(self, channel_id: int, marker: str, *, since: datetime) -> int | None:
        self.lookups.append(marker)
        return self.markers.get(marker)

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None:
        self.notices.append((guild_id, text))


async def no_sleep(_: float) -> None:
    return None


GUILD = 81_000_000_000_000_000


@dataclass
class Rig:
    store: Store
    engine: BriefingEngine
    sender: FakeSender
    clock: FakeClock

    async def schedule(self, created: datetime | None = None, **fields: Any) -> Schedule:
        values = {"channel_id": 5, "timezone": "Europe/London", "content": "digest", **fields}
        schedule = await self.engine.schedules.create(
            guild_id=fields.pop("guild_id", GUILD), created_by=1, limit=25, fields=values
        )
        created = created or self.clock.now  # the store's own clock is the real one
        if created is not None:
            async with self.store.transaction() as conn:
                await conn.execute(
                    "UPDATE schedules SET active_since = ?, created_at = ? WHERE id = ?",
                    (created.isoformat(), created.isoformat(), schedule.id),
                )
        found = await self.engine.schedules.by_id(schedule.id)
        assert found is not None
        return found

    def planned(self, schedule_id: int) -> datetime | None:
        """When the engine will look at the schedule next, checked against the real job."""
        when = self.engine.planned_at(schedule_id)
        if when is not None:
            job = self.engine.scheduler.get_job(f"due:{when.isoformat()}")
            assert job is not None and job.trigger.run_date == when
        return when

    async def run_until(self, schedule_id: int, end: datetime, zone: str = "UTC") -> list[str]:
        """Fire the planned job again and again, moving the clock, until `end`; the local
        times (in `zone`) of the slots that fired."""
        fired = []
        await self.engine.plan(schedule_id)
        while (planned := self.planned(schedule_id)) is not None and planned <= end:
            self.clock.now = planned
            fired.append(planned.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M"))
            await self.engine.fire(schedule_id)
        return fired


def new_rig(store: Store) -> Rig:
    clock = FakeClock(datetime(2026, 10, 20, 12, 0, tzinfo=UTC))
    sender = FakeSender(clock)
    # Started paused: jobs are planned for real but fired only by the test, at the
    # fake clock's pace.
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start(paused=True)
    engine = BriefingEngine(
        store,
        sender,
        catch_up=timedelta(minutes=30),
        rate_per_second=1000,
        clock=clock,
        sleep=no_sleep,
        scheduler=scheduler,
    )
    return Rig(store, engine, sender, clock)


@pytest.fixture(name="store")
async def store_on_both_backends(any_store: Store) -> Store:
    """`store`, once per backend (tests/conftest.py's `any_store`), for the module that
    imports this."""
    return any_store


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """A test about SQLite itself, in a module run on both backends: `reason` (at the call
    site) says why. It gets no PostgreSQL case at all, rather than a skipped one."""
    del reason
    return pytest.mark.parametrize("store_location", ["sqlite"], indirect=True)


@asynccontextmanager
async def write_lock_held_elsewhere(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """Another process holds the store's write lock, past a timeout cut to 50 ms: SQLite's
    `BEGIN IMMEDIATE` (writes fail with `database is locked`), or PostgreSQL's writer
    advisory lock (writes fail with a lock timeout)."""
    if store.path is not None:
        await store.db.writer.execute("PRAGMA busy_timeout = 50")  # type: ignore[attr-defined]
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    begin = postgres._BEGIN.replace(
        f"lock_timeout = '{postgres.LOCK_TIMEOUT}'", "lock_timeout = '50ms'"
    )
    assert begin != postgres._BEGIN
    monkeypatch.setattr(postgres, "_BEGIN", begin)
    other_pg = await asyncpg.connect(store.db.dsn)  # type: ignore[attr-defined]
    try:
        await other_pg.execute("BEGIN")
        await other_pg.execute("SELECT pg_advisory_xact_lock($1)", postgres.WRITER_LOCK)
        yield
    finally:
        await other_pg.close()
