"""The briefing engine: the schedules table is the only truth; APScheduler only reminds.

`BriefingEngine` puts the pieces together: the planner (`planner.Planner`: when to look
at each schedule, and the reconcile loop), the firing and delivering here, and the
composer (`composer.Composer`: each briefing composed once per slot). When a planned look
fires, the engine re-reads the schedule, derives from its current rule which slots are
due (as UTC instants, after the last one dealt with) and posts the newest within the
catch-up window. A stale look (the schedule was edited, paused or cancelled elsewhere)
finds nothing due and replans. A slot is claimed in the store before it is sent, and sent
with a nonce derived from the claim; a re-send after Discord may have forgotten that nonce
first looks for the post in the channel. So restarts, retries and several processes never
post a slot twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.briefings.compose import Briefing
from bot.briefings.composer import Composer
from bot.briefings.planner import (
    ALL_SHARDS,
    FIRE_RETRY_DELAYS,
    UNREADABLE,
    Planner,
    Shards,
    due_slots,
)
from bot.briefings.schedules import Schedule, Schedules
from bot.briefings.sender import DeliveryFailure, Sender
from bot.charts.render import ChartRenderer
from bot.errors import store_errors
from bot.models import Pledge
from bot.rate_budget import RateBudget
from bot.store import Store

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0)
# A firing within a minute of its slot is on time, whatever the catch-up window says; one
# fired later (after downtime) is recorded late. A post that then waits its turn in the
# rate budget was still fired on time.
LATE_AFTER = timedelta(minutes=1)
MAX_MISSED_RECORDED = 100
# Discord drops a repeated nonce for "a few minutes"; trust it for less than that, and
# look in the channel before re-sending anything older.
NONCE_TRUST = timedelta(seconds=60)
# How often the engine looks whether content or a status changed, to draw the digest's
# chart ahead of the slots (one signature query).
CHART_AHEAD_SECONDS = 10.0
# Schedules reading their rows at once, and schedules claiming and composing at once: each
# bounds how long a member's query waits behind the engine's when thousands fall due
# (four store operations in all, PostgreSQL's pool size).
PREPARING_AT_ONCE = 2
# Posts claimed, composed and waiting for their turn in the rate budget at once. With
# 10,000 due together every one was composed within seconds and then held its message
# for up to 200 s (at 50/s): 114 -> 215 MiB. Sixteen keep the budget's queue full. A post
# that Discord makes wait (retrying after a 5xx) keeps its place meanwhile.
SENDING_AT_ONCE = 16


def utc_clock() -> datetime:
    return datetime.now(UTC)


def nonce_for(schedule_id: int, slot: str) -> str:
    """Discord drops a repeated nonce (enforce_nonce) for a few minutes."""
    return hashlib.sha256(f"briefing:{schedule_id}:{slot}".encode()).hexdigest()[:25]


def marker_for(schedule_id: int, slot: str) -> str:
    """Printed in the post's footer: how a later re-send finds out the post went through."""
    return f"Briefing #{schedule_id} · {slot}"


class BriefingEngine(Planner):
    """Plans (see `Planner`), fires and delivers the briefings of the servers it owns."""

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
        charts: ChartRenderer | None = None,
        pledges: Callable[[], Awaitable[list[Pledge]]] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.schedules = Schedules(store)
        self.sender = sender
        # 0 means "no catch-up after downtime", never "no post": a firing always arrives
        # just after its slot.
        self.catch_up_window = max(catch_up, LATE_AFTER)
        self.shards = shards
        self.clock = clock
        self.sleep = sleep
        self.nonce_trust = nonce_trust
        self.budget = RateBudget(store.db, rate_per_second, sleep=sleep)
        if scheduler is not None:
            self._scheduler = scheduler
        self._fire_failures: dict[int, int] = {}
        # Two gates, not one: with a single one, a schedule that has read its row queues
        # again behind every other schedule's read before it may claim, so with 1,000 due
        # at once the first post waited for 1,000 reads. Two of each keep the engine to
        # four store operations at once, as one gate of four did.
        self._reading = asyncio.Semaphore(PREPARING_AT_ONCE)
        self._preparing = asyncio.Semaphore(PREPARING_AT_ONCE)
        self._sending = asyncio.Semaphore(SENDING_AT_ONCE)
        # The members' answers' renderer when given, so a state's chart is drawn once.
        self._composer = Composer(store, self.schedules, charts, pledges)
        self._chart_checked_at = -math.inf

    # -- lifecycle (`plan_all` and `stop` are the planner's) -------------------------

    async def start(self) -> None:
        """Both halves of start-up, for callers that have the guild cache already."""
        await self.plan_all()
        await self.catch_up()

    async def catch_up(self) -> None:
        """Once the guild cache is filled: finish interrupted posts, then post or record
        what was missed while offline. Each schedule on its own: one failing never stops
        the others."""
        await self.recover_interrupted()
        missed, self._missed = self._missed, []
        for schedule_id in missed:
            await self.fire(schedule_id)

    async def between_slots(self) -> None:
        """Draw the digest's chart ahead of the slots when this process plans briefings."""
        now = time.monotonic()
        if len(self._plans) and now - self._chart_checked_at >= CHART_AHEAD_SECONDS:
            self._chart_checked_at = now
            await self._composer.draw_digest_chart()

    # -- firing -------------------------------------------------------------------

    async def fire(self, schedule_id: int) -> None:
        """A planned look: deal with what is due now by the store's current rule.

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
        if not due:
            log.debug("briefing %s: nothing due (already dealt with)", schedule_id)
        await self.handle_missed(schedule, due)
        await self.plan(schedule_id)

    async def send_now(self, schedule: Schedule) -> str:
        """A moderator's manual post, keyed `manual:{time}`: it never blocks a scheduled slot."""
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
        async with self._sending:
            return await self._deliver(schedule, slot, late=late, manual=manual, claimed=claimed)

    async def _deliver(
        self, schedule: Schedule, slot: str, *, late: bool, manual: bool, claimed: bool
    ) -> str:
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
        """What a slot posts, composed once per slot and content state (`Composer`)."""
        return await self._composer.compose(schedule, slot, self.clock())

    # -- downtime -----------------------------------------------------------------

    def missed_since(self, schedule: Schedule, last: str | None) -> list[tuple[str, datetime]]:
        """(UTC key, instant) of the due slots (instant <= now) after `last`, the latest
        dealt with, and after the rule began."""
        return due_slots(schedule, last, self.clock())

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
