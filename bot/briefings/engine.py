"""The briefing engine: the schedules table is the only truth; APScheduler only reminds.

Each active schedule has one in-memory job (`briefing:{id}`) at its next slot. A job is a
reminder to look, nothing more: when it fires, the engine re-reads the schedule, derives
from its current rule which slots are due (as UTC instants, after the last one dealt
with) and posts the newest within the catch-up window. A stale job (the schedule was
edited, paused or cancelled elsewhere) finds nothing due and replans. A reconcile loop
reads the store's change log every second, so every process replans what any other
changed; on PostgreSQL a NOTIFY sent with each change wakes it at once. A slot is
claimed in the store before it is sent, and sent with a nonce derived from the claim; a
re-send after Discord may have forgotten that nonce first looks for the post in the
channel. So restarts, retries and several processes never post a slot twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bot.briefings import compose
from bot.briefings.compose import Briefing
from bot.briefings.recurrence import Recurrence, build_recurrence, missed_slots, next_slots
from bot.briefings.schedules import CHANGES_CHANNEL, Schedule, Schedules
from bot.errors import UserError, store_errors
from bot.models import Pledge, Power, utc_slot, utc_slot_instant
from bot.rate_budget import RateBudget
from bot.storage import Row
from bot.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0)
# A post within a minute of its slot is on time, whatever the catch-up window says.
LATE_AFTER = timedelta(minutes=1)
MAX_MISSED_RECORDED = 100
# Discord drops a repeated nonce for "a few minutes"; trust it for less than that, and
# look in the channel before re-sending anything older.
NONCE_TRUST = timedelta(seconds=60)
RECONCILE_SECONDS = 1.0
# A firing that failed on the store (locked, full) looks again after these delays.
FIRE_RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 60.0)
MAX_FIRE_RETRY = timedelta(seconds=max(FIRE_RETRY_DELAYS))
# Schedules reading their rows at once, and schedules claiming and composing at once: each
# bounds how long a member's query waits behind the engine's when thousands fall due
# (four store operations in all, PostgreSQL's pool size).
PREPARING_AT_ONCE = 2
COMPOSED_KEPT = 256
CONTENT_STATE_SECONDS = 1.0
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
# at the peak, which the process keeps as resident memory afterwards.
PLAN_CHUNK = 4096
# Schedules planned between two yields to the event loop (a few milliseconds' work).
PLAN_BATCH = 512


def utc_clock() -> datetime:
    return datetime.now(UTC)


FailureKind = Literal["retry", "pause", "fail"]


class DeliveryFailure(Exception):
    """A post that did not go through.

    `retry`: may pass later (429, 5xx, timeouts). `pause`: the channel refuses us (403,
    404) so the schedule is paused, never deleted. `fail`: this post cannot be sent.
    """

    def __init__(self, reason: str, *, kind: FailureKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Sender(Protocol):
    """How the engine reaches Discord; `bot.client.delivery` implements it, tests fake it."""

    async def channel_problem(self, guild_id: int, channel_id: int) -> str | None: ...

    async def post(
        self, channel_id: int, briefing: Briefing, *, nonce: str, role_id: int | None, marker: str
    ) -> int: ...

    async def find_post(self, channel_id: int, marker: str, *, since: datetime) -> int | None: ...

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None: ...


@dataclass(frozen=True)
class Shards:
    """Which servers this process schedules: Discord's `(guild_id >> 22) % count`."""

    count: int = 1
    ids: frozenset[int] = frozenset({0})

    def owns(self, guild_id: int) -> bool:
        return (guild_id >> 22) % self.count in self.ids


ALL_SHARDS = Shards()


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


def _job_id(when: datetime) -> str:
    return f"due:{when.isoformat()}"


def nonce_for(schedule_id: int, slot: str) -> str:
    """Discord drops a repeated nonce (enforce_nonce) for a few minutes."""
    return hashlib.sha256(f"briefing:{schedule_id}:{slot}".encode()).hexdigest()[:25]


def marker_for(schedule_id: int, slot: str) -> str:
    """Printed in the post's footer: how a later re-send finds out the post went through."""
    return f"Briefing #{schedule_id} · {slot}"


def is_scheduled(slot: str) -> bool:
    try:
        utc_slot_instant(slot)
    except ValueError:
        return False
    return True


