"""Planning: when this process next looks at each schedule it owns.

A plan is only a reminder to look: the firing re-reads the store, the only truth, and
decides. Each planned schedule has one look, at its next slot or at a due slot nobody has
dealt with yet, and schedules due at the same instant share one APScheduler job
(`due:{instant}`), so 10,000 briefings at 09:00 are one job. A reconcile loop reads the
store's change log every second and replans what any process changed; on PostgreSQL a
NOTIFY sent with each change wakes it at once. Schedules share rules and the instants
they are asked about, so the slot arithmetic is cached.

`Planner` is a mixin of `BriefingEngine`, not a part the engine holds, because planning
and firing call each other both ways: a planned look fires; a firing replans or unplans
its schedule, and after a failure plans to look again soon; an unreadable row is paused by
the delivering half. As one object that needs no references back and forth. What the
planner needs of its host is declared on the class: `store`, `schedules`, `shards`,
`clock`, `fire` and `_quarantine`. APScheduler is imported with the first look planned, so
a process with no briefing does without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from array import array
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.briefings.recurrence import Recurrence, missed_slots, next_slots
from bot.briefings.rules import build_recurrence
from bot.briefings.schedules import CHANGES_CHANNEL, Schedule, Schedules
from bot.errors import UserError, store_errors
from bot.models import utc_slot, utc_slot_instant
from bot.storage import Row
from bot.store import Store

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 1.0
# A firing that failed on the store (locked, full) looks again after these delays.
FIRE_RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 60.0)
MAX_FIRE_RETRY = timedelta(seconds=max(FIRE_RETRY_DELAYS))
# What a row that no longer parses raises (an unknown zone after a tzdata change, a
# hand-edited rule): that schedule is paused, the others run.
UNREADABLE = (UserError, ValueError, KeyError)
# What planning needs of a schedule, and no more: building 10,000 `Schedule`s costs more
# than planning them.
PLAN_QUERY = (
    "SELECT id, guild_id, timezone, time_of_day, days, cron, run_date, active_since "
    "FROM schedules WHERE state = 'active' AND id > ? ORDER BY id LIMIT ?"
)
# Rows read at once by start-up planning: 100,000 rows in one read would hold tens of MiB
# at the peak, which the process keeps as resident memory afterwards. Planning 100,000
# briefings left +6.8 MiB resident with chunks of 4,096, +3.2 MiB with 1,024, in the
# same time (0.9 s): a chunk's rows are freed, but the pages they took stay.
PLAN_CHUNK = 1024
# Schedules planned between two yields to the event loop.
PLAN_BATCH = 512
# Firings started between two yields, when many schedules share an instant.
FIRING_BATCH = 64


@dataclass(frozen=True)
class Shards:
    """Which servers this process schedules: Discord's `(guild_id >> 22) % count`."""

    count: int = 1
    ids: frozenset[int] = frozenset({0})

    def owns(self, guild_id: int) -> bool:
        return (guild_id >> 22) % self.count in self.ids


