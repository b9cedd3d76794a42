"""Running the real bot against the local Discord emulator, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.client.app import PledgeBot
from bot.client.runner import make_bot
from bot.config import Config
from bot.local import ChannelState, Emulator, GuildState, UserState
from tests.conftest import DATA_DIR


@dataclass
class World:
    emu: Emulator
    guild: GuildState
    other_guild: GuildState
    member: UserState
    moderator: UserState
    config: Config

    @property
    def general(self) -> ChannelState:
        return self.guild.channels["general"]

    @property
    def briefings(self) -> ChannelState:
        return self.guild.channels["briefings"]


@asynccontextmanager
async def world(tmp_path: Path, **emulator_options: Any) -> AsyncIterator[World]:
    emu = Emulator(**emulator_options)
    await emu.start()
    try:
        guild = emu.add_guild("Demo", channels=("general", "briefings"))
        other = emu.add_guild("Elsewhere", channels=("general", "briefings"))
        member = emu.add_user("member")
        moderator = emu.add_user("moderator", manage_guild=True)
        config = Config(
            database_path=tmp_path / "pledgebot.db",
            content_dir=DATA_DIR,
            api_base_url=emu.base_url,
            gateway_url=emu.gateway_url,
        )
        yield World(emu, guild, other, member, moderator, config)
    finally:
        await emu.stop()


@pytest.fixture(name="w")
async def world_on_both_backends(
    tmp_path: Path, store_location: Path | str
) -> AsyncIterator[World]:
    """`w` once per backend (`store_location`): a SQLite file, then a PostgreSQL database.
    A test module imports it (and lists it in `__all__`) to run its tests on both."""
    async with world(tmp_path) as value:
        if isinstance(store_location, str):
            value.config = with_config(value, database_url=store_location)
        yield value


class QuickStart:
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Skip discord.py's 5 s pause before a re-IDENTIFY (Discord's identify limit)."""


def quick(bot_class: type[PledgeBot]) -> type[PledgeBot]:
    return type(f"Quick{bot_class.__name__}", (QuickStart, bot_class), {})


@asynccontextmanager
async def running_bot(
    w: World, config: Config | None = None, **options: Any
) -> AsyncIterator[PledgeBot]:
    """Start the real bot on the emulator; yield once its briefing engine has started."""
    config = config or w.config
    bot_class = quick(options.pop("bot_class", PledgeBot))
    bot = make_bot(config, bot_class=bot_class, guild_ready_timeout=0.05, **options)
    task = asyncio.create_task(bot.start(w.emu.token))
    ready = asyncio.create_task(bot.engine_started.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    if ready not in done:
        raise TimeoutError("bot did not start within 20 s")
    try:
        yield bot
    finally:
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)


def with_config(w: World, **changes: Any) -> Config:
    return dataclasses.replace(w.config, **changes)


def embed_text(message: dict[str, Any] | None) -> str:
    """Everything a reader sees in a message, as one string."""
    assert message is not None
    parts = [message.get("content") or ""]
    for embed in message.get("embeds", []):
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}\n{f['value']}" for f in embed.get("fields", [])]
        parts.append(embed.get("footer", {}).get("text", ""))
    return "\n".join(p for p in parts if p)
