"""Starting the bot: on Discord (`run`), one-off command sync (`sync`), or the console;
`invite` and `doctor` ask Discord without starting it.

This is the composition root: the one place in `bot` that imports `commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import discord.http

import commands
from bot.briefings.planner import Shards
from bot.client.app import (
    PledgeBot,
    ShardedPledgeBot,
    SyncMode,
    bot_intents,
    silence_voice_warnings,
)
from bot.client.endpoints import apply_endpoints
from bot.config import Config
from bot.errors import OperatorError
from bot.storage.files import in_use
from bot.storage.sqlite import check_sqlite_file_opens
from bot.store import Store

log = logging.getLogger(__name__)

# sysexits.h: the unit in deploy/ restarts on any failure except a refused token.
EX_UNAVAILABLE = 69
EX_CONFIG = 78

BAD_TOKEN = (
    "Discord refused the token in DISCORD_TOKEN (401 Unauthorized): "
    "check that it is this bot's current token."
)
# Waits between tries to reach Discord at start-up: 1, 2, 4... seconds, at most a minute.
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 60.0
# What "Discord cannot be reached" looks like from discord.py and aiohttp.
UNREACHABLE = (
    OSError,
    aiohttp.ClientError,
    TimeoutError,
    discord.GatewayNotFound,
    discord.DiscordServerError,
)


class TokenRefused(OperatorError):
    """Retrying cannot help: the host must fix DISCORD_TOKEN."""

    exit_code = EX_CONFIG


class DiscordUnreachable(OperatorError):
    """Gave up after `[discord] connect_attempts` tries; a supervisor may start us again."""

    exit_code = EX_UNAVAILABLE


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
    one_line_reconnects()
    asyncio.run(serve(config, token, options))
    return 0


async def serve(config: Config, token: str, options: dict[str, Any]) -> None:
    """Open the database, reach Discord (retrying with backoff), then run until stopped.

    The database comes first, so a bad path is reported at once even while Discord is
    down. SIGTERM (systemd's stop) closes the bot cleanly, and the process exits 0.
    """
    sqlite = config.database_url is None
    with contextlib.ExitStack() as held:
        # The in-use lock before the file is opened and migrated: never while `db restore`
        # swaps it.
        with in_use(config.database_path) if sqlite else contextlib.nullcontext():
            if sqlite:
                check_sqlite_file_opens(config.database_path)
            store = await Store.open(config.database)  # and migrates, or says why not
            if sqlite:
                held.enter_context(wal_kept(config.database_path))
            await store.close()
        await run_until_stopped(config, token, options)


@contextlib.contextmanager
def wal_kept(path: Path) -> Iterator[None]:
    """Keep the SQLite file's WAL while this process runs.

    Closing the last connection to a file in WAL mode checkpoints it and deletes the WAL
    under an exclusive lock, and the next write creates the WAL again: fsyncs, seconds
    apiece on a loaded disk, that another process starting on the file meanwhile waits on
    (its writes for 5 s at most). Start-up closes its store before the bot opens its own;
    this idle connection, having read the file, holds the shared lock that keeps that close
    from being the last.
    """
    keeper = sqlite3.connect(path)
    try:
        keeper.execute("PRAGMA schema_version").fetchone()
        yield
    finally:
        keeper.close()


async def run_until_stopped(config: Config, token: str, options: dict[str, Any]) -> None:
    """Reach Discord (retrying with backoff) and run until SIGTERM or a fatal error."""
    stopping = asyncio.Event()
    current: list[PledgeBot] = []

    def stop() -> None:
        stopping.set()
        for bot in current:
            asyncio.get_running_loop().create_task(bot.close())

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signals on some platforms
        loop.add_signal_handler(signal.SIGTERM, stop)
    attempt = 0
    while not stopping.is_set():
        attempt += 1
        bot = make_bot(config, **options)
        current[:] = [bot]
        async with bot:
            try:
                await bot.login(token)
            except discord.LoginFailure:
                raise TokenRefused(BAD_TOKEN) from None
            except UNREACHABLE as error:
                reason = network_reason(error)
            else:
                if not stopping.is_set():
                    await bot.connect(reconnect=True)
                return
            finally:
                # discord.py's __aexit__ skips our close once its own has run (after a
                # SIGTERM): wait for ours, so the store is closed before the loop ends.
                await bot.close()
        where = discord.http.Route.BASE
        limit = config.connect_attempts
        if limit and attempt >= limit:
            raise DiscordUnreachable(
                f"cannot reach Discord at {where} ({reason}) after {attempt} attempts; giving up"
            )
        delay = min(FIRST_RETRY_SECONDS * 2 ** (attempt - 1), LONGEST_RETRY_SECONDS)
        of = f" of {limit}" if limit else ""
        log.warning(
            "cannot reach Discord at %s (%s); attempt %d%s, trying again in %.0f s",
            where,
            reason,
            attempt,
            of,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


def network_reason(error: BaseException) -> str:
    """A network failure in a few words, for a log line (never a traceback)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        text = os.strerror(cause.errno) if cause.errno else cause.strerror or str(cause)
        return f"{error.host}:{error.port}: {text}"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, discord.ConnectionClosed):
        return f"the gateway closed the connection (code {error.code})"
    if isinstance(error, discord.HTTPException):
        return f"HTTP {error.status} {error.response.reason or ''}".strip()
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or "connection failed"


