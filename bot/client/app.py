"""The Discord client: intents, start-up wiring, command sync and the one error handler."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.briefings.admin import BriefingAdmin
from bot.briefings.compose import Briefing
from bot.briefings.engine import BriefingEngine
from bot.briefings.planner import ALL_SHARDS, Shards
from bot.briefings.retention import prune_daily
from bot.briefings.sender import DeliveryFailure
from bot.client.buckets import sweep_buckets_when_doubled
from bot.client.delivery import DiscordSender, embed_for
from bot.client.metrics import (
    BotMetrics,
    BriefingOutcomes,
    GatewayStatus,
    MonitoringServer,
    WriteProbe,
    latency_or_nan,
)
from bot.config import Config
from bot.errors import UserError, store_errors
from bot.follows.compose import MemberAlert
from bot.follows.dispatch import AlertDispatcher
from bot.follows.members import paused_text
from bot.pledges.services import Services
from bot.pledges.suggestions import Notice, Suggestions, outcome_card
from bot.storage.files import DatabaseInUse

log = logging.getLogger(__name__)

SyncMode = Literal["auto", "force", "off"]
# How often start-up looks whether every server has streamed in (a glance at the cache).
SERVERS_POLL_SECONDS = 0.02
# Planning starts by then at the latest, whatever the gateway does (an outage, a session
# that keeps being taken over, a bot in no servers, where READY lists none to wait for).
PLANNING_WAITS_AT_MOST = 5.0
# How often each process looks for suggestion outcomes to tell by DM (a read; idle, no write).
NOTICE_POLL_SECONDS = 2.0
# Closing waits this long at most for members being told something after a command.
TELLING_WAITS_AT_MOST = 5.0
CommandInstaller = Callable[[app_commands.CommandTree[Any], Services, BriefingAdmin], None]


def silence_voice_warnings() -> None:
    """The bot never joins voice, so discord.py's notices that voice libraries are missing
    (PyNaCl, davey) only alarm a host. These are discord.py's own switches for those two
    notices; every other warning still shows."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


def return_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's `malloc_trim`).

    Start-up frees much of what it allocated (compiling modules without .pyc files, reading
    the content, planning), and glibc keeps those pages resident, scattered among live
    objects. Once start-up is over they are returned: about 1 MiB of VmRSS with the shipped
    content, measured. Where the C library has no `malloc_trim` (musl, macOS), nothing.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # ctypes: already imported by discord.py
    except (AttributeError, OSError, TypeError):
        return
    trim(0)


def bot_intents() -> discord.Intents:
    """Guilds only: slash commands need no privileged or message intents."""
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


