"""`/metrics` and `/healthz`, read over real HTTP on 127.0.0.1 while the bot runs against
the emulator: before and after a gateway drop, with the database refusing writes, and
with the gateway gone. The tests given `store_location` run once per backend (SQLite,
PostgreSQL).
"""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.briefings.engine import BriefingEngine
from bot.client.app import PledgeBot
from bot.client.runner import make_bot
from bot.errors import OperatorError
from tests.e2e import World, running_bot, with_config, world
from tests.engine_rig import write_lock_held_elsewhere
from tests.test_robustness_support import wait_for

pytestmark = pytest.mark.e2e

SLOT = "2099-01-01T09:00Z"
RATE = 10.0


def engine_of(bot: PledgeBot) -> BriefingEngine:
    assert bot.engine is not None
    return bot.engine


@asynccontextmanager
async def monitored(
    tmp_path: Path, store_location: Path | str
) -> AsyncIterator[tuple[World, PledgeBot, str]]:
    """The bot with metrics on a free port, its store at `store_location` (a SQLite file,
    or a PostgreSQL DSN); yields its base URL."""
    database = (
        {"database_url": store_location}
        if isinstance(store_location, str)
        else {"database_path": store_location}
    )
    async with world(tmp_path, heartbeat_interval_ms=200) as w:
        config = with_config(w, metrics_listen=("127.0.0.1", 0), global_rate_limit=RATE, **database)
        async with running_bot(w, config) as bot:
            assert bot.monitoring is not None
            yield w, bot, f"http://127.0.0.1:{bot.monitoring.port}"


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, content_type, text = await get(base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    return samples(text)


def one(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def create(bot: PledgeBot, w: World, content: str = "digest", channel=None) -> int:  # type: ignore[no-untyped-def]
    schedule = await engine_of(bot).schedules.create(
        guild_id=w.guild.id,
        created_by=w.moderator.id,
        limit=25,
        fields={"channel_id": (channel or w.briefings).id, "timezone": "UTC"}
        | {"time_of_day": "09:00", "content": content},
    )
    return schedule.id


async def deliver(bot: PledgeBot, schedule_id: int, slot: str = SLOT) -> str:
    engine = engine_of(bot)
    schedule = await engine.schedules.by_id(schedule_id)
    assert schedule is not None
    return await engine.deliver(schedule, slot, late=False)


async def test_metrics_and_health_over_http_before_and_after_a_gateway_drop(
    tmp_path: Path, store_location: Path | str
) -> None:
    async with monitored(tmp_path, store_location) as (w, bot, base):
        await wait_for(lambda: math.isfinite(bot.latency), 10, "a heartbeat acknowledged")
        assert await get(base + "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")

        # commands: answered, and refused (a member may not list briefings)
        await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "europol-partnership"}, user=w.member
        )
        # (unchecked: Discord would hide the command; the bot still checks)
        await w.emu.run_command(w.guild, "briefing list", user=w.member, unchecked=True)
        # briefings: sent (one after a 429), failed (a 400), paused (a 403), skipped
        # (nothing changed), missed (recorded by the engine's store call)
        sent, failed, paused, skipped = [
            await create(bot, w, content) for content in ("digest", "digest", "digest", "changes")
        ]
        w.emu.fail_next(status=429, retry_after=0.05)
        assert await deliver(bot, sent) == "sent"
        w.emu.fail_next(status=400)
        assert await deliver(bot, failed) == "failed"
        w.emu.fail_next(status=403)
        assert await deliver(bot, paused) == "paused"
        assert await deliver(bot, skipped) == "skipped"
        await engine_of(bot).schedules.record(sent, "2098-12-31T09:00Z", "missed")
        # paced at RATE per second: four posts at once wait their turns, one after another
        # (at once, so that however slowly a loaded machine runs each, they still queue)
        paced = [await create(bot, w, "digest") for _ in range(4)]
        assert await asyncio.gather(*(deliver(bot, each) for each in paced)) == ["sent"] * 4

        before = await metrics(base)
        assert one(before, "pledgebot_guilds") == 2
        assert one(before, "pledgebot_gateway_connected") == 1
        assert 0 <= one(before, "pledgebot_gateway_latency_seconds") < 1
        assert (
            one(before, "pledgebot_commands_total", command="pledge show", outcome="answered") == 1
        )
        assert (
            one(before, "pledgebot_commands_total", command="briefing list", outcome="refused") == 1
        )
        outcomes = {
            o: one(before, "pledgebot_briefings_total", outcome=o)
            for o in ("sent", "failed", "paused", "skipped", "missed")
        }
        assert outcomes == {"sent": 5, "failed": 2, "paused": 1, "skipped": 1, "missed": 1}
        # (the 403 is recorded as a failed delivery, and pauses the briefing)
        assert one(before, "pledgebot_discord_rate_limited_total", scope="user") == 1
        assert one(before, "pledgebot_rate_budget_wait_seconds_total") > 0.2
        assert one(before, "pledgebot_database_write_wait_seconds_count") > 10
        assert one(before, "pledgebot_database_busy_seconds_total") > 0

        identifies = w.emu.identify_count
        await w.emu.drop_gateway(resumable=False)  # INVALID_SESSION: a new IDENTIFY
        await wait_for(
            lambda: w.emu.identify_count > identifies and w.emu.connected.is_set(),
            15,
            "a new IDENTIFY",
        )
        health: list[tuple[int, str, str]] = []

        async def healthy() -> bool:
            health.append(await get(base + "/healthz"))
            return health[-1][0] == 200

        for _ in range(100):
            if await healthy():
                break
            await asyncio.sleep(0.1)
        assert health[-1][0] == 200, health
        after = await metrics(base)
        assert one(after, "pledgebot_gateway_connected") == 1
        assert one(after, "pledgebot_guilds") == 2
        assert one(after, "pledgebot_briefings_total", outcome="sent") == 5  # nothing twice
        await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "europol-partnership"}, user=w.member
        )
        again = await metrics(base)
        assert (
            one(again, "pledgebot_commands_total", command="pledge show", outcome="answered") == 2
        )


