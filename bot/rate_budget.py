"""Discord's global rate limit, shared by every process that uses the bot's token.

Discord allows 50 requests a second per bot token, whichever process sends them, so the
budget lives in the store: each request reserves the next free turn in one small write
transaction, and waits for it. Interaction responses are exempt, as on Discord.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from bot.errors import store_errors
from bot.store import Store

log = logging.getLogger(__name__)

# Posts spaced exactly at the limit arrive a little bunched by the network and trip it.
HEADROOM = 0.93
# Interaction callbacks and followups (webhook-token routes) are not bound by the limit.
EXEMPT = re.compile(r"/interactions/|/webhooks/")

# Set by `prepaid()`: [True] until the first request of a paid send has used its turn.
_prepaid: ContextVar[list[bool] | None] = ContextVar("prepaid", default=None)


class RateBudget:
    def __init__(
        self,
        store: Store,
        per_second: float,
        *,
        name: str = "global",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.interval = 1.0 / (per_second * HEADROOM)
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self._local_next = 0.0
        self._queue = asyncio.Lock()

    async def _reserve(self) -> float:
        """Take the next free turn (a wall-clock time, shared across processes)."""
        async with self.store.transaction() as tx:
            booked = await tx.scalar("SELECT next_at FROM rate_budget WHERE name = ?", (self.name,))
            now = self.clock()
            turn = max(now, now if booked is None else booked)
            await tx.execute(
                "INSERT INTO rate_budget(name, next_at) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET next_at = excluded.next_at",
                (self.name, turn + self.interval),
            )
        return turn - now

    async def _turn(self) -> float:
        """Seconds until our turn; paced in this process alone while the store is
        unavailable (locked past its timeout, read-only), so Discord is never flooded and
        no request fails because of the database."""
        try:
            return await self._reserve()
        except store_errors() as error:
            log.warning("rate budget unavailable in the store (%s); pacing locally", error)
            now = time.monotonic()
            turn = max(now, self._local_next)
            self._local_next = turn + self.interval
            return turn - now

    async def wait(self) -> None:
        """Wait for a turn for background work (briefing posts).

        Posts queue here, in this process, and reserve a turn only when they are next, so
        the store never holds more than one reservation per process: a request that
        cannot wait (a gateway reconnect, a command's lookup) takes the next turn instead
        of queueing behind a fan-out of thousands.
        """
        async with self._queue:
            await self._wait_turn()

    async def _wait_turn(self) -> None:
        delay = await self._turn()
        if delay > 0:
            await self.sleep(delay)

    @asynccontextmanager
    async def prepaid(self) -> AsyncIterator[None]:
        """Requests made inside were paid for by a `wait()` just before: the first one is
        free; any further one (discord.py retrying on its own) is counted without waiting,
        so a retry is never held back past the nonce window."""
        token = _prepaid.set([True])
        try:
            yield
        finally:
            _prepaid.reset(token)

    async def on_request(self, method: str, path: str) -> None:
        """Called for every HTTP request the client makes (an aiohttp trace)."""
        if EXEMPT.search(path):
            return
        box = _prepaid.get()
        if box is None:
            await self._wait_turn()
        elif box[0]:
            box[0] = False
        else:
            await self._turn()
