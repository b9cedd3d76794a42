"""Composing what a slot posts once, however many schedules post it.

`compose` holds the pure composing functions; this is the part that reads the store for
them. When thousands of briefings fall due together, each distinct briefing is composed
once per slot and content state: a 09:00 fan-out of 10,000 digests reads the store once.
The content's state is part of the key, so a load or a status change composes afresh; a
failure is never kept. A digest's chart is drawn into the briefing here (`bot.charts`), so
every schedule due at the slot, and a re-send with the same nonce, posts the same picture.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from bot.briefings import compose
from bot.briefings.compose import Briefing
from bot.briefings.schedules import Schedule, Schedules
from bot.briefings.sender import DeliveryFailure
from bot.charts.render import ChartRenderer
from bot.models import Pledge, Power, utc_slot_instant
from bot.pledges.cards import draw_charts
from bot.store import Store

COMPOSED_KEPT = 256
CONTENT_STATE_SECONDS = 1.0


def is_scheduled(slot: str) -> bool:
    """Whether `slot` is a scheduled slot's UTC key (not a manual post's key)."""
    try:
        utc_slot_instant(slot)
    except ValueError:
        return False
    return True


class Composer:
    """The briefings composed lately, by what they were composed from."""

    def __init__(
        self,
        store: Store,
        schedules: Schedules,
        charts: ChartRenderer | None = None,
        pledges: Callable[[], Awaitable[list[Pledge]]] | None = None,
    ) -> None:
        self.store = store
        self.schedules = schedules
        # Every pledge as the store has it now; the bot passes `Services.current_pledges`,
        # which has them in memory.
        self._pledges = pledges
        # A digest's chart is drawn into the briefing composed once per slot and state.
        self.charts = charts or ChartRenderer()
        self._composed: dict[tuple[object, ...], asyncio.Future[Briefing | None]] = {}
        self._content_state: tuple[object, ...] = ()
        self._content_state_at = -math.inf
        self._chart_drawn_for: tuple[object, ...] | None = None

    async def compose(self, schedule: Schedule, slot: str, now: datetime) -> Briefing | None:
        """What a slot posts. Composed once per slot and content state, however many
        schedules share it; a manual post (dated `now`) is composed afresh."""
        kind, _, target = schedule.content.partition(":")
        scheduled = is_scheduled(slot)
        when = utc_slot_instant(slot) if scheduled else now
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

    async def draw_digest_chart(self) -> None:
        """Draw the digest's chart for the content as it is now, once per content state.

        Drawn at the slot instead, it held every post of the slot for a child process's
        start (0.1-0.2 s of CPU), which also slowed members' answers in the first second.
        The picture is kept by its spec (`ChartRenderer`), so the slot's digest finds it.
        """
        state = await self._state()
        if state == self._chart_drawn_for:
            return
        chart = compose.digest_chart(await self._all_pledges(), await self.store.statements())
        if chart is not None:
            await self.charts.draw(chart)
        self._chart_drawn_for = state

    async def _state(self) -> tuple[object, ...]:
        """The content's state (loads and status changes by any process), read at most
        once a second."""
        now = time.monotonic()
        if now - self._content_state_at >= CONTENT_STATE_SECONDS:
            self._content_state = await self.store.content_signature()
            self._content_state_at = now
        return self._content_state

    async def _all_pledges(self) -> list[Pledge]:
        return await (self._pledges or self.store.pledges)()

    async def _compose(
        self, kind: str, target: str, schedule: Schedule, when: datetime, since: str | None
    ) -> Briefing | None:
        store = self.store
        statements = {s.slug: s for s in await store.statements()}
        if kind == "digest":
            digest = compose.digest(
                await self._all_pledges(), list(statements.values()), when, schedule.role_id
            )
            return replace(digest, cards=tuple(await draw_charts(digest.cards, self.charts.draw)))
        if kind == "spotlight":
            records: Sequence[Pledge | Power] = [*await self._all_pledges(), *await store.powers()]
            return compose.spotlight(records, statements, schedule.cursor, when, schedule.role_id)
        if kind == "changes":
            # Bookmarked by what was composed, not by when a send finished: a change made
            # while this post waited or retried is in the next one.
            if since is None:
                changed = await store.status_history(after_id=schedule.cursor)
            else:
                changed = await store.status_history(since=since)
            titles = {p.slug: p.title for p in await self._all_pledges()}
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
