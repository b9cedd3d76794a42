"""Discord's global rate limit, shared by every process that uses the bot's token.

Discord allows 50 requests a second per bot token, whichever process sends them, so the
budget lives in the store: each request reserves the next free turn in one small write
transaction, and waits for it. Interaction responses are exempt, as on Discord.

Turns are times on one clock. On PostgreSQL that is the server's, read inside the
reservation: hosts' clocks differ, and turns booked on several would be spaced on none
(one host 2 s behind waited 2 s on every request). A SQLite file serves one host, whose
clock it is. A turn booked further ahead than `max_ahead` is no queue but a broken clock
(stepped back, or an old booking by one far ahead): it is repaired to now, not waited for.
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
from bot.storage import Database

log = logging.getLogger(__name__)

# Posts spaced exactly at the limit arrive a little bunched by the network and trip it.
HEADROOM = 0.93
# A request waits at most this many turns (or 1 s, if longer): a turn booked further
# ahead is a broken clock, not a queue (each process queues its posts before booking).
MAX_AHEAD_TURNS = 4
# The booked turn and "now" by the database's own clock: the server's on PostgreSQL; on
# SQLite, NULL (the budget's local clock).
_BOOKED_AND_NOW = {
    "sqlite": "SELECT (SELECT next_at FROM rate_budget WHERE name = ?), NULL",
    "postgresql": "SELECT (SELECT next_at FROM rate_budget WHERE name = ?), "
    "extract(epoch FROM clock_timestamp())::float8",
}
# Interaction callbacks and followups (webhook-token routes) are not bound by the limit.
EXEMPT = re.compile(r"/interactions/|/webhooks/")

# Set by `prepaid()`: [True] until the first request of a paid send has used its turn.
_prepaid: ContextVar[list[bool] | None] = ContextVar("prepaid", default=None)


class RateBudget:
    def __init__(
        self,
        database: Database,
        per_second: float,
        *,
        name: str = "global",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.database = database
        self.interval = 1.0 / (per_second * HEADROOM)
        self.max_ahead = max(1.0, MAX_AHEAD_TURNS * self.interval)
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self._local_next = 0.0
        self._queue = asyncio.Lock()

    async def _reserve(self) -> float:
        """Take the next free turn (a time on the database's clock, shared across
        processes); `clock` is used only where the database has none (SQLite)."""
        async with self.database.transaction() as tx:
            ((booked, server_now),) = await tx.rows(
                _BOOKED_AND_NOW[self.database.dialect], (self.name,)
            )
            now = self.clock() if server_now is None else server_now
            turn = now if booked is None else max(now, booked)
            if turn - now > self.max_ahead:
                log.warning(
                    "rate budget %r: the next turn was booked %.0f s ahead (a clock stepped "
                    "back?); booking from now instead",
                    self.name,
                    turn - now,
                )
                turn = now
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