ALL_SHARDS = Shards()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Plans:
    """When each planned schedule looks next, and which schedules look at each instant.

    Kept in arrays, not a dict and a set per instant: with 100,000 briefings those held
    about 13 MiB (tracemalloc), these about 1 MiB. Schedule ids are the store's, counted
    up from 1, so an array indexed by id stays as long as the highest id. An unplanned id
    is left in its instant's array and skipped when that instant fires; a count of the
    live ones says when an instant has none left.
    """

    def __init__(self) -> None:
        self._when = array("q")  # schedule id -> instant (microseconds since 1970); 0 = none
        self._ids: dict[int, array[int]] = {}  # instant -> ids planned there (some since not)
        self._live: dict[int, int] = {}  # instant -> how many are still planned there
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def instants(self) -> int:
        return len(self._live)

    def get(self, schedule_id: int) -> datetime | None:
        key = self._key_of(schedule_id)
        return _instant(key) if key else None

    def add(self, schedule_id: int, when: datetime) -> bool:
        """Plan a schedule that is not planned; True when it is the instant's first."""
        key = _key(when)
        if schedule_id >= len(self._when):
            self._when.extend(bytes(8 * (schedule_id + 1 - len(self._when))))
        self._when[schedule_id] = key
        self._ids.setdefault(key, array("q")).append(schedule_id)
        self._live[key] = self._live.get(key, 0) + 1
        self._count += 1
        return self._live[key] == 1

    def discard(self, schedule_id: int) -> datetime | None:
        """Unplan a schedule; the instant it leaves with nothing planned, if so."""
        key = self._key_of(schedule_id)
        if not key:
            return None
        self._when[schedule_id] = 0
        self._count -= 1
        self._live[key] -= 1
        if self._live[key]:
            return None
        del self._live[key], self._ids[key]
        return _instant(key)

    def take(self, when: datetime) -> list[int]:
        """The schedules planned at `when`, no longer planned."""
        key = _key(when)
        taken = []
        for schedule_id in self._ids.pop(key, ()):
            if self._when[schedule_id] == key:
                self._when[schedule_id] = 0
                taken.append(schedule_id)
        self._count -= len(taken)
        self._live.pop(key, None)
        return taken

    def _key_of(self, schedule_id: int) -> int:
        """The schedule's planned instant as stored; 0 when it is not planned."""
        return self._when[schedule_id] if schedule_id < len(self._when) else 0