async def test_health_is_503_with_the_reason(
    tmp_path: Path, store_location: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with monitored(tmp_path, store_location) as (w, bot, base):
        assert (await get(base + "/healthz"))[0] == 200
        assert bot.services is not None
        store = bot.services.store
        if store.path is not None:
            writer = store.db.writer  # type: ignore[attr-defined]  # SQLite's own connection
            await writer.execute("PRAGMA query_only = ON")  # every write is refused
            status, _, text = await get(base + "/healthz")
            assert status == 503
            assert text == "database not writable: attempt to write a readonly database\n"
            await writer.execute("PRAGMA query_only = OFF")
        else:
            async with write_lock_held_elsewhere(store, monkeypatch):  # past a 50 ms timeout
                status, _, text = await get(base + "/healthz")
            assert status == 503
            assert text == "database not writable: canceling statement due to lock timeout\n"
        assert (await get(base + "/healthz"))[0] == 200

        await w.emu.stop()  # Discord is gone: the gateway cannot reconnect
        await wait_for(lambda: bot.gateway.problem() is not None, 10, "the disconnect")
        status, _, text = await get(base + "/healthz")
        assert status == 503
        assert text.startswith("gateway disconnected for "), text
        found = await metrics(base)
        assert one(found, "pledgebot_gateway_connected") == 0


async def test_metrics_answer_while_outcomes_cannot_be_read_and_count_them_later(
    tmp_path: Path, store_location: Path | str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17 item 7: a store error while reading outcomes is a warning, not a 500, and
    what that look missed is counted by the next one. The error is real: a change logged
    with a `detail` that is not JSON, which neither database's JSON functions will read."""
    async with monitored(tmp_path, store_location) as (w, bot, base):
        assert bot.services is not None
        store = bot.services.store
        schedule_id = await create(bot, w)
        assert await deliver(bot, schedule_id) == "sent"
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO schedule_changes(schedule_id, changed_by, changed_at, action, "
                "detail) VALUES (?, 0, '2099-01-01T00:00Z', 'broken', 'not json')",
                (schedule_id,),
            )
        unread = await metrics(base)  # a 200: `metrics` checks the status
        assert one(unread, "pledgebot_briefings_total", outcome="sent") == 0
        assert "metrics: could not read briefing outcomes" in caplog.text

        async with store.transaction() as tx:
            await tx.execute("UPDATE schedule_changes SET detail = '{}' WHERE action = 'broken'")
        read = await metrics(base)
        assert one(read, "pledgebot_briefings_total", outcome="sent") == 1


async def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    async with world(tmp_path) as w, running_bot(w) as bot:
        assert w.config.metrics_listen is None
        assert bot.monitoring is None


async def test_a_metrics_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with world(tmp_path) as w:
            bot = make_bot(with_config(w, metrics_listen=("127.0.0.1", port)))
            async with bot:
                with pytest.raises(OperatorError) as raised:
                    await bot.login(w.emu.token)
                await bot.close()
    assert str(raised.value) == (
        f"cannot serve metrics on 127.0.0.1:{port} ([metrics] listen): Address already in use"
    )


def test_a_sqlite_bot_without_metrics_loads_neither_metrics_nor_postgresql() -> None:
    """prometheus-client and aiohttp's server cost about 4 MiB, asyncpg about 4 more: only a
    bot that serves /metrics, or runs on PostgreSQL, may import them (a separate
    interpreter, so no other test has loaded them)."""
    script = (
        "import sys, asyncio\n"
        "from bot.client.runner import make_bot\n"
        "from bot.config import Config\n"
        "async def main():\n"
        "    bot = make_bot(Config())\n"
        "    assert bot.metrics is None\n"
        "    await bot.close()\n"
        "asyncio.run(main())\n"
        "heavy = ('prometheus_client', 'aiohttp.web', 'asyncpg')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
