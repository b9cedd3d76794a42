"""A local Discord that the real, unmodified discord.py client talks to over real sockets.

One aiohttp server on 127.0.0.1 serves the REST API under `/api/v10` and the gateway websocket
at `/`. Tests, the console and benchmarks build a world (guilds, channels, users), then act as
users (`run_command`, `autocomplete`, `click_button`) and inspect what the bot did (`messages`,
`dms`, `requests`, `violations`). Nothing here ever contacts discord.com.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from bot.local.cdn import Cdn
from bot.local.gateway import Gateway
from bot.local.interactions import (
    CommandUsageError,
    InteractionResult,
    build_command_data,
    installs_at,
    interaction_payload,
    public_answers_allowed,
)
from bot.local.limits import REQUEST_LIMIT_BYTES
from bot.local.models import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM,
    GROUP_DM,
    GUILD_ANNOUNCEMENT,
    GUILD_TEXT,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    JSON,
    MANAGE_GUILD,
    PUBLIC_THREAD,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    ChannelState,
    GuildState,
    InteractionRecord,
    MemberState,
    MessageListener,
    Overwrite,
    RoleState,
    StoredFile,
    StoredMessage,
    UserState,
    World,
    iso_now,
)
from bot.local.rest import FailRule, RecordedRequest, RestApi

STABLE_IDS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class Emulator:
    """The local Discord: start it, point discord.py at `base_url`/`gateway_url`, drive it."""

    def __init__(
        self,
        *,
        token: str = "emulator-token",
        rate_limit_per_second: float | None = None,
        heartbeat_interval_ms: int = 41250,
        interaction_deadline: float = 3.0,
        privileged_intents: int = 0,
        application_name: str = "pledgebot",
        stable_ids: bool = False,
        nonce_window: float = 180.0,
    ) -> None:
        # stable_ids: the same world built in the same order has the same ids every run
        # nonce_window: seconds Discord remembers an `enforce_nonce` nonce; later it posts anew
        self._world = World(token, application_name, STABLE_IDS_MS if stable_ids else None)
        self._gateway = Gateway(
            self._world,
            heartbeat_interval_ms=heartbeat_interval_ms,
            privileged_intents=privileged_intents,
        )
        self._rest = RestApi(
            self._world,
            self._gateway,
            rate_limit_per_second=rate_limit_per_second,
            interaction_deadline=interaction_deadline,
            nonce_window=nonce_window,
        )
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._user_permissions: dict[int, int] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # aiohttp's own cap sits at Discord's: a body beyond it gets Discord's 413, not aiohttp's
        app = web.Application(client_max_size=REQUEST_LIMIT_BYTES)
        app.router.add_get("/", self._gateway.handle)
        cdn = Cdn(self._world)
        app.router.add_get("/attachments/{tail:.*}", cdn.handle)
        app.router.add_get("/media/attachments/{tail:.*}", cdn.handle)
        app.router.add_route("*", "/{tail:.*}", self._rest.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._world.cdn_base = f"http://127.0.0.1:{self._port}"
        self._gateway.resume_url = self._rest.gateway_url = self.gateway_url

    async def stop(self) -> None:
        await self._gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return f"http://127.0.0.1:{self._require_port()}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._require_port()}/"

    def _require_port(self) -> int:
        if not self._port:
            raise RuntimeError("the emulator is not started (await emulator.start())")
        return self._port

    # -- what the bot sees and did ---------------------------------------------------------

    @property
    def token(self) -> str:
        return self._world.token

    @property
    def application_id(self) -> int:
        return self._world.application_id

    @property
    def bot_user(self) -> UserState:
        return self._world.bot_user

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._rest.requests

    @property
    def violations(self) -> list[str]:
        """Every Discord rule the bot broke; such requests were also refused like Discord would."""
        return self._world.violations

    @property
    def unhandled(self) -> list[str]:
        """Routes and gateway ops the emulator does not implement (answered 404 / ignored)."""
        return self._world.unhandled

    @property
    def rate_limited_count(self) -> int:
        return self._rest.rate_limited_count

    @property
    def connected(self) -> asyncio.Event:
        """Set once READY (and the GUILD_CREATEs) went out; cleared on disconnect."""
        return self._gateway.connected

    @property
    def identify_count(self) -> int:
        return self._gateway.identify_count

    @property
    def resume_count(self) -> int:
        return self._gateway.resume_count

    @property
    def identified_intents(self) -> int | None:
        """The intents of the latest IDENTIFY."""
        return self._gateway.identified_intents

    @property
    def presence(self) -> JSON | None:
        """The latest presence update (op 3) the bot sent."""
        return self._gateway.presence

    async def wait_until_ready_sent(self, timeout: float = 5.0) -> None:
        await self._world.wait_until(self._gateway.connected.is_set, timeout, "the bot to connect")

    def commands(self, guild: GuildState | None = None) -> list[JSON]:
        """Registered commands, global when `guild` is None."""
        return copy.deepcopy(self._world.commands_for(None if guild is None else guild.id))

    def messages(self, channel: ChannelState) -> list[JSON]:
        """Messages the bot posted to `channel` via REST, oldest first, edits/deletes applied."""
        bot_id = self._world.bot_user.id
        stored = (self._world.messages[i] for i in channel.message_ids)
        return [
            copy.deepcopy(m.data)
            for m in stored
            if m.interaction_id is None and m.author_id == bot_id
        ]

    async def wait_for_messages(
        self, channel: ChannelState, count: int = 1, timeout: float = 5.0
    ) -> list[JSON]:
        await self._world.wait_until(
            lambda: len(self.messages(channel)) >= count,
            timeout,
            f"{count} message(s) in #{channel.name}",
        )
        return self.messages(channel)

    def files(self, message: JSON | int | str) -> list[StoredFile]:
        """Every file the bot uploaded with a message (its dict, or its id), in order, those
        its embeds or components show included: Discord lists only the others in the
        message's `attachments`. Each carries its bytes (`data`) and its alt text."""
        stored = self._stored(message)
        return [self._world.files[i] for i in stored.file_ids if i in self._world.files]

    def attachment_bytes(self, message: JSON | int | str, filename: str) -> bytes:
        """The bytes of the file named `filename` (as Discord stored the name) on a message."""
        found = [f for f in self.files(message) if f.filename == filename]
        if not found:
            names = [f.filename for f in self.files(message)]
            raise CommandUsageError(f"no file {filename!r} on that message (files: {names})")
        return found[0].data

    def allowed_mentions(self, message: JSON | int | str) -> JSON | None:
        """The `allowed_mentions` the bot sent with a message (None when it sent none)."""
        return self._stored(message).allowed_mentions

    def on_message(self, callback: MessageListener) -> None:
        """Call `callback(channel, message)` for every message the bot posts via REST, DMs
        included (their channel has `guild` None and `recipient` set)."""
        self._world.message_listeners.append(callback)

    # -- direct messages ------------------------------------------------------------------

    def dm_channel(self, user: UserState | MemberState) -> ChannelState | None:
        """The bot's DM channel with `user`, once the bot opened it (POST /users/@me/channels)."""
        return self._world.dm_channels.get(_user_of(user).id)

    def dms(self, user: UserState | MemberState) -> list[JSON]:
        """Messages the bot sent to `user` in their DM via REST, oldest first, like `messages`
        (interaction responses in the DM are in the `InteractionResult`, as for channels)."""
        channel = self.dm_channel(user)
        return [] if channel is None else self.messages(channel)

    async def wait_for_dms(
        self, user: UserState | MemberState, count: int = 1, timeout: float = 5.0
    ) -> list[JSON]:
        """Wait until the bot has sent `user` at least `count` DMs; return them all."""
        who = _user_of(user)
        await self._world.wait_until(
            lambda: len(self.dms(who)) >= count, timeout, f"{count} DM(s) to {who.username}"
        )
        return self.dms(who)

    def close_dms(self, user: UserState | MemberState) -> None:
        """`user` turns off DMs: the bot's posts to them fail with 403 50007 until `open_dms`."""
        _user_of(user).accepts_dms = False
        self._world.notify()

    def open_dms(self, user: UserState | MemberState) -> None:
        """`user` allows DMs again (the default)."""
        _user_of(user).accepts_dms = True
        self._world.notify()

    # -- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        method: str | None = "POST",
        path_regex: str = r"/channels/\d+/messages",
        status: int = 500,
        count: int = 1,
        code: int | None = None,
        retry_after: float = 1.0,
        global_: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status` (path is relative to /api/v10).

        403 defaults to code 50013 (pass 50001 for Missing Access), 404 to 10003; 429 carries
        `retry_after`, `Via` and X-RateLimit-* headers (X-RateLimit-Global for `global_`).
        """
        rule = FailRule(method, re.compile(path_regex), status, count, code, retry_after, global_)
        self._rest.fail_next(rule)

    async def drop_gateway(self, resumable: bool = True) -> None:
        """Close the bot's websocket: it resumes, or gets INVALID_SESSION and re-identifies."""
        await self._gateway.drop(resumable=resumable)

    # -- building the world ---------------------------------------------------------------

    def add_guild(
        self,
        name: str,
        channels: Iterable[str] = ("general",),
        *,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        bot_member: bool = True,
    ) -> GuildState:
        """A guild with the bot (its managed role gets `bot_permissions`) and every added user.

        With `bot_member=False` the bot is not in it (a server where members use the app only
        through their own install): the bot gets no gateway event about it and every REST
        call to its channels is refused (403 50001); interactions from it still arrive.
        """
        world = self._world
        guild = GuildState(world.snowflakes.next(), name, world.owner.id)
        guild.roles["@everyone"] = RoleState(guild.id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        if not bot_member:
            return self._add_guild_without_bot(guild, channels)
        bot_role = RoleState(
            world.snowflakes.next(),
            world.application_name,
            bot_permissions,
            position=1,
            managed=True,
            bot_id=world.bot_user.id,
        )
        guild.roles[bot_role.name] = bot_role
        guild.members[world.owner.id] = MemberState(world.owner, guild)
        guild.members[world.bot_user.id] = MemberState(world.bot_user, guild, [bot_role.id])
        world.guilds[guild.id] = guild
        for channel_name in channels:
            self._new_channel(guild, channel_name, GUILD_TEXT, None)
        for user_id, permissions in self._user_permissions.items():
            self._join(guild, world.users[user_id], [], permissions, announce=False)
        self._gateway.dispatch("GUILD_CREATE", self._gateway.guild_create(guild, joined=True))
        return guild

    def _add_guild_without_bot(self, guild: GuildState, channels: Iterable[str]) -> GuildState:
        world = self._world
        guild.members[world.owner.id] = MemberState(world.owner, guild)
        world.guilds_without_bot[guild.id] = guild
        for channel_name in channels:
            self._new_channel(guild, channel_name, GUILD_TEXT, None)
        for user_id, permissions in self._user_permissions.items():
            self._join(guild, world.users[user_id], [], permissions, announce=False)
        world.notify()
        return guild

    def _bot_in(self, guild: GuildState) -> bool:
        """Whether the bot is in `guild`, so that the gateway tells it what happens there."""
        return self._world.bot_user.id in guild.members

    # -- members who installed the app on their own account ---------------------------------

    def install_for_user(self, user: UserState | MemberState) -> None:
        """`user` adds the app to their account (a user install): its user-installable
        commands follow them into servers without the bot, DMs and group DMs."""
        _user_of(user).installed = True
        self._world.notify()

    def uninstall_for_user(self, user: UserState | MemberState) -> None:
        """`user` removes the app from their account (Authorized Apps)."""
        _user_of(user).installed = False
        self._world.notify()

    def dm_with_bot(self, user: UserState | MemberState) -> ChannelState:
        """`user`'s DM with the bot, as they open it from their side (the same channel the
        bot gets from POST /users/@me/channels)."""
        return self._world.open_dm(_user_of(user))

    def add_private_channel(self, *users: UserState | MemberState) -> ChannelState:
        """A DM between two users, or a group DM of three or more, without the bot: only a
        user-installed app can be used there, and the bot can neither read nor post to it
        over REST (404 10003: it is no channel the bot knows)."""
        people = list(dict.fromkeys(_user_of(u) for u in users))
        if len(people) < 2:
            raise ValueError("a private channel needs at least two users")
        kind = DM if len(people) == 2 else GROUP_DM
        name = ", ".join(u.username for u in people)
        return ChannelState(self._world.snowflakes.next(), None, name, kind, recipients=people)

    def add_role(
        self, guild: GuildState, name: str, *, permissions: int = 0, mentionable: bool = False
    ) -> RoleState:
        role = self._new_role(guild, name, permissions, mentionable)
        self._announce_role(guild, role)
        return role

    def delete_role(self, guild: GuildState, role: RoleState) -> None:
        """Delete a role as Discord does (GUILD_ROLE_DELETE): members lose it, channels lose
        its overwrites, and REST no longer lists it."""
        if role.id == guild.id or role.managed:
            raise ValueError("@everyone and a bot's managed role cannot be deleted")
        del guild.roles[role.name]
        for member in guild.members.values():
            member.role_ids = [r for r in member.role_ids if r != role.id]
        for channel in guild.channels.values():
            channel.overwrites = [o for o in channel.overwrites if (o.type, o.id) != (0, role.id)]
        self._gateway.dispatch(
            "GUILD_ROLE_DELETE", {"guild_id": str(guild.id), "role_id": str(role.id)}
        )
        self._world.notify()

    def add_channel(
        self, guild: GuildState, name: str, type: int = GUILD_TEXT, *, topic: str | None = None
    ) -> ChannelState:
        """A text (0) or announcement (5) channel."""
        if type not in (GUILD_TEXT, GUILD_ANNOUNCEMENT):
            raise ValueError(f"channel type {type} is not emulated (use 0 or 5)")
        channel = self._new_channel(guild, name, type, topic)
        if self._bot_in(guild):
            self._gateway.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def add_thread(self, channel: ChannelState, name: str) -> ChannelState:
        """A public thread under `channel`."""
        if channel.is_thread:
            raise ValueError("threads cannot contain threads")
        guild = channel.in_guild
        thread = ChannelState(
            self._world.snowflakes.next(), guild, name, PUBLIC_THREAD, parent=channel
        )
        guild.threads[name] = thread
        self._world.channels[thread.id] = thread
        if self._bot_in(guild):
            self._gateway.dispatch("THREAD_CREATE", {**thread.payload(), "newly_created": True})
        return thread

    def archive_thread(self, thread: ChannelState, archived: bool = True) -> None:
        """Archive a thread as Discord does after inactivity (THREAD_UPDATE; discord.py then
        drops it from its cache). GET /channels/{id} still returns it; a message the bot may
        post there re-opens it."""
        self._thread_update(thread, archived=archived)

    def lock_thread(self, thread: ChannelState, locked: bool = True) -> None:
        """Lock a thread (THREAD_UPDATE): only MANAGE_THREADS may post or re-open it then."""
        self._thread_update(thread, locked=locked)

    def _thread_update(
        self, thread: ChannelState, *, archived: bool | None = None, locked: bool | None = None
    ) -> None:
        if not thread.is_thread or thread.deleted:
            raise ValueError(f"#{thread.name} is not an existing thread")
        if archived is not None and archived != thread.archived:
            thread.archived = archived
            thread.archive_timestamp = iso_now()
        if locked is not None:
            thread.locked = locked
        self._gateway.dispatch("THREAD_UPDATE", thread.payload())
        self._world.notify()

    def add_user_message(
        self,
        channel: ChannelState,
        user: UserState,
        content: str = "",
        *,
        embeds: Iterable[JSON] = (),
    ) -> JSON:
        """A message `user` (not the bot) posts: it shows in the channel's history (GET) and
        re-opens an archived thread, but not in `messages()`.

        In a DM channel only its recipient can post; the bot gets it as a MESSAGE_CREATE
        without guild fields (with the DIRECT_MESSAGES intent), as from Discord.
        """
        if channel.deleted or (channel.is_thread and channel.archived and channel.locked):
            raise CommandUsageError(f"{user.username} cannot post in #{channel.name}")
        if channel.guild is None:
            if channel.recipient is not user:
                raise CommandUsageError(f"{user.username} is not in the DM {channel.name}")
            member = None
        else:
            member = self._member(channel.guild, user)
        world = self._world
        data: JSON = {
            "id": str(world.snowflakes.next()),
            "channel_id": str(channel.id),
            "author": user.payload(),
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "attachments": [],
            "embeds": [{"type": "rich", **e} for e in embeds],
            "reactions": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if channel.archived:
            channel.archived = False
            channel.archive_timestamp = iso_now()
            self._gateway.dispatch("THREAD_UPDATE", channel.payload())
        world.add_message(StoredMessage(data, channel, None))
        if channel.guild is None or member is None:
            self._gateway.dispatch("MESSAGE_CREATE", dict(data), intent=INTENT_DIRECT_MESSAGES)
            return copy.deepcopy(data)
        event = {**data, "guild_id": str(channel.guild.id), "member": member.payload()}
        del event["member"]["user"]
        self._gateway.dispatch("MESSAGE_CREATE", event, intent=INTENT_GUILD_MESSAGES)
        return copy.deepcopy(data)

    def delete_channel(self, channel: ChannelState) -> None:
        """Delete a channel (and its threads); REST calls to it then get 404 code 10003."""
        guild = channel.in_guild
        doomed = [channel, *(t for t in guild.threads.values() if t.parent is channel)]
        for gone in doomed:
            gone.deleted = True
            if gone.is_thread:
                del guild.threads[gone.name]
            else:
                del guild.channels[gone.name]
        event = "THREAD_DELETE" if channel.is_thread else "CHANNEL_DELETE"
        payload = channel.payload()
        if self._bot_in(guild):
            self._gateway.dispatch(event, payload)
        self._world.notify()

    def set_bot_channel_permissions(
        self, channel: ChannelState, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set (or clear, with allow=deny=0) the bot's member overwrite on a channel."""
        if channel.guild is None:
            raise ValueError("DM channels have no permission overwrites")
        if channel.is_thread:
            raise ValueError("threads take their permissions from the parent channel")
        self._overwrite(channel, 1, self._world.bot_user.id, allow, deny)

    def set_role_channel_permissions(
        self, channel: ChannelState, role: RoleState, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set (or clear) a role's overwrite on a channel; @everyone's is the guild's id."""
        if channel.guild is None or channel.is_thread:
            raise ValueError("only a guild's text channels have permission overwrites")
        self._overwrite(channel, 0, role.id, allow, deny)

    def _overwrite(
        self, channel: ChannelState, kind: int, target_id: int, allow: int, deny: int
    ) -> None:
        channel.overwrites = [o for o in channel.overwrites if (o.type, o.id) != (kind, target_id)]
        if allow or deny:
            channel.overwrites.append(Overwrite(target_id, kind, allow, deny))
        self._gateway.dispatch("CHANNEL_UPDATE", channel.payload())

    def add_user(
        self,
        username: str,
        *,
        manage_guild: bool = False,
        permissions: int = 0,
        in_guilds: bool = True,
    ) -> UserState:
        """A user who is a member of every guild, now and later (moderators get MANAGE_GUILD).

        With `in_guilds=False` the user exists on Discord but is in no guild (until
        `add_member`): the bot can open a DM with them but not send to it (403 50007).
        """
        world = self._world
        user = UserState(world.snowflakes.next(), username)
        world.users[user.id] = user
        if not in_guilds:
            return user
        granted = permissions | (MANAGE_GUILD if manage_guild else 0)
        self._user_permissions[user.id] = granted
        for guild in world.guilds.values():
            self._join(guild, user, [], granted)
        for guild in world.guilds_without_bot.values():
            self._join(guild, user, [], granted)
        return user

    def add_member(
        self,
        guild: GuildState,
        user: UserState,
        *,
        roles: Iterable[RoleState] = (),
        permissions: int = 0,
    ) -> MemberState:
        """Make `user` a member of `guild` with exactly these roles (+ one for `permissions`)."""
        return self._join(guild, user, list(roles), permissions)

    def _join(
        self,
        guild: GuildState,
        user: UserState,
        roles: list[RoleState],
        permissions: int,
        *,
        announce: bool = True,
    ) -> MemberState:
        """Add or update a membership; `announce` dispatches it (not while building a guild,
        nor in a guild without the bot)."""
        announce = announce and self._bot_in(guild)
        if permissions:
            role = self._new_role(guild, f"{user.username} permissions", permissions, False)
            roles.append(role)
            if announce:
                self._announce_role(guild, role)
        existing = guild.members.get(user.id)
        member = existing or MemberState(user, guild)
        member.role_ids = [r.id for r in roles]
        guild.members[user.id] = member
        if announce:
            event = "GUILD_MEMBER_UPDATE" if existing else "GUILD_MEMBER_ADD"
            payload = {**member.payload(), "guild_id": str(guild.id)}
            self._gateway.dispatch(event, payload, intent=INTENT_GUILD_MEMBERS)
        return member

    def _new_role(
        self, guild: GuildState, name: str, permissions: int, mentionable: bool
    ) -> RoleState:
        position = max(r.position for r in guild.roles.values()) + 1
        role_id = self._world.snowflakes.next()
        role = RoleState(role_id, name, permissions, position=position, mentionable=mentionable)
        guild.roles[name] = role
        return role

    def _announce_role(self, guild: GuildState, role: RoleState) -> None:
        if not self._bot_in(guild):
            return
        self._gateway.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()}
        )

    def _new_channel(
        self, guild: GuildState, name: str, type: int, topic: str | None
    ) -> ChannelState:
        if name in guild.channels:
            raise ValueError(f"#{name} already exists in {guild.name!r}")
        channel = ChannelState(
            self._world.snowflakes.next(),
            guild,
            name,
            type,
            position=len(guild.channels),
            topic=topic,
        )
        guild.channels[name] = channel
        self._world.channels[channel.id] = channel
        return channel

    # -- acting as users ------------------------------------------------------------------

    async def run_command(
        self,
        guild: GuildState | None,
        name: str,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        user: UserState | MemberState,
        channel: ChannelState | None = None,
        timeout: float = 5.0,
        unchecked: bool = False,
    ) -> InteractionResult:
        """Invoke a registered slash command (`name` may be "pledge show"; groups: "admin reset").

        Returns once the bot answered: immediately for a message/update callback, or, after a
        defer, once it edited the original response or sent a followup. `unchecked` sends
        what Discord's client would refuse to (see `build_command_data`), to test the bot's
        own checks.

        Outside a server pass `guild=None` and the `channel`: the user's DM with the bot
        (`dm_with_bot`) or a private channel between users (`add_private_channel`). Where no
        install of the command reaches the user (see `bot.local.interactions`), it is refused
        as Discord's client hides it.
        """
        who, member, where = self._invoker(guild, user, channel)
        path = name.split() + (subcommand.split() if subcommand else [])
        data, full_name, owners = build_command_data(
            self._world, where, who, member, path, options or {}, unchecked=unchecked
        )
        record = await self._send(2, full_name, where, who, member, data, timeout, owners=owners)
        await self._settle(record, timeout)
        return InteractionResult(self._world, record)

    async def autocomplete(
        self,
        guild: GuildState | None,
        name: str,
        subcommand: str | None = None,
        *,
        focused: str,
        value: str,
        user: UserState | MemberState,
        options: Mapping[str, Any] | None = None,
        channel: ChannelState | None = None,
        timeout: float = 5.0,
    ) -> list[JSON]:
        """Type `value` into option `focused`; return the choices the bot suggested."""
        who, member, where = self._invoker(guild, user, channel)
        path = name.split() + (subcommand.split() if subcommand else [])
        typed = {**(options or {}), focused: value}
        data, full_name, owners = build_command_data(
            self._world, where, who, member, path, typed, focused=focused
        )
        record = await self._send(4, full_name, where, who, member, data, timeout, owners=owners)
        await self._settle(record, timeout)
        return copy.deepcopy(record.choices or [])

    async def click_button(
        self,
        message: JSON | int | str,
        custom_id: str | None = None,
        *,
        label: str | None = None,
        user: UserState | MemberState,
        guild: GuildState | None = None,
        timeout: float = 5.0,
    ) -> InteractionResult:
        """Click a button on a message the bot sent (its dict, or its id as int or str).

        Name the button by `custom_id`, or by `label` for views whose ids discord.py generated.
        On a message in a DM only its recipient can click; the bot gets the interaction as
        Discord sends it from the DM with the bot (`user`, no guild, context 1).
        """
        stored = self._stored(message)
        channel = stored.channel
        if guild is not None and guild is not channel.guild:
            raise CommandUsageError(f"message {stored.id} is not in {guild.name!r}")
        clicker = _user_of(user)
        if channel.guild is None:
            if channel.recipient is not clicker and clicker not in channel.recipients:
                raise CommandUsageError(
                    f"message {stored.id} is in the DM {channel.name}: "
                    f"{clicker.username} cannot see it"
                )
            member = None
        else:
            member = self._member(channel.guild, user)
        if stored.ephemeral and stored.interaction_id is not None:
            owner = self._world.interactions[stored.interaction_id].user
            if owner is not clicker:
                raise CommandUsageError("only the user who got an ephemeral message can click it")
        wanted = ("custom_id", custom_id) if label is None else ("label", label)
        button = _find_button(stored.data["components"], *wanted)
        if button is None:
            raise CommandUsageError(
                f"message {stored.id} has no button with {wanted[0]} {wanted[1]!r}"
            )
        if button.get("disabled"):
            raise CommandUsageError(f"button {wanted[1]!r} is disabled")
        data: JSON = {"custom_id": button["custom_id"], "component_type": 2}
        if "id" in button:
            data["id"] = button["id"]
        name = f"button {wanted[1]}"
        # a button on an interaction's answer reaches the app through the same installs
        source = self._world.interactions.get(stored.interaction_id or 0)
        owners = source.owners if source is not None else None
        record = await self._send(
            3, name, channel, clicker, member, data, timeout, stored.id, owners=owners
        )
        await self._settle(record, timeout)
        return InteractionResult(self._world, record)

    async def submit_modal(
        self, opened: InteractionResult, values: Mapping[str, str], *, timeout: float = 5.0
    ) -> InteractionResult:
        """Fill in and submit the modal the bot opened in answer to `opened` (callback 9), as
        the user it opened for: a MODAL_SUBMIT interaction (type 5) with each text input's
        value (by custom id; unnamed ones empty). A modal opened from a button carries that
        button's message, which the bot may then update (callback 7). Refused where Discord's
        client refuses to submit: a required input empty, a value outside its lengths."""
        record = self._world.interactions.get(opened.interaction_id)
        modal = opened.modal
        if record is None or modal is None:
            raise CommandUsageError("that interaction opened no modal")
        components: list[JSON] = []
        named: set[str] = set()
        for top in modal.get("components") or []:
            inner = top.get("components") or ([top["component"]] if "component" in top else [])
            answered: list[JSON] = []
            for text_input in (c for c in inner if c.get("type") == 4):
                custom_id = text_input["custom_id"]
                named.add(custom_id)
                value = values.get(custom_id, "")
                required = text_input.get("required", True)
                low = max(int(text_input.get("min_length") or 0), 1 if required else 0)
                high = int(text_input.get("max_length") or 4000)
                if (value or required) and not low <= len(value) <= high:
                    raise CommandUsageError(
                        f"modal input {custom_id!r} takes {low} to {high} characters"
                    )
                answered.append({"type": 4, "custom_id": custom_id, "value": value})
            if top.get("type") == 18:
                components += [{"type": 18, "component": a} for a in answered]
            else:
                components.append({"type": 1, "components": answered})
        if unknown := set(values) - named:
            raise CommandUsageError(f"the modal has no input {sorted(unknown)}")
        data: JSON = {"custom_id": modal["custom_id"], "components": components}
        sent = await self._send(
            5,
            f"modal {modal.get('title', '')}",
            record.channel,
            record.user,
            record.member,
            data,
            timeout,
            record.component_message_id,
            owners=record.owners,
        )
        await self._settle(sent, timeout)
        return InteractionResult(self._world, sent)

    def _member(self, guild: GuildState, user: UserState | MemberState) -> MemberState:
        user_id = user.user.id if isinstance(user, MemberState) else user.id
        member = guild.members.get(user_id)
        if member is None:
            raise CommandUsageError(
                f"user {user_id} is not a member of {guild.name!r} (use add_member)"
            )
        return member

    def _invoker(
        self,
        guild: GuildState | None,
        user: UserState | MemberState,
        channel: ChannelState | None,
    ) -> tuple[UserState, MemberState | None, ChannelState]:
        """Who types a command where: a member in a guild's channel, or a user in a DM with
        the bot or a private channel they are in."""
        if guild is not None:
            member = self._member(guild, user)
            return member.user, member, self._command_channel(guild, member, channel)
        who = _user_of(user)
        if channel is None or channel.guild is not None:
            raise CommandUsageError("outside a server, pass the DM or private channel")
        if channel.recipient is not who and who not in channel.recipients:
            raise CommandUsageError(f"{who.username} is not in the DM {channel.name}")
        return who, None, channel

    def _command_channel(
        self, guild: GuildState, member: MemberState, channel: ChannelState | None
    ) -> ChannelState:
        where = channel or next(iter(guild.channels.values()), None)
        if where is None or where.deleted or where.guild is not guild:
            raise CommandUsageError(f"no usable channel in {guild.name!r} to run the command in")
        perms = guild.channel_permissions(member, where)
        needed = VIEW_CHANNEL | USE_APPLICATION_COMMANDS
        if perms & needed != needed:
            raise CommandUsageError(f"{member.user.username} cannot use commands in #{where.name}")
        return where

    def _stored(self, message: JSON | int | str) -> StoredMessage:
        message_id = int(message["id"]) if isinstance(message, dict) else int(message)
        stored = self._world.messages.get(message_id)
        if stored is None:
            raise CommandUsageError(f"message {message_id} does not exist (never sent, or deleted)")
        return stored

    async def _send(
        self,
        kind: int,
        name: str,
        channel: ChannelState,
        user: UserState,
        member: MemberState | None,
        data: JSON,
        timeout: float,
        component_message_id: int | None = None,
        *,
        owners: JSON | None = None,
    ) -> InteractionRecord:
        world = self._world
        await world.wait_until(self._gateway.connected.is_set, timeout, "the bot to be connected")
        record_id, token = world.snowflakes.next(), world.new_token()
        message = (
            None if component_message_id is None else world.messages[component_message_id].data
        )
        if owners is None:
            owners = installs_at(world, channel, user)
        payload = interaction_payload(
            world, record_id, token, kind, channel, user, member, data, message, owners
        )
        record = InteractionRecord(
            record_id,
            token,
            kind,
            name,
            channel,
            user,
            member,
            time.perf_counter(),
            component_message_id,
            payload=payload,
            public_allowed=public_answers_allowed(owners, channel, member),
        )
        world.interactions[record_id] = record
        world.interaction_tokens[token] = record
        self._gateway.dispatch("INTERACTION_CREATE", payload, intent=None)
        return record

    async def _settle(self, record: InteractionRecord, timeout: float) -> None:
        try:
            await self._world.wait_until(
                lambda: record.settled, timeout, f"a response to /{record.name}"
            )
        except TimeoutError:
            if record.callback_type is None:
                problem = "the bot never acknowledged"
            else:
                problem = f"after callback type {record.callback_type}, the bot never completed"
            raise TimeoutError(f"{problem} /{record.name} within {timeout} s") from None


def _user_of(user: UserState | MemberState) -> UserState:
    return user.user if isinstance(user, MemberState) else user


def _find_button(components: list[JSON], key: str, value: str | None) -> JSON | None:
    """The first non-link button whose `key` equals `value`, searching nested components."""
    for component in components:
        if component.get("type") == 2 and "custom_id" in component and component.get(key) == value:
            return component
        found = _find_button(component.get("components") or [], key, value)
        if found is not None:
            return found
    return None