def user_message(error: Exception) -> str | None:
    """The private message for an error the user can act on; None for our own bugs."""
    if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
        original = error.__cause__ or getattr(error, "original", None)
        if isinstance(original, UserError):
            return str(original)
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, app_commands.TransformerError):
        if error.type is discord.AppCommandOptionType.channel:
            return "That channel is not in this server, or not one I can post in."
        return f"“{str(error.value)[:80]}” is not a valid value for that option."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works inside a server."
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the Manage Server permission (or the server's moderator role) for this."
    if isinstance(error, app_commands.BotMissingPermissions):
        missing = ", ".join(error.missing_permissions)
        return f"I am missing permissions here: {missing}."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "This command was just updated. Please try again in a minute."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You cannot use this command here."
    return None


async def send_private(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer privately whether or not the interaction was already acknowledged.

    After a public "thinking" defer, Discord turns the first followup into that public
    message, whatever flags it asks for: the placeholder is deleted first, so that the
    answer is a new, private message.
    """
    try:
        if interaction.response.is_done():
            if (
                interaction.response.type
                is discord.InteractionResponseType.deferred_channel_message
            ):
                original = await interaction.original_response()
                if original.flags.loading and not original.flags.ephemeral:
                    await interaction.delete_original_response()
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not send error reply for interaction %s: %s", interaction.id, exc)


async def report_error(interaction: discord.Interaction[Any], error: Exception) -> None:
    """Every failure ends in a private answer; unexpected ones are logged with an id."""
    message = user_message(error)
    if message is None:
        error_id = secrets.token_hex(4)
        original = getattr(error, "original", error)
        log.error(
            "error %s in %s (guild %s, user %s)",
            error_id,
            interaction.command.qualified_name if interaction.command else "interaction",
            interaction.guild_id,
            interaction.user.id,
            exc_info=original,
        )
        message = (
            f"Sorry, something went wrong on our side (error id `{error_id}`). "
            "Nothing was changed; please try again."
        )
    await send_private(interaction, message)


class PledgeTree(app_commands.CommandTree[Any]):
    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        if isinstance(self.client, PledgeBot):
            name = interaction.command.qualified_name if interaction.command else "unknown"
            outcome = "refused" if user_message(error) is not None else "failed"
            if self.client.metrics is not None:
                self.client.metrics.command_finished(name, outcome)
        await report_error(interaction, error)


def command_payloads(
    tree: app_commands.CommandTree[Any], guild: discord.Object | None
) -> list[dict[str, Any]]:
    """The commands as `tree.sync(guild=guild)` sends them to Discord."""
    return [c.to_dict(tree) for c in tree.get_commands(guild=guild)]


def command_schema_hash(tree: app_commands.CommandTree[Any], guild: discord.Object | None) -> str:
    payload = command_payloads(tree, guild)
    encoded = json.dumps(sorted(payload, key=lambda c: c["name"]), sort_keys=True)
    return hashlib.sha256(encoded.encode()).hexdigest()


class PledgeBot(commands.Bot):
    """The bot; start-up opens the store, loads content, installs commands, syncs if needed."""

    def __init__(
        self,
        config: Config,
        install_commands: CommandInstaller,
        *,
        sync_mode: SyncMode = "auto",
        sync_guild_id: int | None = None,
        schedule_shards: Shards = ALL_SHARDS,
        run_engine: bool = True,
        **options: Any,
    ) -> None:
        silence_voice_warnings()
        # Only when served: a bot without /metrics never imports prometheus-client.
        self.metrics = BotMetrics() if config.metrics_listen is not None else None
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=bot_intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=PledgeTree,
            http_trace=self._rate_budget_trace(),
            **options,
        )
        sweep_buckets_when_doubled(self.http)
        self.config = config
        self.install_commands = install_commands
        self.sync_mode = sync_mode
        self.sync_guild_id = sync_guild_id or config.dev_guild_id
        self.services: Services | None = None
        self.engine: BriefingEngine | None = None
        self.alerts: AlertDispatcher | None = None
        self.engine_started = asyncio.Event()
        self.run_engine = run_engine
        self._engine_start: asyncio.Task[None] | None = None
        self.schedule_shards = schedule_shards
        self.synced_scope: str | None = None
        self.gateway = GatewayStatus(list(getattr(self, "shard_ids", None) or [0]))
        self.monitoring: MonitoringServer | None = None
        # A SQLite file's in-use lock; a PostgreSQL server has its own sessions.
        self._database_hold = (
            DatabaseInUse(config.database_path) if config.database_url is None else None
        )
        self._briefing_outcomes: BriefingOutcomes | None = None
        self._write_probe: WriteProbe | None = None
        self._retention: asyncio.Task[None] | None = None
        self._alerting: asyncio.Task[None] | None = None
        self.suggestions: Suggestions | None = None
        self._telling: asyncio.Task[None] | None = None
        # What members are being told after their commands: closing waits for it, so the
        # store is not closed under a notice half marked as told.
        self._telling_members: set[asyncio.Future[None]] = set()
        self._closing: asyncio.Future[None] | None = None

    def _rate_budget_trace(self) -> aiohttp.TraceConfig:
        """Every REST request, discord.py's own retries included, counts against the
        global budget that all processes share (once the store is open)."""

        async def on_request_start(
            _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestStartParams
        ) -> None:
            if self.engine is not None:
                await self.engine.budget.on_request(params.method, params.url.path)

        async def on_request_end(
            _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestEndParams
        ) -> None:
            if self.metrics is not None:
                status, headers = params.response.status, params.response.headers
                self.metrics.response_received(status, headers.get("X-RateLimit-Scope"))

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        trace.on_request_end.append(on_request_end)
        return trace

    async def setup_hook(self) -> None:
        # Held until close: `pledgebot db restore` refuses while any bot uses the file.
        if self._database_hold is not None:
            self._database_hold.acquire()
        self.services = await Services.start(self.config)
        if self.metrics is not None:
            self.metrics.measure_writes(self.services.store)
        engine = self.wire(self.services)
        if self.metrics is not None:
            self.metrics.measure_rate_budget(engine.budget)
        await self.sync_commands()
        # Planning runs once the servers have streamed in, in discord.py's idle wait before
        # on_ready (see _servers_streamed); catch-up posts need the guild cache, so wait for
        # on_ready. A task started here runs once per process, unlike on_ready, which runs
        # again on every reconnect.
        if self.run_engine:
            self._engine_start = asyncio.create_task(self._start_engine())
            self._retention = asyncio.create_task(
                prune_daily(self.services.store, self.config.retention_days)
            )
            if self.config.metrics_listen is not None:
                await self._serve_monitoring(*self.config.metrics_listen)

    def wire(self, services: Services) -> BriefingEngine:
        """The briefing engine, the alert dispatcher and the commands, over `services`.

        Nothing here reads or writes: `pledgebot doctor` builds the same command tree over
        a database it never opens.
        """
        self.engine = BriefingEngine(
            services.store,
            DiscordSender(self),
            catch_up=timedelta(minutes=self.config.catch_up_minutes),
            rate_per_second=self.config.global_rate_limit,
            shards=self.schedule_shards,
            charts=services.charts,
            pledges=services.current_pledges,
        )
        self.alerts = AlertDispatcher(
            services.store.db, DiscordSender(self), self.engine.budget, shards=self.schedule_shards
        )
        self.suggestions = Suggestions(services.store.db)
        briefings = BriefingAdmin(
            self.engine,
            services,
            limit=self.config.schedule_limit_per_guild,
            default_tz=self.config.default_timezone,
        )
        self.install_commands(self.tree, services, briefings)
        return self.engine

    async def _serve_monitoring(self, host: str, port: int) -> None:
        assert self.services is not None
        store = self.services.store
        self._briefing_outcomes = BriefingOutcomes(store, self.schedule_shards.owns)
        await self._briefing_outcomes.start()
        self._write_probe = WriteProbe(store)
        self.monitoring = MonitoringServer(
            host, port, metrics=self.render_metrics, health=self.health_problem
        )
        await self.monitoring.start()

    async def render_metrics(self) -> bytes:
        """/metrics: gauges read now, briefing outcomes read from the store since the last look."""
        metrics = self.metrics
        assert metrics is not None  # served only when [metrics] listen is set
        metrics.gateway_latency.set(latency_or_nan(self.latency))
        metrics.gateway_connected.set(0 if self.gateway.problem() else 1)
        metrics.guilds.set(len(self.guilds))
        if self._briefing_outcomes is not None:
            try:
                found = await self._briefing_outcomes.read()
            except store_errors() as error:
                log.warning("metrics: could not read briefing outcomes (%s)", error)
            else:
                for outcome, count in found.items():
                    metrics.briefings.labels(outcome).inc(count)
        return metrics.render()

    async def health_problem(self) -> str | None:
        """/healthz: None when the gateway is connected and the database takes a write."""
        problems = [self.gateway.problem()]
        if self._write_probe is not None:
            problems.append(await self._write_probe.problem())
        return "; ".join(p for p in problems if p) or None

    # Gateway state for /healthz, from discord.py's events (the sharded bot, per shard).
    async def on_connect(self) -> None:
        self.gateway.connected(0)

    async def on_resumed(self) -> None:
        self.gateway.connected(0)

    async def on_disconnect(self) -> None:
        self.gateway.disconnected(0)

    async def on_app_command_completion(
        self, interaction: discord.Interaction[Any], command: Any
    ) -> None:
        if self.metrics is not None:
            self.metrics.command_finished(command.qualified_name, "answered")
        if self._closing is not None:
            return  # the store is closing: what there is to tell waits for the next start
        telling = asyncio.ensure_future(self._tell_after_command(interaction))
        self._telling_members.add(telling)
        telling.add_done_callback(self._telling_members.discard)
        await asyncio.shield(telling)

    async def _tell_after_command(self, interaction: discord.Interaction[Any]) -> None:
        await self.tell_of_pause(interaction)
        await self.tell_of_outcomes(interaction)

    async def tell_of_pause(self, interaction: discord.Interaction[Any]) -> None:
        """A member whose alerts were paused (closed DMs) hears of it once, privately,
        after the next command they use."""
        if self.alerts is None:
            return
        failures: tuple[type[Exception], ...] = (discord.HTTPException, *store_errors())
        try:
            pause = await self.alerts.follows.pause_to_tell(interaction.user.id)
            if pause is not None:
                await interaction.followup.send(paused_text(pause), ephemeral=True)
        except failures as error:
            log.warning(
                "could not tell member %s of their paused alerts: %s", interaction.user.id, error
            )

    async def tell_of_outcomes(self, interaction: discord.Interaction[Any]) -> None:
        """Suggestion outcomes a member could not get by DM: told once, privately, after
        their next command (if even that fails, after the one after)."""
        if self.suggestions is None:
            return
        user_id = interaction.user.id
        failures: tuple[type[Exception], ...] = (discord.HTTPException, *store_errors())
        try:
            notices = await self.suggestions.notices_to_tell(user_id)
            if notices:
                card = outcome_card(notices)
                try:
                    await interaction.followup.send(embed=embed_for(card), ephemeral=True)
                except discord.HTTPException as error:
                    await self.suggestions.not_told(notices, f"not shown after a command: {error}")
                    raise
        except failures as error:
            log.warning("could not tell member %s of their suggestions: %s", user_id, error)

    async def _tell_outcomes_by_dm(self) -> None:
        """Each decided suggestion's members hear the outcome by DM, from the process whose
        shard their user id falls in (as alerts); a refused DM waits for their next command."""
        assert self.suggestions is not None
        sender = DiscordSender(self)

        async def send(notice: Notice) -> str | None:
            alert = MemberAlert(Briefing("", (outcome_card([notice]),)), (), ())
            marker = f"Suggestion #{notice.suggestion_id}"
            try:
                channel_id = await sender.open_dm(notice.user_id)
                if notice.interrupted:  # the first attempt may have reached them
                    since = datetime.now(UTC) - timedelta(days=1)
                    if await sender.find_post(channel_id, marker, since=since) is not None:
                        return None
                await sender.send_dm(
                    channel_id,
                    alert,
                    nonce=f"suggestion-{notice.suggestion_id}",
                    marker=marker,
                )
            except DeliveryFailure as failure:
                return failure.reason
            return None

        while True:
            try:
                await self.suggestions.deliver_notices(self.schedule_shards.owns, send)
            except Exception:
                log.exception("suggestion outcomes: telling members failed; trying again soon")
            await asyncio.sleep(NOTICE_POLL_SECONDS)

    async def _start_engine(self) -> None:
        assert self.engine is not None
        try:
            await self._servers_streamed()
            await self.engine.plan_all()
            await self.wait_until_ready()
            await self.engine.catch_up()
        except Exception:
            log.exception("briefing engine failed to start; briefings may not post")
        else:
            if self.alerts is not None:
                self._alerting = asyncio.create_task(self.alerts.run())
            self._telling = asyncio.create_task(self._tell_outcomes_by_dm())
            # What start-up built lives as long as the process (the guild cache, the
            # plan). Moved out of the collector's sight, it is no longer walked by every
            # full collection, which with 10,000 servers stalled answers for milliseconds.
            gc.freeze()
            await self._release_memory()
            self.engine_started.set()

    async def _release_memory(self) -> None:
        """Start-up is over: the store's caches and the C heap give back what it filled."""
        if self.services is not None:
            try:
                await self.services.store.db.release_memory()
            except store_errors() as error:
                log.warning("could not shrink the store's caches: %s", error)
        return_freed_memory()

    async def _servers_streamed(self) -> None:
        """Until every server that READY listed has arrived (GUILD_CREATE), or on_ready.

        Planning is CPU work on this event loop: run while the servers stream in, it
        slows the stream and so delays on_ready. Once they are in, discord.py still waits
        `guild_ready_timeout` (2 s by default) for more before on_ready, and the process
        is idle: planning then costs on_ready nothing. Servers that stay unavailable (an
        outage) make this wait until on_ready, which is still before catch-up needs it, or
        PLANNING_WAITS_AT_MOST, whichever comes first.
        """
        deadline = asyncio.get_running_loop().time() + PLANNING_WAITS_AT_MOST
        while not self.is_ready() and not self.is_closed():
            guilds = self.guilds
            if guilds and all(not guild.unavailable for guild in guilds):
                return
            if asyncio.get_running_loop().time() >= deadline:
                return  # a gateway slow to become ready never holds planning up for long
            await asyncio.sleep(SERVERS_POLL_SECONDS)

    async def sync_commands(self) -> bool:
        """Sync when forced, or when the command schema differs from the last one synced.

        Discord rate-limits command registration, so an unchanged schema is never
        re-sent on a restart.
        """
        if self.sync_mode == "off":
            return False
        assert self.services is not None
        guild = self.sync_target()
        scope = f"guild:{guild.id}" if guild else "global"
        key = f"command_schema:{scope}"
        schema = command_schema_hash(self.tree, guild)
        if self.sync_mode == "auto" and await self.services.store.get_meta(key) == schema:
            log.info("commands unchanged since last sync (%s); not syncing", scope)
            return False
        synced = await self.tree.sync(guild=guild)
        await self.services.store.set_meta(key, schema)
        self.synced_scope = scope
        log.info("synced %d commands (%s)", len(synced), scope)
        return True

    def sync_target(self) -> discord.Object | None:
        """Where the commands sync: one server (`--guild` or `dev_guild_id`), the global
        commands copied there, or None for everywhere."""
        guild = discord.Object(self.sync_guild_id) if self.sync_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        return guild

    async def close(self) -> None:
        """Once, however many callers (a SIGTERM while `async with bot` also closes):
        every caller waits for the same clean-up to finish."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_once())
        await asyncio.shield(self._closing)

    async def _close_once(self) -> None:
        if self._telling_members:  # while the session and the store are still open
            await asyncio.wait(self._telling_members, timeout=TELLING_WAITS_AT_MOST)
        for task in (self._engine_start, self._retention, self._alerting, self._telling):
            if task is not None:
                task.cancel()
        if self.monitoring is not None:
            await self.monitoring.stop()
            self.monitoring = None
        if self._write_probe is not None:
            await self._write_probe.close()
        if self.engine is not None:
            await self.engine.stop()
        await super().close()
        if self.services is not None:
            await self.services.close()
            self.services = None
        if self._database_hold is not None:
            self._database_hold.release()


class ShardedPledgeBot(PledgeBot, commands.AutoShardedBot):
    """The same bot running several gateway shards in one process (`run --shard-ids`)."""

    # The client-wide events fire for any one shard; health follows each shard instead.
    async def on_connect(self) -> None:
        pass

    async def on_resumed(self) -> None:
        pass

    async def on_disconnect(self) -> None:
        pass

    async def on_shard_connect(self, shard_id: int) -> None:
        self.gateway.connected(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.gateway.connected(shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.gateway.disconnected(shard_id)
