"""The briefing engine: schedules table -> APScheduler jobs -> exactly-once delivery.

The schedules table is the only source of truth. APScheduler holds one in-memory job
per active schedule (`briefing:{id}`), a DateTrigger for its next slot, re-planned after
every firing and on every change. A firing claims (schedule, slot) in the store before
sending and sends with a nonce derived from that claim, so a restart, a retry or a second
process never posts a slot twice.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bot import briefings
from bot.briefings import Briefing
from bot.models import Pledge, Power
from bot.recurrence import (
    Recurrence,
    build_recurrence,
    missed_slots,
    next_slots,
    slot_from_key,
    slot_instant,
)
from bot.schedules import Schedule, Schedules
from bot.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0)
LATE_AFTER = timedelta(minutes=1)
MAX_MISSED_RECORDED = 100


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
    """How the engine reaches Discord; `bot.delivery` implements it, tests fake it."""

    def channel_problem(self, guild_id: int, channel_id: int) -> str | None: ...

    async def post(
        self, channel_id: int, briefing: Briefing, *, nonce: str, role_id: int | None
    ) -> int: ...

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None: ...


@dataclass(frozen=True)
class Shards:
    """Which servers this process schedules: Discord's `(guild_id >> 22) % count`."""

    count: int = 1
    ids: frozenset[int] = frozenset({0})

    def owns(self, guild_id: int) -> bool:
        return (guild_id >> 22) % self.count in self.ids


ALL_SHARDS = Shards()


def recurrence_of(schedule: Schedule) -> Recurrence:
    return _parsed_rule(schedule.time_of_day, schedule.days, schedule.cron, schedule.run_date)


@functools.lru_cache(maxsize=4096)
def _parsed_rule(
    time: str | None, days: str | None, cron: str | None, date: str | None
) -> Recurrence:
    """Many schedules share a rule ("09:00 weekdays"): parse each text once."""
    return build_recurrence(time=time, days=days, cron=cron, date=date)


def nonce_for(schedule_id: int, slot: str) -> str:
    """Discord drops a repeated nonce (enforce_nonce), so a re-send cannot post twice."""
    return hashlib.sha256(f"briefing:{schedule_id}:{slot}".encode()).hexdigest()[:25]