RECONNECT_MESSAGES = ("Attempting a reconnect", "Failed to connect for shard_id")


class OneLineReconnects(logging.Filter):
    """discord.py logs each gateway reconnect with a full traceback; keep it to one line
    that says why. Every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith(RECONNECT_MESSAGES):
            error = record.exc_info[1]
            reason = network_reason(error) if error else "disconnected"
            record.msg = f"{record.msg} ({reason.replace('%', '%%')})"
            record.exc_info = None
            record.exc_text = None
        return True


def one_line_reconnects() -> None:
    for name in ("discord.client", "discord.shard"):
        target = logging.getLogger(name)
        if not any(isinstance(f, OneLineReconnects) for f in target.filters):
            target.addFilter(OneLineReconnects())


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


@contextlib.contextmanager
def login_errors() -> Iterator[None]:
    """A refused token or an unreachable Discord, for the one-shot commands (`sync`,
    `invite`): the operator's one-line errors, with their exit codes."""
    try:
        yield
    except discord.LoginFailure:
        raise TokenRefused(BAD_TOKEN) from None
    except UNREACHABLE as error:
        raise DiscordUnreachable(
            f"cannot reach Discord at {discord.http.Route.BASE} ({network_reason(error)})"
        ) from None


def sync(config: Config, guild_id: int | None) -> int:
    token = require_token(config)

    async def sync_once() -> None:
        bot = make_bot(config, sync_mode="force", sync_guild_id=guild_id, run_engine=False)
        async with bot:
            with login_errors():
                await bot.login(token)  # runs setup_hook, which syncs
        print(f"synced commands ({bot.synced_scope})")

    asyncio.run(sync_once())
    return 0


def doctor(config: Config, guild_id: int | None) -> int:
    """Print the table of checks; the exit code says whether any failed."""
    from bot.client import doctor  # it builds on this module (make_bot, the login errors)

    return doctor.run(config, guild_id)


def invite(config: Config, client_id: int | None) -> int:
    """Print the URL that adds the bot to a server, and the permissions it asks for."""
    # Only this command prints them: a running bot never loads the module.
    from bot.client.invite import (
        BOT_PERMISSIONS,
        SCOPES,
        bot_permissions,
        server_invite_url,
        user_install_url,
    )

    if client_id is None:
        client_id = asyncio.run(application_id(config))
    permissions = bot_permissions()
    print(f"Add pledgebot to a server (application {client_id}):")
    print(f"  {server_invite_url(client_id)}")
    print(f"Scopes: {' '.join(SCOPES)}. Permissions (integer {permissions.value}):")
    for _, label, why in BOT_PERMISSIONS:
        print(f"  {label}: {why}")
    print("Install pledgebot on your own account (member commands in any server or DM):")
    print(f"  {user_install_url(client_id)}")
    return 0


async def application_id(config: Config) -> int:
    """The id of the application the token belongs to, as Discord says."""
    token = require_token(config)
    apply_endpoints(config.api_base_url, config.gateway_url)
    silence_voice_warnings()
    client = discord.Client(intents=bot_intents())
    async with client:
        with login_errors():
            await client.login(token)
            application = await client.application_info()
    return application.id


def console(config: Config) -> int:
    from bot.client import logredact
    from bot.local.console import run_console

    if config.log_level != "DEBUG":
        # The console's screen is for the conversation; only problems are logged.
        logging.getLogger().setLevel(logging.WARNING)
    logredact.install(config.token)
    return run_console(config, console_bot)


def console_bot(local: Config) -> PledgeBot:
    """The bot as the console runs it, on a config pointed at the local emulator."""
    # The emulator starts empty every time, so the commands are always registered.
    return make_bot(local, sync_mode="force", guild_ready_timeout=0.1)