class BriefingEngine:
    def __init__(
        self,
        store: Store,
        sender: Sender,
        *,
        catch_up: timedelta,
        rate_per_second: float,
        shards: Shards = ALL_SHARDS,
        clock: Clock = utc_clock,
        sleep: Sleep = asyncio.sleep,
        scheduler: AsyncIOScheduler | None = None,
        nonce_trust: timedelta = NONCE_TRUST,
    ) -> None:
        self.store = store
        self.schedules = Schedules(store)
        self.sender = sender
        # 0 means "no catch-up after downtime", never "no post": a firing always arrives
        # a few milliseconds after its slot.
        self.catch_up_window = max(catch_up, LATE_AFTER)
        self.shards = shards
        self.clock = clock
        self.sleep = sleep
        self.nonce_trust = nonce_trust
        self.budget = RateBudget(store.db, rate_per_second, sleep=sleep)
        self.scheduler = scheduler or AsyncIOScheduler(timezone=UTC)
        self._missed: list[int] = []
        self._planned: dict[int, datetime] = {}  # schedule id -> when to look next
        self._due_at: dict[datetime, set[int]] = {}  # when -> the schedules to look at
        self._seen_change = 0
        # while plan_all runs: the schedules planned or unplanned meanwhile by others
        self._touched: set[int] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set by a NOTIFY of a change (PostgreSQL)
        self._reconciling = asyncio.Lock()
        self._listening = False
        self._fire_failures: dict[int, int] = {}
        # Two gates, not one: with a single one, a schedule that has read its row queues
        # again behind every other schedule's read before it may claim, so with 1,000 due
        # at once the first post waited for 1,000 reads (0.7 s on PostgreSQL). Two of each
        # keep the engine to four store operations at once, as one gate of four did.
        self._reading = asyncio.Semaphore(PREPARING_AT_ONCE)
        self._preparing = asyncio.Semaphore(PREPARING_AT_ONCE)
        self._composed: dict[tuple[object, ...], asyncio.Future[Briefing | None]] = {}
        self._content_state: tuple[object, ...] = ()
        self._content_state_at = -math.inf

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Both halves of start-up, for callers that have the guild cache already."""
        await self.plan_all()
        await self.catch_up()

    async def plan_all(self) -> None:
        """Plan every schedule's next slot and note what was missed; needs no Discord.

        The bot runs it while the gateway connects, once the servers have streamed in; it
        yields as it goes. Reads every schedule's rule and its last slot in two queries, and
        shares the slot arithmetic between schedules with the same rule, so 10,000 schedules
        plan in about 0.1 s. A row that cannot be read is paused with its reason; the
        others are planned.

        A schedule that `plan` or `unplan` touches meanwhile (a /briefing command during
        start-up) is not planned from this snapshot, which may be older: it is planned
        again from the store once the rest are. Changes made elsewhere after the snapshot
        reach the reconcile loop, which starts from the change id read first.
        """
        touched: set[int] = set()
        self._touched = touched  # before any read: whatever touches a schedule reads after
        try:
            self._seen_change = await self.schedules.latest_change()
            last_slots = await self.schedules.last_slots()
            self._missed = []
            now = self.clock()
            instants: dict[str | None, datetime] = {}
            async for count, row in self._active_rules():
                if count % PLAN_BATCH == 0:
                    await asyncio.sleep(0)  # let the connection make progress meanwhile
                schedule_id, guild_id = row[0], row[1]
                if not self.shards.owns(guild_id):
                    continue
                slot = last_slots.get(schedule_id)
                last = instants.get(slot)
                if last is None:
                    last = instants[slot] = self._last_instant(slot)
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
            len(self._due_at),
        )
        if not self.scheduler.running:
            self.scheduler.start()
        if self._reconciler is None:
            await self._listen_for_changes()
            self._reconciler = asyncio.create_task(self._reconcile_forever())

    async def _active_rules(self) -> AsyncIterator[tuple[int, Row]]:
        """(count, row) of every active schedule's rule, read PLAN_CHUNK rows at a time.

        Not one snapshot: a change made between two reads is in the change log after the
        id `plan_all` read first, so the reconcile loop plans it again.
        """
        count, after = 0, 0
        while True:
            rows = await self.store.rows(PLAN_QUERY, (after, PLAN_CHUNK))
            for row in rows:
                count += 1
                yield count, row
            if len(rows) < PLAN_CHUNK:
                return
            after = rows[-1][0]

    async def catch_up(self) -> None:
        """Once the guild cache is filled: finish interrupted posts, then post or record
        what was missed while offline. Each schedule on its own: one failing never stops
        the others."""
        await self.recover_interrupted()
        missed, self._missed = self._missed, []
        for schedule_id in missed:
            await self.fire(schedule_id)

    async def stop(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    # -- planning -----------------------------------------------------------------

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
        since = max(datetime.fromisoformat(schedule.active_since), self._last_instant(last))
        rule = (schedule.time_of_day, schedule.days, schedule.cron, schedule.run_date)
        if since < now and _slot_between(rule, schedule.timezone, since, now):
            planned = self._planned.get(schedule.id)
            # a retry already planned keeps its back-off; anything later looks now
            when = planned if planned is not None and planned <= now + MAX_FIRE_RETRY else now
            self._plan_at(schedule.id, when)
            due = self.missed_since(schedule, last)
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
        if self._planned.get(schedule_id) == when:
            return
        self._unplan(schedule_id)
        self._planned[schedule_id] = when
        group = self._due_at.setdefault(when, set())
        group.add(schedule_id)
        if len(group) == 1:
            self.scheduler.add_job(
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

    def unplan(self, schedule_id: int) -> None:
        if self._touched is not None:
            self._touched.add(schedule_id)
        self._unplan(schedule_id)

    def _unplan(self, schedule_id: int) -> None:
        when = self._planned.pop(schedule_id, None)
        if when is None:
            return
        group = self._due_at.get(when, set())
        group.discard(schedule_id)
        if not group:
            self._due_at.pop(when, None)
            if self.scheduler.get_job(_job_id(when)) is not None:
                self.scheduler.remove_job(_job_id(when))

    def planned_at(self, schedule_id: int) -> datetime | None:
        """When this process will next look at the schedule (None: not planned here)."""
        return self._planned.get(schedule_id)

    def planned_count(self) -> int:
        return len(self._planned)

    async def _fire_due(self, when: datetime) -> None:
        """APScheduler's job: fire every schedule planned for this instant."""
        due = self._due_at.pop(when, set())
        for schedule_id in due:
            if self._planned.get(schedule_id) == when:
                del self._planned[schedule_id]
        await asyncio.gather(*(self.fire(schedule_id) for schedule_id in sorted(due)))

    async def upcoming(self, schedule: Schedule, count: int) -> list[tuple[str, datetime]]:
        """The next slots not yet dealt with (claimed, sent, missed or skipped)."""
        return self._upcoming(schedule, await self.schedules.last_slot(schedule.id), count)

    def _upcoming(
        self, schedule: Schedule, last: str | None, count: int
    ) -> list[tuple[str, datetime]]:
        after = max(self.clock(), self._last_instant(last))
        if count == 1:
            first = first_slot_after(schedule, after)
            return [] if first is None else [(utc_slot(first), first)]
        found = next_slots(recurrence_of(schedule), schedule.timezone, after, count)
        return [(utc_slot(instant), instant) for _, instant in found]

    @staticmethod
    def _last_instant(last: str | None) -> datetime:
        try:
            return utc_slot_instant(last) if last else datetime.min.replace(tzinfo=UTC)
        except ValueError:  # a key from before slots were instants, left unmigrated
            return datetime.min.replace(tzinfo=UTC)

    # -- firing -------------------------------------------------------------------

    async def fire(self, schedule_id: int) -> None:
        """APScheduler's job: deal with what is due now by the store's current rule.

        A store error (a lock held past the busy timeout, a full disk) loses nothing: the
        schedule looks again shortly, and the slot is still due within the catch-up window.
        """
        try:
            await self.run_due(schedule_id)
        except Exception as error:
            failures = self._fire_failures.get(schedule_id, 0) + 1
            self._fire_failures[schedule_id] = failures
            delay = FIRE_RETRY_DELAYS[min(failures, len(FIRE_RETRY_DELAYS)) - 1]
            log.warning(
                "briefing %s: could not fire (%s); looking again in %.0f s",
                schedule_id,
                error,
                delay,
                exc_info=not isinstance(error, store_errors()),
            )
            self._plan_at(schedule_id, self.clock() + timedelta(seconds=delay))
            with contextlib.suppress(Exception):  # the store may still be failing
                await self.schedules.set_last_error(
                    schedule_id, f"could not post on time ({error}); retrying"
                )
        else:
            self._fire_failures.pop(schedule_id, None)

    async def run_due(self, schedule_id: int) -> None:
        """Post the newest due slot within the window, record older ones, then replan."""
        async with self._reading:  # thousands due at once must not flood the store
            schedule = await self.schedules.by_id(schedule_id)
            last = await self.schedules.last_slot(schedule_id)
        if (
            schedule is None
            or schedule.state != "active"
            or not self.shards.owns(schedule.guild_id)
        ):
            self.unplan(schedule_id)
            return
        if self._fire_failures.get(schedule_id):
            # the failed firing may have claimed, or even posted, before the store failed
            await self.recover_interrupted(schedule_id)
        try:
            due = self.missed_since(schedule, last)
        except UNREADABLE as error:
            await self._quarantine(schedule, error)
            return
        await self.handle_missed(schedule, due)
        await self.plan(schedule_id)

    async def send_now(self, schedule: Schedule) -> str:
        """A moderator's manual post: its own slot key, so it never blocks a scheduled one."""
        slot = f"manual:{self.clock().isoformat(timespec='seconds')}"
        return await self.deliver(schedule, slot, late=False, manual=True)

    async def deliver(
        self,
        schedule: Schedule,
        slot: str,
        *,
        late: bool,
        manual: bool = False,
        claimed: bool = False,
    ) -> str:
        """Claim, compose, send (retrying what may pass), record. Returns the outcome."""
        async with self._preparing:
            if not claimed and not await self.schedules.claim(
                schedule.id, slot, late=late, manual=manual, now=self.clock().isoformat()
            ):
                log.debug("briefing %s slot %s: already claimed", schedule.id, slot)
                return "already-claimed"
            problem = await self.sender.channel_problem(schedule.guild_id, schedule.channel_id)
            if problem:
                await self._pause(schedule, problem, slot)
                return "paused"
            try:
                briefing = await self.compose(schedule, slot)
            except DeliveryFailure as failure:
                await self._pause(schedule, failure.reason, slot)
                return "paused"
        if briefing is None:
            await self.schedules.finish(schedule.id, slot, "skipped", error=None)
            return "skipped"
        return await self._send(schedule, slot, briefing, manual=manual, recovering=claimed)

    async def _send(
        self, schedule: Schedule, slot: str, briefing: Briefing, *, manual: bool, recovering: bool
    ) -> str:
        nonce, marker = nonce_for(schedule.id, slot), marker_for(schedule.id, slot)
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            await self.budget.wait()
            stopped = await self._stopped(schedule.id, manual=manual)
            if stopped:
                await self.schedules.finish(schedule.id, slot, "failed", error=stopped)
                return "stopped"
            try:
                if attempt or recovering:
                    found = await self._posted_before(schedule, slot, marker)
                    if found is not None:
                        message_id = found
                        break
                async with self.budget.prepaid():
                    message_id = await self.sender.post(
                        schedule.channel_id,
                        briefing,
                        nonce=nonce,
                        role_id=schedule.role_id,
                        marker=marker,
                    )
                break
            except DeliveryFailure as failure:
                if failure.kind == "pause":
                    await self._pause(schedule, failure.reason, slot)
                    return "paused"
                if failure.kind == "fail" or delay is None:
                    log.warning(
                        "briefing %s slot %s not delivered after retries: %s",
                        schedule.id,
                        slot,
                        failure.reason,
                    )
                    await self.schedules.finish(schedule.id, slot, "failed", error=failure.reason)
                    return "failed"
                await self.sleep(delay)
        await self.schedules.finish(schedule.id, slot, "sent", message_id=message_id)
        if briefing.next_cursor is not None:
            await self.schedules.set_cursor(schedule.id, briefing.next_cursor)
        return "sent"

    async def _stopped(self, schedule_id: int, *, manual: bool) -> str | None:
        """Why a post must not go out any more: its briefing was paused or cancelled
        meanwhile (perhaps through another process), after the moderator was told so."""
        current = await self.schedules.by_id(schedule_id)
        state = current.state if current else "cancelled"
        if state == "cancelled" or (state == "paused" and not manual):
            return f"not posted: the briefing was {state} before it went out"
        return None

    async def _posted_before(self, schedule: Schedule, slot: str, marker: str) -> int | None:
        """Before a re-send: an earlier send may have reached Discord with its answer lost.
        Within the nonce window the nonce dedupes; beyond it, look in the channel."""
        delivery = await self.schedules.delivery(schedule.id, slot)
        if delivery is None or delivery.attempted_at is None:
            return None
        attempted = datetime.fromisoformat(delivery.attempted_at)
        now = self.clock()
        if now - attempted <= self.nonce_trust:
            return None
        found = await self.sender.find_post(
            schedule.channel_id, marker, since=attempted - timedelta(minutes=1)
        )
        if found is None:
            await self.schedules.mark_attempt(schedule.id, slot, now.isoformat())
        return found

    async def _pause(self, schedule: Schedule, reason: str, slot: str | None = None) -> None:
        """Stop posting into a channel that refuses us; keep the schedule, tell moderators."""
        if slot is not None:
            await self.schedules.finish(schedule.id, slot, "failed", error=reason)
        self.unplan(schedule.id)
        current = await self.schedules.by_id(schedule.id)
        if current is not None and current.state == "finished" and slot is not None:
            # a one-off's only slot failed: it is finished, and moderators are told why
            await self._notify(
                schedule,
                f"⚠️ Briefing #{schedule.id} (a one-off) could not post in "
                f"<#{schedule.channel_id}>: {reason}. Schedule a new one once that is fixed.",
            )
            return
        if current is None or current.state != "active":
            return
        await self.schedules.update(
            schedule.guild_id,
            schedule.id,
            {"state": "paused", "pause_reason": reason},
            by=0,
            action="paused by pledgebot",
        )
        log.warning("briefing %s paused: %s", schedule.id, reason)
        await self._notify(
            schedule,
            f"⏸️ Briefing #{schedule.id} for <#{schedule.channel_id}> is paused: {reason}. "
            f"Fix it, then use `/briefing resume id:{schedule.id}`.",
        )

    async def _notify(self, schedule: Schedule, text: str) -> None:
        try:
            await self.sender.notify(schedule.guild_id, text, avoid_channel_id=schedule.channel_id)
        except DeliveryFailure as failure:
            log.warning("could not notify moderators of guild %s: %s", schedule.guild_id, failure)

    async def _quarantine(self, schedule: Schedule, error: Exception) -> None:
        """A row that no longer parses is paused with its reason; the rest keep running."""
        log.error("briefing %s cannot be read and is paused: %r", schedule.id, error)
        await self._pause(schedule, f"its schedule can't be read ({error}); edit it to fix")

    # -- composing ----------------------------------------------------------------

    async def compose(self, schedule: Schedule, slot: str) -> Briefing | None:
        """What a slot posts. Composed once per slot and content state, however many
        schedules share it: a 09:00 fan-out of 10,000 digests reads the store once."""
        kind, _, target = schedule.content.partition(":")
        scheduled = is_scheduled(slot)
        when = utc_slot_instant(slot) if scheduled else self.clock()
        since: str | None = None
        if kind == "changes" and schedule.cursor == 0:
            previous = await self.schedules.last_delivery(schedule.id, sent_only=True)
            since = previous.finished_at if previous else schedule.created_at
        cursor = schedule.cursor if kind in ("spotlight", "changes") else 0
        key = (schedule.content, schedule.role_id, cursor, since, when, await self._state())
        if not scheduled:
            return await self._compose(kind, target, schedule, when, since)
        composing = self._composed.get(key)
        if composing is None:
            # the first asker composes; every other schedule due then awaits the same work
            if len(self._composed) >= COMPOSED_KEPT:
                self._composed.clear()
            composing = asyncio.ensure_future(self._compose(kind, target, schedule, when, since))
            self._composed[key] = composing
        try:
            return await asyncio.shield(composing)
        except Exception:
            self._composed.pop(key, None)  # a failure is not remembered: the next one retries
            raise

    async def _state(self) -> tuple[object, ...]:
        """The content's state (loads and status changes by any process), read at most
        once a second."""
        now = time.monotonic()
        if now - self._content_state_at >= CONTENT_STATE_SECONDS:
            self._content_state = await self.store.content_signature()
            self._content_state_at = now
        return self._content_state

    async def _compose(
        self, kind: str, target: str, schedule: Schedule, when: datetime, since: str | None
    ) -> Briefing | None:
        store = self.store
        statements = {s.slug: s for s in await store.statements()}
        if kind == "digest":
            return compose.digest(
                await store.pledges(), list(statements.values()), when, schedule.role_id
            )
        if kind == "spotlight":
            records: Sequence[Pledge | Power] = [*await store.pledges(), *await store.powers()]
            return compose.spotlight(records, statements, schedule.cursor, when, schedule.role_id)
        if kind == "changes":
            # Bookmarked by what was composed, not by when a send finished: a change made
            # while this post waited or retried is in the next one.
            if since is None:
                changed = await store.status_history(after_id=schedule.cursor)
            else:
                changed = await store.status_history(since=since)
            titles = {p.slug: p.title for p in await store.pledges()}
            found = compose.changes(changed, titles, since, when, schedule.role_id)
            if found is None:
                return None
            return replace(found, next_cursor=max(c.id for c in changed))
        if kind == "pledge":
            pledge = await store.pledge(target)
            if pledge is None:
                raise DeliveryFailure(f"pledge {target!r} is no longer loaded", kind="pause")
            return compose.single(pledge, statements, when, schedule.role_id)
        if kind == "power":
            power = await store.power(target)
            if power is None:
                raise DeliveryFailure(f"power {target!r} is no longer loaded", kind="pause")
            related = await store.pledges(slugs=power.pledges) if power.pledges else []
            return compose.single(power, statements, when, schedule.role_id, related)
        raise DeliveryFailure(f"unknown briefing content {schedule.content!r}", kind="pause")

    # -- downtime -----------------------------------------------------------------

    def missed_since(self, schedule: Schedule, last: str | None) -> list[tuple[str, datetime]]:
        """Due slots (instant <= now) after the latest dealt with and after the rule began."""
        since = max(datetime.fromisoformat(schedule.active_since), self._last_instant(last))
        found = missed_slots(recurrence_of(schedule), schedule.timezone, since, self.clock())
        return [(utc_slot(instant), instant) for _, instant in found]

    async def handle_missed(self, schedule: Schedule, missed: list[tuple[str, datetime]]) -> None:
        """Post the newest due slot within the catch-up window; record the rest as missed."""
        if not missed:
            return
        now = self.clock()
        newest_slot, newest_instant = missed[-1]
        older = missed[:-1]
        if now - newest_instant <= self.catch_up_window:
            await self.deliver(schedule, newest_slot, late=now - newest_instant > LATE_AFTER)
        else:
            older = missed
        for slot, _ in older[-MAX_MISSED_RECORDED:]:
            await self.schedules.record(
                schedule.id, slot, "missed", error="too late to post: the bot was offline or busy"
            )
        if older:
            log.info("briefing %s: %d slot(s) missed", schedule.id, len(older))

    async def recover_interrupted(self, schedule_id: int | None = None) -> None:
        """Re-send posts claimed but never confirmed (a crash between claim and send).

        A re-send within the nonce window reuses the first attempt's nonce, so Discord
        returns the first post instead of posting again; beyond it, the channel is
        searched for the post's marker first.
        """
        now = self.clock()
        for delivery in await self.schedules.unfinished(schedule_id):
            try:
                schedule = await self.schedules.by_id(delivery.schedule_id)
                if schedule is None or not self.shards.owns(schedule.guild_id):
                    continue
                claimed_at = datetime.fromisoformat(delivery.claimed_at)
                wanted = schedule.state == "active" or delivery.manual
                if wanted and now - claimed_at <= self.catch_up_window:
                    await self.deliver(schedule, delivery.slot, late=delivery.late, claimed=True)
                else:
                    await self.schedules.finish(
                        schedule.id, delivery.slot, "failed", error="interrupted and not re-sent"
                    )
            except Exception:
                log.exception(
                    "briefing %s slot %s: recovery failed", delivery.schedule_id, delivery.slot
                )