class Pacer:
    """Spaces posts to stay under Discord's global request rate instead of bursting.

    It paces at 93% of the limit: posts sent exactly at the limit arrive a little
    bunched by the network and trip it, and each 429 costs a retry.
    """

    HEADROOM = 0.93

    def __init__(self, per_second: float, sleep: Sleep = asyncio.sleep) -> None:
        self.interval = 1.0 / (per_second * self.HEADROOM)
        self._next = 0.0
        self._sleep = sleep

    async def wait(self) -> None:
        now = time.monotonic()
        turn = max(now, self._next)
        self._next = turn + self.interval
        if turn > now:
            await self._sleep(turn - now)


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
    ) -> None:
        self.store = store
        self.schedules = Schedules(store)
        self.sender = sender
        self.catch_up_window = catch_up
        self._missed: list[tuple[Schedule, list[tuple[str, datetime]]]] = []
        self.shards = shards
        self.clock = clock
        self.sleep = sleep
        self.pacer = Pacer(rate_per_second, sleep)
        self.scheduler = scheduler or AsyncIOScheduler(timezone=UTC)

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Both halves of start-up, for callers that have the guild cache already."""
        await self.plan_all()
        await self.catch_up()

    async def plan_all(self) -> None:
        """Plan every schedule's next slot and find what was missed; needs no Discord.

        Runs before the gateway connects. Reads every schedule and its last slot in two
        queries, so start-up stays fast with thousands of schedules.
        """
        last_slots = await self.schedules.last_slots()
        self._missed = []
        for count, schedule in enumerate(await self.schedules.active(), 1):
            if not self.shards.owns(schedule.guild_id):
                continue
            last = last_slots.get(schedule.id)
            missed = self.missed_since(schedule, last)
            if missed:
                self._missed.append((schedule, missed))
            self._plan_next(schedule, last)
            if count % 256 == 0:
                await asyncio.sleep(0)  # let the connection make progress meanwhile
        if not self.scheduler.running:
            self.scheduler.start()

    async def catch_up(self) -> None:
        """Once the guild cache is filled: finish interrupted posts, then post or record
        what was missed while offline."""
        await self.recover_interrupted()
        missed, self._missed = self._missed, []
        for schedule, slots in missed:
            await self.handle_missed(schedule, slots)

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    # -- planning -----------------------------------------------------------------

    def job_id(self, schedule_id: int) -> str:
        return f"briefing:{schedule_id}"

    async def plan(self, schedule_id: int) -> tuple[str, datetime] | None:
        """(Re)plan a schedule's next slot from the table; unplan it if not active."""
        schedule = await self.schedules.by_id(schedule_id)
        if schedule is None or schedule.state != "active":
            self.unplan(schedule_id)
            return None
        return self._plan_next(schedule, await self.schedules.last_slot(schedule_id))

    def _plan_next(self, schedule: Schedule, last: str | None) -> tuple[str, datetime] | None:
        upcoming = self._upcoming(schedule, last, 1)
        if not upcoming:
            self.unplan(schedule.id)
            return None
        slot, instant = upcoming[0]
        self.scheduler.add_job(
            self.fire,
            DateTrigger(run_date=instant),
            args=[schedule.id, slot],
            id=self.job_id(schedule.id),
            replace_existing=True,
            # Always run, however late: `fire` itself decides between late and missed, so
            # a busy loop can never silently drop a schedule's job chain.
            misfire_grace_time=None,
            coalesce=True,
        )
        return slot, instant

    def unplan(self, schedule_id: int) -> None:
        if self.scheduler.get_job(self.job_id(schedule_id)) is not None:
            self.scheduler.remove_job(self.job_id(schedule_id))

    async def upcoming(self, schedule: Schedule, count: int) -> list[tuple[str, datetime]]:
        """The next slots not yet dealt with (claimed, sent, missed or skipped)."""
        return self._upcoming(schedule, await self.schedules.last_slot(schedule.id), count)

    def _upcoming(
        self, schedule: Schedule, last: str | None, count: int
    ) -> list[tuple[str, datetime]]:
        found = next_slots(recurrence_of(schedule), schedule.timezone, self.clock(), count + 1)
        return [(k, t) for k, t in found if last is None or k > last][:count]

    # -- firing -------------------------------------------------------------------

    async def fire(self, schedule_id: int, slot: str) -> None:
        """APScheduler's job: post this slot, then plan the next one whatever happened."""
        try:
            schedule = await self.schedules.by_id(schedule_id)
            if schedule is None or schedule.state != "active":
                return
            delay = self.clock() - slot_instant(slot_from_key(slot), schedule.timezone)
            if delay > self.catch_up_window:
                await self.schedules.record(schedule_id, slot, "missed", error="fired too late")
            else:
                await self.deliver(schedule, slot, late=delay > LATE_AFTER)
        except Exception:
            log.exception("briefing %s slot %s failed unexpectedly", schedule_id, slot)
        finally:
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
        if not claimed and not await self.schedules.claim(
            schedule.id, slot, late=late, manual=manual
        ):
            log.debug("briefing %s slot %s: already claimed", schedule.id, slot)
            return "already-claimed"
        problem = self.sender.channel_problem(schedule.guild_id, schedule.channel_id)
        if problem:
            await self._pause(schedule, slot, problem)
            return "paused"
        try:
            briefing = await self.compose(schedule, slot)
        except DeliveryFailure as failure:
            await self._pause(schedule, slot, failure.reason)
            return "paused"
        if briefing is None:
            await self.schedules.finish(schedule.id, slot, "skipped", error=None)
            return "skipped"
        nonce = nonce_for(schedule.id, slot)
        for delay in (*RETRY_DELAYS, None):
            await self.pacer.wait()
            try:
                message_id = await self.sender.post(
                    schedule.channel_id, briefing, nonce=nonce, role_id=schedule.role_id
                )
            except DeliveryFailure as failure:
                if failure.kind == "pause":
                    await self._pause(schedule, slot, failure.reason)
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
                continue
            await self.schedules.finish(schedule.id, slot, "sent", message_id=message_id)
            if briefing.next_cursor is not None:
                await self.schedules.set_cursor(schedule.id, briefing.next_cursor)
            if schedule.run_date and not manual:
                await self.schedules.update(
                    schedule.guild_id, schedule.id, {"state": "finished"}, by=0, action="finished"
                )
            return "sent"
        raise AssertionError("unreachable")

    async def _pause(self, schedule: Schedule, slot: str, reason: str) -> None:
        """Stop posting into a channel that refuses us; keep the schedule, tell moderators."""
        await self.schedules.finish(schedule.id, slot, "failed", error=reason)
        current = await self.schedules.by_id(schedule.id)
        if current is None or current.state != "active":
            return
        await self.schedules.update(
            schedule.guild_id,
            schedule.id,
            {"state": "paused", "pause_reason": reason},
            by=0,
            action="paused by pledgebot",
        )
        self.unplan(schedule.id)
        log.warning("briefing %s paused: %s", schedule.id, reason)
        text = (
            f"⏸️ Briefing #{schedule.id} for <#{schedule.channel_id}> is paused: {reason}. "
            f"Fix the channel, then use `/briefing resume id:{schedule.id}`."
        )
        try:
            await self.pacer.wait()  # notices share the global limit with posts
            await self.sender.notify(schedule.guild_id, text, avoid_channel_id=schedule.channel_id)
        except DeliveryFailure as failure:
            log.warning("could not notify moderators of guild %s: %s", schedule.guild_id, failure)

    # -- composing ----------------------------------------------------------------

    async def compose(self, schedule: Schedule, slot: str) -> Briefing | None:
        store = self.store
        when = self.clock()
        statements = {s.slug: s for s in await store.statements()}
        kind, _, target = schedule.content.partition(":")
        if kind == "digest":
            return briefings.digest(
                await store.pledges(), list(statements.values()), when, schedule.role_id
            )
        if kind == "spotlight":
            records: Sequence[Pledge | Power] = [*await store.pledges(), *await store.powers()]
            return briefings.spotlight(
                records, statements, schedule.spotlight_cursor, when, schedule.role_id
            )
        if kind == "changes":
            previous = await self.schedules.last_delivery(schedule.id, sent_only=True)
            since = previous.finished_at if previous else schedule.created_at
            changed = await store.status_history(since=since)
            titles = {p.slug: p.title for p in await store.pledges()}
            return briefings.changes(changed, titles, since, when, schedule.role_id)
        if kind == "pledge":
            pledge = await store.pledge(target)
            if pledge is None:
                raise DeliveryFailure(f"pledge {target!r} is no longer loaded", kind="pause")
            return briefings.single(pledge, statements, when, schedule.role_id)
        if kind == "power":
            power = await store.power(target)
            if power is None:
                raise DeliveryFailure(f"power {target!r} is no longer loaded", kind="pause")
            related = await store.pledges(slugs=power.pledges) if power.pledges else []
            return briefings.single(power, statements, when, schedule.role_id, related)
        raise DeliveryFailure(f"unknown briefing content {schedule.content!r}", kind="pause")

    # -- downtime -----------------------------------------------------------------

    def missed_since(self, schedule: Schedule, last: str | None) -> list[tuple[str, datetime]]:
        """Slots that fell due while nothing dealt with them (`last` is the latest that was)."""
        since = datetime.fromisoformat(schedule.active_since)
        if last is not None:
            since = max(since, slot_instant(slot_from_key(last), schedule.timezone))
        return missed_slots(recurrence_of(schedule), schedule.timezone, since, self.clock())

    async def catch_up_missed(self, schedule: Schedule, last: str | None) -> bool:
        """`handle_missed` for one schedule; returns whether anything was missed."""
        missed = self.missed_since(schedule, last)
        await self.handle_missed(schedule, missed)
        return bool(missed)

    async def handle_missed(self, schedule: Schedule, missed: list[tuple[str, datetime]]) -> None:
        """Post the newest slot missed within the catch-up window, late; record the rest."""
        if not missed:
            return
        now = self.clock()
        newest_slot, newest_instant = missed[-1]
        older = missed[:-1]
        if now - newest_instant <= self.catch_up_window:
            await self.deliver(schedule, newest_slot, late=True)
        else:
            older = missed
        for slot, _ in older[-MAX_MISSED_RECORDED:]:
            await self.schedules.record(schedule.id, slot, "missed", error="bot was offline")
        if older:
            log.info("briefing %s: %d slot(s) missed while offline", schedule.id, len(older))

    async def recover_interrupted(self) -> None:
        """Re-send posts claimed but never confirmed (a crash between claim and send).

        The nonce is the same as the first attempt's, so if that one reached Discord
        the re-send returns the same message instead of posting again.
        """
        now = self.clock()
        for delivery in await self.schedules.unfinished():
            schedule = await self.schedules.by_id(delivery.schedule_id)
            if schedule is None or not self.shards.owns(schedule.guild_id):
                continue
            claimed_at = datetime.fromisoformat(delivery.claimed_at)
            if schedule.state == "active" and now - claimed_at <= self.catch_up_window:
                await self.deliver(schedule, delivery.slot, late=delivery.late, claimed=True)
            else:
                await self.schedules.finish(
                    schedule.id, delivery.slot, "failed", error="interrupted and not re-sent"
                )
