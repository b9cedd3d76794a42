"""Starting the bot: on Discord (`run`), one-off command sync (`sync`), or the console.

This is the composition root: the one place in `bot` that imports `commands`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

import commands
from bot.briefings.engine import Shards
from bot.client import logredact
from bot.client.app import PledgeBot, ShardedPledgeBot, SyncMode
from bot.client.endpoints import apply_endpoints
from bot.config import Config
from bot.errors import OperatorError

log = logging.getLogger(__name__)

BAD_TOKEN = (
    "Discord refused the token in DISCORD_TOKEN (401 Unauthorized): "
    "check that it is this bot's current token."
)


def make_bot(
    config: Config,
    *,
    sync_mode: SyncMode = "auto",
    sync_guild_id: int | None = None,
    bot_class: type[PledgeBot] = PledgeBot,
    **options: Any,
) -> PledgeBot:
    apply_endpoints(config.api_base_url, config.gateway_url)
    return bot_class(
        config, commands.install, sync_mode=sync_mode, sync_guild_id=sync_guild_id, **options
    )


def require_token(config: Config) -> str:
    if not config.token:
        raise OperatorError(
            "DISCORD_TOKEN is not set. Set it to your bot's token to run on Discord, "
            "or try the bot locally with no token: `pledgebot console`."
        )
    return config.token


def run(
    config: Config, *, shard_count: int | None = None, shard_ids: list[int] | None = None
) -> int:
    options = shard_options(shard_count, shard_ids)
    token = require_token(config)
    bot = make_bot(config, **options)
    try:
        bot.run(token, log_handler=None)
    except discord.LoginFailure:
        raise OperatorError(BAD_TOKEN) from None
    return 0


def shard_options(count: int | None, ids: list[int] | None) -> dict[str, Any]:
    """Options for a process running some of `count` shards (all of them by default)."""
    if count is None:
        if ids:
            raise OperatorError("--shard-ids needs --shard-count")
        return {}
    ids = ids or list(range(count))
    if count < 1 or any(not 0 <= i < count for i in ids):
        raise OperatorError(f"shard ids must be between 0 and {count - 1}")
    return {
        "bot_class": ShardedPledgeBot,
        "shard_count": count,
        "shard_ids": ids,
        "schedule_shards": Shards(count, frozenset(ids)),
    }


def sync(config: Config, guild_id: int | None) -> int:
    token = require_token(config)

    async def sync_once() -> None:
        bot = make_bot(config, sync_mode="force", sync_guild_id=guild_id, run_engine=False)
        async with bot:
            try:
                await bot.login(token)  # runs setup_hook, which syncs
            except discord.LoginFailure:
                raise OperatorError(BAD_TOKEN) from None
        print(f"synced commands ({bot.synced_scope})")

    asyncio.run(sync_once())
    return 0


def console(config: Config) -> int:
    from bot.local.console import run_console

    if config.log_level != "DEBUG":
        # The console's screen is for the conversation; only problems are logged.
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("discord.client").setLevel(logging.ERROR)  # "no voice" notices
    logredact.install(config.token)
    return run_console(config, console_bot)


def console_bot(local: Config) -> PledgeBot:
    """The bot as the console runs it, on a config pointed at the local emulator."""
    # The emulator starts empty every time, so the commands are always registered.
    return make_bot(local, sync_mode="force", guild_ready_timeout=0.1)