def _key(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _instant(key: int) -> datetime:
    return _EPOCH + key * _MICROSECOND


# A schedule's rule as stored: (time_of_day, days, cron, run_date).
Rule = tuple[str | None, str | None, str | None, str | None]


def recurrence_of(schedule: Schedule) -> Recurrence:
    return _parsed_rule(schedule.time_of_day, schedule.days, schedule.cron, schedule.run_date)


def first_slot_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot of the schedule's rule with instant > `after`.

    Schedules share rules and the instants they are asked about (now, the slot they all
    last posted), so at start-up 10,000 schedules cost a few hundred computations.
    """
    rule = (schedule.time_of_day, schedule.days, schedule.cron, schedule.run_date)
    return _first_slot_after(rule, schedule.timezone, after)


@functools.lru_cache(maxsize=8192)
def _first_slot_after(rule: Rule, zone: str, after: datetime) -> datetime | None:
    found = next_slots(_parsed_rule(*rule), zone, after, 1)
    return found[0][1] if found else None


def _slot_between(rule: Rule, zone: str, since: datetime, now: datetime) -> bool:
    """Whether the rule has a slot with `since` < instant <= `now`.

    Asked with `since` rounded down to the hour first: each schedule has its own
    `active_since`, but a few hundred rules share a few rounded instants, so the answer
    is cached. Only when a slot falls between the rounded and the real `since` is the
    real one asked (uncached); the first slot after it is then the answer.
    """
    first = _first_slot_after(rule, zone, since.replace(minute=0, second=0, microsecond=0))
    if first is not None and first <= since:
        first = _first_slot_after.__wrapped__(rule, zone, since)
    return first is not None and first <= now


@functools.lru_cache(maxsize=4096)
def _parsed_rule(
    time: str | None, days: str | None, cron: str | None, date: str | None
) -> Recurrence:
    """Many schedules share a rule ("09:00 weekdays"): parse each text once."""
    return build_recurrence(time=time, days=days, cron=cron, date=date)


def due_slots(schedule: Schedule, last: str | None, now: datetime) -> list[tuple[str, datetime]]:
    """(UTC key, instant) of the due slots (instant <= `now`) after `last`, the UTC key of
    the latest slot dealt with, and after the rule began."""
    since = max(datetime.fromisoformat(schedule.active_since), _last_instant(last))
    found = missed_slots(recurrence_of(schedule), schedule.timezone, since, now)
    return [(utc_slot(instant), instant) for _, instant in found]


def _last_instant(last: str | None) -> datetime:
    try:
        return utc_slot_instant(last) if last else datetime.min.replace(tzinfo=UTC)
    except ValueError:  # a key from before slots were instants, left unmigrated
        return datetime.min.replace(tzinfo=UTC)


def _job_id(when: datetime) -> str:
    return f"due:{when.isoformat()}"


class Planner(ABC):
    """The planning half of `BriefingEngine`: which schedules it looks at, and when."""

    # Provided by the engine.
    store: Store
    schedules: Schedules
    shards: Shards
    clock: Callable[[], datetime]

    def __init__(self) -> None:
        self._scheduler: AsyncIOScheduler | None = None  # made when first needed
        self._planned_all = False  # the scheduler starts once plan_all has run
        self._missed: list[int] = []  # noted by plan_all, fired by catch_up
        self._plans = Plans()  # schedule id -> when to look next, and each instant's ids
        self._seen_change = 0
        # while plan_all runs: the schedules planned or unplanned meanwhile by others
        self._touched: set[int] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set by a NOTIFY of a change (PostgreSQL)
        self._reconciling = asyncio.Lock()
        self._listening = False

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """APScheduler, imported and made when the first look is planned: a process with
        no briefing to plan never loads it (1.8 MiB resident, most of it the
        `importlib.metadata` it reads its version and plugins with)."""
        if self._scheduler is None:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            self._scheduler = AsyncIOScheduler(timezone=UTC)
        return self._scheduler

    def pause_firings(self) -> None:
        """Planned looks stay planned but none fires: for tests and benchmarks that fire
        by hand, or that must not be written to meanwhile."""
        scheduler = self.scheduler
        if scheduler.running:
            scheduler.pause()
        else:
            scheduler.start(paused=True)

    @abstractmethod
    async def fire(self, schedule_id: int) -> None:
        """Deal with what is due for the schedule now."""

    @abstractmethod
    async def _quarantine(self, schedule: Schedule, error: Exception) -> None:
        """Pause a schedule whose row no longer parses, with its reason."""

    @abstractmethod
    async def between_slots(self) -> None:
        """Work done ahead of the slots, after each reconcile round."""

    # -- start and stop -------------------------------------------------------------

    async def plan_all(self) -> None:
        """Plan every schedule's next slot and note what was missed; needs no Discord.

        The bot runs it while the gateway connects, once the servers have streamed in; it
        yields as it goes. Reads every schedule's rule and its last slot in two queries, and
        shares the slot arithmetic between schedules with the same rule. A row that cannot
        be read is paused with its reason; the others are planned.

        A schedule that `plan` or `unplan` touches meanwhile (a /briefing command during
        start-up) is not planned from this snapshot, which may be older: it is planned
        again from the store once the rest are. Changes made elsewhere after the snapshot
        reach the reconcile loop, which starts from the change id read first.
        """
        touched: set[int] = set()
        self._touched = touched  # before any read: whatever touches a schedule reads after
        try:
            self._seen_change = await self.schedules.latest_change()
            self._missed = []
            now = self.clock()
            instants: dict[str | None, datetime] = {}
            async for count, row, slot in self._active_rules():
                if count % PLAN_BATCH == 0:
                    await asyncio.sleep(0)  # let the connection make progress meanwhile
                schedule_id, guild_id = row[0], row[1]
                if not self.shards.owns(guild_id):
                    continue
                last = instants.get(slot)
                if last is None:
                    last = instants[slot] = _last_instant(slot)
                rule = (row[3], row[4], row[5], row[6])
                try:
                    since = max(datetime.fromisoformat(row[7]), last)
                    if since < now and _slot_between(rule, row[2], since, now):
                        self._missed.append(schedule_id)
                    upcoming = _first_slot_after(rule, row[2], max(now, last))
                except UNREADABLE as error:
                    schedule = await self.schedules.by_id(schedule_id)
                    if schedule is not None:
                        await self._quarantine(schedule, error)
                    continue
                # a missed slot is still noted (its firing reads the store anyway)
                if upcoming is not None and schedule_id not in touched:
                    self._plan_at(schedule_id, upcoming)
        finally:
            self._touched = None
        # what was planned or unplanned meanwhile, planned again from the store as it is now
        for schedule_id in sorted(touched):
            try:
                await self.plan(schedule_id)
            except Exception:
                log.warning("briefing %s: could not plan", schedule_id, exc_info=True)
        log.info(
            "briefing engine planned %d briefings at %d instants",
            self.planned_count(),
            self._plans.instants(),
        )
        self._planned_all = True
        if self._scheduler is not None and not self._scheduler.running:
            self._scheduler.start()
        if self._reconciler is None:
            await self._listen_for_changes()
            self._reconciler = asyncio.create_task(self._reconcile_forever())

    async def _active_rules(self) -> AsyncIterator[tuple[int, Row, str | None]]:
        """(count, row, last slot) of every active schedule's rule, read PLAN_CHUNK rows
        at a time, with the chunk's last slots.

        Not one snapshot: a change made between two reads is in the change log after the
        id `plan_all` read first, so the reconcile loop plans it again. The last slots
        too are read a chunk at a time: every schedule's at once (100,000 briefings after
        five days of posting) raised the peak by 34 MiB; a chunk at a time, by 8.
        """
        count, after = 0, 0
        while True:
            rows = await self.store.rows(PLAN_QUERY, (after, PLAN_CHUNK))
            last_slots = await self.schedules.last_slots(rows[0][0], rows[-1][0]) if rows else {}
            for row in rows:
                count += 1
                yield count, row, last_slots.get(row[0])
            if len(rows) < PLAN_CHUNK:
                return
            after = rows[-1][0]

    async def stop(self) -> None:
        """Stop what `plan_all` started: the reconcile loop and the scheduler's jobs."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    # -- reconciling with the store ---------------------------------------------------

    async def reconcile(self) -> None:
        """Replan every schedule that anyone (this process or another) changed since the
        last look.

        One at a time: once a call returns, every change it read is planned (or will be
        read again), even when the background loop (woken by a NOTIFY) read it first. The
        bookmark moves only past what was planned: a schedule whose planning failed (a
        read that failed once) is read again next round, and the others are planned now.
        """
        async with self._reconciling:
            changed, latest = await self.schedules.changed_since(self._seen_change)
            failed_from: int | None = None
            for schedule_id, first_change in changed.items():
                try:
                    await self.plan(schedule_id)
                except Exception as error:
                    failed_from = first_change if failed_from is None else failed_from
                    log.warning(
                        "briefing %s: could not plan (%s); trying again", schedule_id, error
                    )
            self._seen_change = latest if failed_from is None else failed_from - 1

    async def _reconcile_forever(self) -> None:
        """Reconcile every RECONCILE_SECONDS, and at once when a change is notified."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), RECONCILE_SECONDS)
            self._changed.clear()  # a change notified from here on wakes the next round
            try:
                await self.reconcile()
            except Exception:
                log.warning("could not read schedule changes; trying again", exc_info=True)
            try:
                await self.between_slots()
            except Exception:
                log.warning("could not prepare for the next slots", exc_info=True)

    async def _listen_for_changes(self) -> None:
        """On PostgreSQL, have every committed schedule change (any process's) wake the
        reconcile loop: the notification is only a wake-up, the change log stays what is
        read. Without it (SQLite, or a listening connection that failed) the loop polls."""
        listen = getattr(self.store.db, "listen", None)
        if listen is None or self._listening:
            return
        try:
            await listen(CHANGES_CHANNEL, self._on_change_notified)
        except store_errors() as error:
            log.warning("cannot listen for schedule changes (%s); polling only", error)
        else:
            self._listening = True

    def _on_change_notified(self, _channel: str, _payload: str) -> None:
        self._changed.set()

    # -- one schedule -----------------------------------------------------------------

    async def plan(self, schedule_id: int) -> tuple[str, datetime] | None:
        """(Re)plan a schedule's next slot from the table; unplan it if not active."""
        if self._touched is not None:
            self._touched.add(schedule_id)
        schedule = await self.schedules.by_id(schedule_id)
        if (
            schedule is None
            or schedule.state != "active"
            or not self.shards.owns(schedule.guild_id)
        ):
            self.unplan(schedule_id)
            return None
        try:
            return self._plan_next(schedule, await self.schedules.last_slot(schedule_id))
        except UNREADABLE as error:
            await self._quarantine(schedule, error)
            return None

    def _plan_next(self, schedule: Schedule, last: str | None) -> tuple[str, datetime] | None:
        """Plan the next look: at a due slot nobody has dealt with yet, else the next slot.

        An edit that keeps the rule (a channel, the content) keeps `active_since`, so a slot
        that fell due before it and is still unclaimed (its firing waits to run, or retries
        after a store error) is still owed: the look stays planned for it, never moved past.
        """
        now = self.clock()
        since = max(datetime.fromisoformat(schedule.active_since), _last_instant(last))
        rule = (schedule.time_of_day, schedule.days, schedule.cron, schedule.run_date)
        if since < now and _slot_between(rule, schedule.timezone, since, now):
            planned = self._plans.get(schedule.id)
            # a retry already planned keeps its back-off; anything later looks now
            when = planned if planned is not None and planned <= now + MAX_FIRE_RETRY else now
            self._plan_at(schedule.id, when)
            due = due_slots(schedule, last, self.clock())
            return due[-1] if due else (utc_slot(when), when)
        upcoming = self._upcoming(schedule, last, 1)
        if not upcoming:
            self.unplan(schedule.id)
            return None
        slot, instant = upcoming[0]
        self._plan_at(schedule.id, instant)
        return slot, instant

    def _plan_at(self, schedule_id: int, when: datetime) -> None:
        """Remind this schedule to look at `when`.

        Schedules due at the same instant share one APScheduler job (`due:{instant}`):
        10,000 briefings at 09:00 are one job, not 10,000, so planning stays cheap.
        """
        when = when.astimezone(UTC)  # one job id per instant, whatever zone it came in
        if self._plans.get(schedule_id) == when:
            return
        self._unplan(schedule_id)
        if self._plans.add(schedule_id, when):
            from apscheduler.triggers.date import DateTrigger

            scheduler = self.scheduler
            scheduler.add_job(
                self._fire_due,
                DateTrigger(run_date=when),
                args=[when],
                id=_job_id(when),
                replace_existing=True,
                # Always run, however late: `fire` itself decides between late and missed,
                # so a busy loop can never silently drop a schedule's chain of firings.
                misfire_grace_time=None,
                coalesce=True,
            )
            if self._planned_all and not scheduler.running:
                scheduler.start()  # the first look planned after start-up

    def unplan(self, schedule_id: int) -> None:
        if self._touched is not None:
            self._touched.add(schedule_id)
        self._unplan(schedule_id)

    def _unplan(self, schedule_id: int) -> None:
        emptied = self._plans.discard(schedule_id)
        if emptied is not None and self.scheduler.get_job(_job_id(emptied)) is not None:
            self.scheduler.remove_job(_job_id(emptied))

    def planned_at(self, schedule_id: int) -> datetime | None:
        """When this process will next look at the schedule (None: not planned here)."""
        return self._plans.get(schedule_id)

    def planned_count(self) -> int:
        return len(self._plans)

    async def _fire_due(self, when: datetime) -> None:
        """APScheduler's job: fire every schedule planned for this instant."""
        due = self._plans.take(when)
        firings: list[asyncio.Task[None]] = []
        try:
            for count, schedule_id in enumerate(sorted(due), 1):
                firings.append(asyncio.create_task(self.fire(schedule_id)))
                if count % FIRING_BATCH == 0:
                    # 10,000 due at once: members' commands are answered between batches,
                    # not only once every firing has been started
                    await asyncio.sleep(0)
            await asyncio.gather(*firings)
        except asyncio.CancelledError:
            for firing in firings:
                firing.cancel()
            raise

    async def upcoming(self, schedule: Schedule, count: int) -> list[tuple[str, datetime]]:
        """(UTC key, instant) of the next slots not yet dealt with (claimed, sent, missed or
        skipped)."""
        return self._upcoming(schedule, await self.schedules.last_slot(schedule.id), count)

    def _upcoming(
        self, schedule: Schedule, last: str | None, count: int
    ) -> list[tuple[str, datetime]]:
        after = max(self.clock(), _last_instant(last))
        if count == 1:
            first = first_slot_after(schedule, after)
            return [] if first is None else [(utc_slot(first), first)]
        found = next_slots(recurrence_of(schedule), schedule.timezone, after, count)
        return [(utc_slot(instant), instant) for _, instant in found]
