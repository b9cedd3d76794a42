"""kill -9 the bot process in the middle of a fan-out, restart it, repeat: every slot once.

The bot runs as a real `python -m bot run` subprocess against an emulator in this test's
event loop. Forty servers each have a briefing due at the same whole UTC minute; posts
are paced at 5 per second, so the fan-out takes about eight seconds and the process is
killed (SIGKILL, no clean-up at all) after some posts arrived, restarted, killed again
during its catch-up, and restarted once more. This waits for a real minute boundary, so
it is the only test of its kind (about 30 to 90 s).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.briefings.schedules import Schedules
from bot.local import ChannelState, Emulator
from bot.store import Store
from tests.test_robustness_support import BotProcess, integrity, rows, wait_for, write_config

pytestmark = pytest.mark.e2e

GUILDS = 40
RATE = 5  # posts per second: the fan-out of 40 takes ~8 s
STARTUP_MARGIN = timedelta(seconds=8)  # process start + guild_ready_timeout (2 s) + planning


def next_slot(now: datetime) -> datetime:
    """The next whole UTC minute that leaves the bot time to start and plan its jobs."""
    slot = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return slot if slot - now >= STARTUP_MARGIN else slot + timedelta(minutes=1)


async def create_schedules(database: Path, channels: list[ChannelState], slot: datetime) -> None:
    store = await Store.open(database)
    try:
        schedules = Schedules(store)
        for channel in channels:
            await schedules.create(
                guild_id=channel.guild.id,
                created_by=1,
                limit=100,
                fields={
                    "channel_id": channel.id,
                    "timezone": "UTC",
                    "time_of_day": slot.strftime("%H:%M"),
                    "content": "digest",
                },
            )
        async with store.transaction() as conn:  # created an hour ago
            await conn.execute(
                "UPDATE schedules SET active_since = ?",
                ((slot - timedelta(hours=1)).isoformat(),),
            )
    finally:
        await store.close()


async def test_kill_9_during_a_fan_out_posts_every_slot_exactly_once(tmp_path: Path) -> None:
    emu = Emulator(token="crash-test-token")
    await emu.start()
    bot: BotProcess | None = None
    try:
        guilds = [
            emu.add_guild(f"Server {i}", channels=("general", "briefings")) for i in range(GUILDS)
        ]
        channels = [g.channels["briefings"] for g in guilds]
        database = tmp_path / "crash.db"
        slot = next_slot(datetime.now(UTC))
        await create_schedules(database, channels, slot)
        config = write_config(
            tmp_path / "crash.toml",
            database=database,
            emulator=emu,
            extra=f"[schedules]\nglobal_rate_per_second = {RATE}\n",
        )
        bot = BotProcess(tmp_path, config, emu.token)

        def posted() -> int:
            return sum(len(emu.messages(c)) for c in channels)

        await bot.start()
        wait = (slot - datetime.now(UTC)).total_seconds()
        await wait_for(lambda: posted() >= 8, wait + 20, "the fan-out to begin")
        await bot.kill()
        first = posted()
        assert first < GUILDS, "the first kill came after the fan-out had finished"

        await bot.start()  # recovers the claimed posts, catches up on the rest
        await wait_for(lambda: posted() >= first + 5, 30, f"posts after restart\n{bot.tail()}")
        await bot.kill()
        second = posted()
        assert second < GUILDS, "the second kill came after the catch-up had finished"

        await bot.start()

        def recorded() -> int:
            return rows(database, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0]

        await wait_for(
            lambda: posted() >= GUILDS and recorded() >= GUILDS,
            60,
            f"all {GUILDS} posts delivered and recorded\n{bot.tail()}",
        )
        await bot.stop()

        per_channel = {c.guild.name: len(emu.messages(c)) for c in channels}
        assert per_channel == {c.guild.name: 1 for c in channels}, (first, second, per_channel)
        slot_key = slot.strftime("%Y-%m-%dT%H:%MZ")  # slots are stored as UTC instants
        deliveries = rows(
            database,
            "SELECT schedule_id, slot, state, message_id FROM deliveries ORDER BY schedule_id",
        )
        assert [(d[1], d[2]) for d in deliveries] == [(slot_key, "sent")] * GUILDS, deliveries
        sent_ids = {d[3] for d in deliveries}
        posted_ids = {int(m["id"]) for c in channels for m in emu.messages(c)}
        assert sent_ids == posted_ids  # every recorded message is the one that was posted
        assert all(emu.messages(g.channels["general"]) == [] for g in guilds)  # no pauses
        assert emu.violations == []
        assert integrity(database) == "ok"
    finally:
        if bot is not None:
            await bot.stop()
        await emu.stop()


async def test_two_bot_processes_on_one_database_post_each_slot_once(tmp_path: Path) -> None:
    """Two `pledgebot run` processes share the database and plan the same briefings; at
    the slot both fire, and the claim lets exactly one of them post each."""
    emu = Emulator(token="two-process-token")
    await emu.start()
    bots: list[BotProcess] = []
    try:
        guilds = [
            emu.add_guild(f"Server {i}", channels=("general", "briefings")) for i in range(20)
        ]
        channels = [g.channels["briefings"] for g in guilds]
        database = tmp_path / "shared.db"
        slot = next_slot(datetime.now(UTC))
        await create_schedules(database, channels, slot)
        config = write_config(
            tmp_path / "shared.toml",
            database=database,
            emulator=emu,
            log_level="DEBUG",
        )
        bots = [BotProcess(tmp_path, config, emu.token, name=f"bot{i}") for i in (1, 2)]
        for bot in bots:
            await bot.start()

        def recorded() -> int:
            return rows(database, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0]

        wait = (slot - datetime.now(UTC)).total_seconds()
        await wait_for(lambda: recorded() >= len(channels), wait + 30, "every slot recorded")
        await asyncio.sleep(2)  # time for a second, duplicate post to show up if there were one
        for bot in bots:
            await bot.stop()
        assert [len(emu.messages(c)) for c in channels] == [1] * len(channels)
        posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/messages")]
        assert len(posts) == len(channels)  # the loser of each claim never even sent
        logs = [path.read_text(errors="replace") for bot in bots for path in bot.log_paths]
        lost = sum(text.count(": already claimed") for text in logs)
        assert lost <= len(channels)
        # Both processes fired: the second to look at each briefing lost its claim, or (on
        # a loaded machine one process can lag the other by that much) read it after the
        # other had recorded the slot and found nothing due.
        assert lost + sum(text.count(": nothing due (already dealt with)") for text in logs) >= 1
        assert emu.violations == []
    finally:
        for bot in bots:
            await bot.stop()
        await emu.stop()
