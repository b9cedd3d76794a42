"""Gateway drops and invalid sessions while the bot is posting: nothing lost, nothing twice.

In-process bot (`running_bot`) on the emulator. Posting goes over REST, so a dropped gateway
must not stop a fan-out; but a new session (after an invalid session) starts with a READY
that lists every server as unavailable and the bot's cache emptied until each server's
GUILD_CREATE arrives, which on Discord can take seconds for a bot in many servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.briefings.engine import BriefingEngine
from bot.client.app import PledgeBot
from bot.local import ChannelState, Emulator
from tests.e2e import World, embed_text, running_bot, with_config, world
from tests.test_robustness_support import wait_for

pytestmark = pytest.mark.e2e

FEEDS = 30
RATE = 5.0  # the emulator's global limit and the bot's pacing: the fan-out takes ~6 s
SLOT = "2099-01-01T09:00Z"  # posted on demand: `deliver` takes any slot


def engine_of(bot: PledgeBot) -> BriefingEngine:
    assert bot.engine is not None
    return bot.engine


async def post_slot(engine: BriefingEngine, schedule_id: int) -> str:
    """What a firing at SLOT does, without waiting until 2099."""
    schedule = await engine.schedules.by_id(schedule_id)
    assert schedule is not None
    return await engine.deliver(schedule, SLOT, late=False)


async def create_schedule(engine: BriefingEngine, w: World, channel: ChannelState) -> int:
    schedule = await engine.schedules.create(
        guild_id=channel.guild.id,
        created_by=w.moderator.id,
        limit=100,
        fields={"channel_id": channel.id, "timezone": "UTC", "time_of_day": "09:00"}
        | {"content": "digest"},
    )
    return schedule.id


async def test_gateway_drops_during_a_fan_out_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    async with world(tmp_path, rate_limit_per_second=RATE) as w:
        feeds = [w.emu.add_channel(w.guild, f"feed-{i}") for i in range(FEEDS)]
        async with running_bot(w, with_config(w, global_rate_limit=RATE)) as bot:
            engine = engine_of(bot)
            ids = [await create_schedule(engine, w, channel) for channel in feeds]

            def posted() -> int:
                return sum(len(w.emu.messages(c)) for c in feeds)

            fan_out = asyncio.gather(*(post_slot(engine, i) for i in ids))
            resumes, identifies = w.emu.resume_count, w.emu.identify_count

            await wait_for(lambda: posted() >= 6, 20, "the fan-out to begin")
            await w.emu.drop_gateway(resumable=True)
            at_first_drop = posted()
            await wait_for(
                lambda: w.emu.resume_count > resumes and w.emu.connected.is_set(), 15, "RESUME"
            )
            await wait_for(lambda: posted() >= at_first_drop + 6, 20, "posts after resuming")
            await w.emu.drop_gateway(resumable=False)  # INVALID_SESSION: a new IDENTIFY
            at_second_drop = posted()
            await wait_for(
                lambda: w.emu.identify_count > identifies and w.emu.connected.is_set(),
                15,
                "a new IDENTIFY",
            )
            await asyncio.wait_for(fan_out, 60)
            deliveries = [await engine.schedules.delivery(i, SLOT) for i in ids]
            states = [(await engine.schedules.by_id(i)) for i in ids]
            after = await w.emu.run_command(w.guild, "about", user=w.member)  # still answering

    assert at_first_drop < at_second_drop < FEEDS, "both drops must land mid-fan-out"
    assert [len(w.emu.messages(c)) for c in feeds] == [1] * FEEDS
    assert [d.state if d else None for d in deliveries] == ["sent"] * FEEDS
    assert {d.message_id for d in deliveries if d} == {
        int(m["id"]) for c in feeds for m in w.emu.messages(c)
    }
    assert [s.state if s else None for s in states] == ["active"] * FEEDS
    assert w.emu.messages(w.general) == []  # no pause notices
    assert "Status vocabulary" in embed_text(after.message)
    assert w.emu.violations == []


class HeldGuildCreates:
    """Hold back GUILD_CREATE dispatches, as Discord does while it streams them after READY.

    The emulator sends a new session's GUILD_CREATEs right after READY; Discord sends them
    over the following seconds. This holds them until `release()`, through the emulator's
    gateway `dispatch` (its only seam for event timing).
    """

    def __init__(self, emu: Emulator) -> None:
        self.gateway: Any = emu._gateway  # no public hook for event timing
        self.original = self.gateway.dispatch
        self.held: list[tuple[str, Any, dict[str, Any]]] = []

    def _dispatch(self, event: str, data: Any, **options: Any) -> None:
        if event == "GUILD_CREATE":
            self.held.append((event, data, options))
        else:
            self.original(event, data, **options)

    def release(self) -> None:
        if "dispatch" in vars(self.gateway):
            del self.gateway.dispatch
        for event, data, options in self.held:
            self.original(event, data, **options)
        self.held.clear()

    @contextmanager
    def holding(self) -> Iterator[HeldGuildCreates]:
        self.gateway.dispatch = self._dispatch
        try:
            yield self
        finally:
            self.release()


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


async def test_a_briefing_due_while_a_new_session_loads_its_servers_is_not_paused(
    w: World,
) -> None:
    async with running_bot(w) as bot:
        engine = engine_of(bot)
        schedule_id = await create_schedule(engine, w, w.briefings)
        identifies = w.emu.identify_count

        def unavailable() -> bool:
            guild = bot.get_guild(w.guild.id)
            return guild is not None and guild.unavailable

        with HeldGuildCreates(w.emu).holding() as held:
            await w.emu.drop_gateway(resumable=False)
            await wait_for(lambda: w.emu.identify_count > identifies, 15, "a new IDENTIFY")
            await wait_for(unavailable, 5, "the new session's READY (servers not loaded yet)")
            assert held.held, "the GUILD_CREATEs were not held back"
            await post_slot(engine, schedule_id)  # the slot comes due in this window
        await wait_for(lambda: not unavailable(), 5, "the servers to load")
        schedule = await engine.schedules.by_id(schedule_id)
        delivery = await engine.schedules.delivery(schedule_id, SLOT)
    assert schedule is not None
    assert schedule.state == "active", f"paused: {schedule.pause_reason}"
    assert delivery is not None
    assert delivery.state == "sent", delivery
    assert len(w.emu.messages(w.briefings)) == 1
    assert w.emu.messages(w.general) == []  # no "paused" notice to moderators
