"""Health and metrics for hosts: `/healthz` and `/metrics` over HTTP (off by default).

Served with aiohttp, which discord.py already brings, in the bot's own event loop; the
metrics are rendered by prometheus-client in the Prometheus text format. Each bot has its
own registry, so several bots in one process (the tests) never share counters.

Briefing outcomes are read from the store, not counted where they happen: the
`deliveries` table is the truth whichever path recorded a slot (a firing, a catch-up, a
recovery after a crash, another process's retry), and reading it keeps the engine free
of metrics code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.errors import OperatorError
from bot.rate_budget import RateBudget
from bot.storage import Transaction
from bot.store import Store

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

# A /healthz that finds no write done within this long reports the database as busy.
WRITE_PROBE_SECONDS = 2.0
HEALTH_PROBE_KEY = "health_probe"
BRIEFING_OUTCOMES = ("sent", "failed", "missed", "skipped", "paused")


class BotMetrics:
    """Every metric the bot exposes, in one registry of its own.

    Made only when metrics are served: prometheus-client and aiohttp's server are
    imported here, not at start-up, so a bot without metrics does not carry them.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.gateway_latency = Gauge(
            "pledgebot_gateway_latency_seconds",
            "Time between a gateway heartbeat and its acknowledgement (NaN when not connected)",
            registry=r,
        )
        self.gateway_connected = Gauge(
            "pledgebot_gateway_connected",
            "1 while every shard of this process is connected",
            registry=r,
        )
        self.guilds = Gauge("pledgebot_guilds", "Servers this process is in", registry=r)
        self.commands = Counter(
            "pledgebot_commands",
            "Slash commands by name: answered, refused (the user's error, explained "
            "privately) or failed (our error, an apology with an error id)",
            ["command", "outcome"],
            registry=r,
        )
        self.briefings = Counter(
            "pledgebot_briefings",
            "Briefing slots of this process's servers since it started, by outcome",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "pledgebot_discord_rate_limited",
            "429 Too Many Requests answers received from Discord, by X-RateLimit-Scope",
            ["scope"],
            registry=r,
        )
        self.rate_budget_wait = Counter(
            "pledgebot_rate_budget_wait_seconds",
            "Seconds requests waited for a turn in the global rate budget",
            registry=r,
        )
        self.database_wait = Histogram(
            "pledgebot_database_write_wait_seconds",
            "Time a write transaction waited for the write lock (this process's other "
            "writers, then other processes')",
            buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.database_busy = Counter(
            "pledgebot_database_busy_seconds",
            "Seconds this process held the database's write lock",
            registry=r,
        )
        for outcome in BRIEFING_OUTCOMES:  # every series exists from the start, at 0
            self.briefings.labels(outcome)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def command_finished(self, name: str, outcome: str) -> None:
        self.commands.labels(name, outcome).inc()

    def response_received(self, status: int, scope: str | None) -> None:
        if status == 429:
            self.rate_limited.labels(scope or "unknown").inc()

    def measure_rate_budget(self, budget: RateBudget) -> None:
        """Count every wait the budget asks for (all of them go through its `sleep`)."""
        sleep = budget.sleep

        async def counted_sleep(delay: float) -> None:
            self.rate_budget_wait.inc(max(delay, 0.0))
            await sleep(delay)

        budget.sleep = counted_sleep

    def measure_writes(self, store: Store) -> None:
        """Time the store's write transactions: the wait for the lock, and the hold."""
        transaction = store.transaction

        @contextlib.asynccontextmanager
        async def measured() -> AsyncIterator[Transaction]:
            asked = time.perf_counter()
            began: float | None = None
            try:
                async with transaction() as tx:
                    began = time.perf_counter()
                    self.database_wait.observe(began - asked)
                    yield tx
            finally:
                if began is not None:
                    self.database_busy.inc(time.perf_counter() - began)

        setattr(store, "transaction", measured)  # noqa: B010 (the instance's, not the class's)


class GatewayStatus:
    """Which of this process's gateway shards are connected, from discord.py's events."""

    def __init__(self, shard_ids: list[int]) -> None:
        self._down: dict[int, tuple[str, float]] = {
            shard: ("not connected yet", time.monotonic()) for shard in shard_ids
        }
        self._up: set[int] = set()

    def connected(self, shard: int) -> None:
        self._down.pop(shard, None)
        self._up.add(shard)

    def disconnected(self, shard: int, why: str = "disconnected") -> None:
        self._up.discard(shard)
        self._down.setdefault(shard, (why, time.monotonic()))

    def problem(self) -> str | None:
        """Why the gateway is not healthy, or None when every shard is connected."""
        if not self._down:
            return None
        shard, (why, since) = min(self._down.items(), key=lambda item: item[1][1])
        which = f"shard {shard}" if len(self._down) + len(self._up) > 1 else "gateway"
        return f"{which} {why} for {time.monotonic() - since:.0f} s"


class BriefingOutcomes:
    """Reads, from the store, the briefing outcomes recorded since the last look.

    Only this process's servers count (`owns`), so processes sharing one database can be
    summed. A slot still `claimed` is looked at again until it has an outcome.
    """

    def __init__(self, store: Store, owns: Callable[[int], bool]) -> None:
        self.store = store
        self.owns = owns
        self._after_delivery = 0
        self._after_change = 0
        self._pending: set[int] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Count from now: what happened before this process started is not its own."""
        (row,) = await self.store.rows(
            "SELECT (SELECT coalesce(max(id), 0) FROM deliveries), "
            "(SELECT coalesce(max(id), 0) FROM schedule_changes)"
        )
        self._after_delivery, self._after_change = int(row[0]), int(row[1])

    async def read(self) -> Tally[str]:
        """The outcomes since the last look. The bookmarks move only once both reads have
        succeeded: a failed look leaves them, and the next one counts the same rows."""
        async with self._lock:
            found: Tally[str] = Tally()
            pending = sorted(self._pending)
            again = f" OR d.id IN ({', '.join('?' * len(pending))})" if pending else ""
            deliveries = await self.store.rows(
                "SELECT d.id, d.state, s.guild_id FROM deliveries d "
                f"JOIN schedules s ON s.id = d.schedule_id WHERE d.id > ?{again} ORDER BY d.id",
                (self._after_delivery, *pending),
            )
            # Pauses the engine made (a channel refused us, a rule no longer reads);
            # a moderator's own pause is not a briefing outcome.
            changes = await self.store.rows(
                _ENGINE_PAUSES[self.store.db.dialect], (self._after_change,)
            )
            still_claimed: set[int] = set()
            for delivery_id, state, guild_id in deliveries:
                self._after_delivery = max(self._after_delivery, delivery_id)
                if not self.owns(guild_id):
                    continue
                if state == "claimed":
                    still_claimed.add(delivery_id)
                else:
                    found[state] += 1
            self._pending = still_claimed
            for change_id, guild_id in changes:
                self._after_change = max(self._after_change, change_id)
                if self.owns(guild_id):
                    found["paused"] += 1
            return found


# Pauses the engine logged after a change id, by dialect: `detail` is the change as JSON.
_ENGINE_PAUSES = {
    dialect: "SELECT c.id, s.guild_id FROM schedule_changes c "
    "JOIN schedules s ON s.id = c.schedule_id WHERE c.id > ? AND c.changed_by = 0 "
    f"AND {state} = 'paused' ORDER BY c.id"
    for dialect, state in (
        ("sqlite", "json_extract(c.detail, '$.state')"),
        ("postgresql", "c.detail::jsonb ->> 'state'"),
    )
}


class WriteProbe:
    """Is the database writable now? One small real write; one probe in flight at most."""

    def __init__(self, store: Store, timeout: float = WRITE_PROBE_SECONDS) -> None:
        self.store = store
        self.timeout = timeout
        self._probe: asyncio.Task[None] | None = None

    async def problem(self) -> str | None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._write())
        # asyncio.wait never cancels: a slow probe ends (or rolls back) on its own
        done, _ = await asyncio.wait({self._probe}, timeout=self.timeout)
        if not done:
            return f"database busy: no write finished within {self.timeout:.0f} s"
        error = self._probe.exception()
        return None if error is None else f"database not writable: {error}"

    async def _write(self) -> None:
        await self.store.set_meta(HEALTH_PROBE_KEY, datetime.now(UTC).isoformat())

    async def close(self) -> None:
        if self._probe is not None:
            await asyncio.gather(self._probe, return_exceptions=True)


class MonitoringServer:
    """`/metrics` and `/healthz` on one address, served from the bot's event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], Awaitable[bytes]],
        health: Callable[[], Awaitable[str | None]],
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self._metrics = metrics
        self._health = health
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except OSError as error:
            await runner.cleanup()
            raise OperatorError(
                f"cannot serve metrics on {self.host}:{self.requested_port} "
                f"([metrics] listen): {os.strerror(error.errno) if error.errno else error}"
            ) from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("serving /metrics and /healthz on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_metrics(self, _: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await self._metrics()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _serve_health(self, _: web.Request) -> web.Response:
        from aiohttp import web

        problem = await self._health()
        if problem is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=problem + "\n")


def latency_or_nan(latency: float) -> float:
    """discord.py reports inf before the first heartbeat; both mean "not measured"."""
    return latency if math.isfinite(latency) else math.nan
