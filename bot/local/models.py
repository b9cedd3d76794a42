"""State of the local Discord: users, guilds, channels, roles, messages and interactions.

Everything here is plain data plus the JSON payloads Discord would send for it, so the REST
API, the gateway and the test-facing facade all describe the same world the same way.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
# Lets a member's own (user-installed) apps answer publicly in a server they are not in.
USE_EXTERNAL_APPS = 1 << 50
# Same value as discord.Permissions.all(): what owners and administrators get.
ALL_PERMISSIONS = 0x1F7FFFFFFFFFFF

DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
    | USE_EXTERNAL_APPS
)
# What a typical invite link grants the bot's managed role.
DEFAULT_BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
)

# Channel types.
GUILD_TEXT = 0
DM = 1
GROUP_DM = 3
GUILD_ANNOUNCEMENT = 5
PUBLIC_THREAD = 11
THREAD_TYPES = frozenset({10, 11, 12})

# What Discord reports as `app_permissions` in the DM with the app's bot user (Receiving and
# Responding, Interaction object: ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE for (G)DMs,
# plus USE_EXTERNAL_EMOJIS in the bot's own DMs). Nothing else about DMs is permission-based.
DM_APP_PERMISSIONS = ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS
# ... and in a (group) DM between users, where only a user-installed app can be used.
PRIVATE_APP_PERMISSIONS = ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE
# An app without its bot in a server: the channel's @everyone permissions plus these two
# ("Calculated permissions in interaction payloads", Discord's change log, 2022).
ANSWER_PERMISSIONS = ATTACH_FILES | EMBED_LINKS

# Message flags.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12


def iso_now() -> str:
    """Discord-style ISO 8601 timestamp."""
    return datetime.now(UTC).isoformat()


class SnowflakeFactory:
    """Timestamp-based, strictly increasing ids, so `(id >> 22)` gives a real creation time.

    With `fixed_ms` every id comes from that one moment, so a world built in the same
    order gets the same ids every run (the console's demo server keeps its briefings).
    """

    def __init__(self, fixed_ms: int | None = None) -> None:
        self._fixed = fixed_ms
        self._last = 0

    def next(self) -> int:
        now_ms = self._fixed if self._fixed is not None else int(time.time() * 1000)
        self._last = max((now_ms - DISCORD_EPOCH_MS) << 22, self._last + 1)
        return self._last


@dataclass(eq=False)
class UserState:
    """A Discord user (the bot itself, or a human who runs commands).

    `accepts_dms` is the user's privacy switch: off, the bot's DMs are refused with 50007.
    `installed`: the user added the app to their own account (a user install), so its
    user-installable commands follow them into servers without the bot and into DMs.
    """

    id: int
    username: str
    bot: bool = False
    accepts_dms: bool = True
    installed: bool = False

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": None if self.bot else self.username,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(eq=False)
class RoleState:
    """A guild role; `@everyone` has the guild's id."""

    id: int
    name: str
    permissions: int
    position: int = 0
    mentionable: bool = False
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    """A channel permission overwrite (type 0 = role, 1 = member)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclass(eq=False)
class ChannelState:
    """A text/announcement channel, a thread (`parent` set), the bot's DM with a user (type 1:
    no guild, `recipient` set) or a private channel between users without the bot (a DM, type
    1, or a group DM, type 3: no guild, `recipients` set)."""

    id: int
    guild: GuildState | None = field(repr=False)
    name: str
    type: int
    position: int = 0
    topic: str | None = None
    parent: ChannelState | None = field(default=None, repr=False)
    overwrites: list[Overwrite] = field(default_factory=list, repr=False)
    message_ids: list[int] = field(default_factory=list, repr=False)
    # enforce_nonce: nonce -> (message id, time.monotonic() when it was posted)
    nonces: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)
    deleted: bool = False
    # threads only: thread_metadata
    archived: bool = False
    locked: bool = False
    archive_timestamp: str = field(default_factory=iso_now, repr=False)
    created_at: str = field(default_factory=iso_now, repr=False)
    # DMs only: the user the bot talks to
    recipient: UserState | None = field(default=None, repr=False)
    # private channels between users only: who is in it (the bot never is)
    recipients: list[UserState] = field(default_factory=list, repr=False)

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def in_guild(self) -> GuildState:
        """The guild of a guild channel (a DM has none: asking is a bug in the emulator)."""
        if self.guild is None:
            raise ValueError(f"channel {self.id} is a DM, not in a guild")
        return self.guild

    def payload(self) -> JSON:
        """The channel object as in GUILD_CREATE, CHANNEL_* events and GET /channels/{id}."""
        last_message_id = str(self.message_ids[-1]) if self.message_ids else None
        if self.guild is None and self.recipients:
            # A (group) DM between users, as an interaction from it shows it to the app.
            data: JSON = {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": last_message_id,
                "flags": 0,
                "recipients": [u.payload() for u in self.recipients],
            }
            if self.type == GROUP_DM:
                data.update(name=self.name, icon=None, owner_id=str(self.recipients[0].id))
            return data
        if self.guild is None:
            # A DM channel as POST /users/@me/channels and GET /channels/{id} return it.
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": last_message_id,
                "flags": 0,
                "recipients": [self.recipient.payload()],
            }
        data = {
            "id": str(self.id),
            "guild_id": str(self.guild.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "flags": 0,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": last_message_id,
        }
        if self.parent is not None:
            data.update(
                parent_id=str(self.parent.id),
                owner_id=str(self.guild.owner_id),
                message_count=len(self.message_ids),
                member_count=1,
                total_message_sent=len(self.message_ids),
                thread_metadata={
                    "archived": self.archived,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": self.archive_timestamp,
                    "locked": self.locked,
                    "create_timestamp": self.created_at,
                },
            )
        else:
            data.update(
                topic=self.topic,
                parent_id=None,
                permission_overwrites=[o.payload() for o in self.overwrites],
                default_auto_archive_duration=1440,
            )
        return data


@dataclass(eq=False)
class MemberState:
    """A user's membership of one guild."""

    user: UserState
    guild: GuildState = field(repr=False)
    role_ids: list[int] = field(default_factory=list)
    joined_at: str = field(default_factory=iso_now)

    def payload(self, *, permissions: int | None = None, with_user: bool = True) -> JSON:
        # Discord never lists @everyone (the role with the guild's id) in a member's roles.
        data: JSON = {
            "roles": [str(r) for r in self.role_ids if r != self.guild.id],
            "joined_at": self.joined_at,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "pending": False,
            "deaf": False,
            "mute": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class GuildState:
    """A guild with its channels (by name), threads (by name), roles (by name) and members."""

    id: int
    name: str
    owner_id: int
    channels: dict[str, ChannelState] = field(default_factory=dict)
    threads: dict[str, ChannelState] = field(default_factory=dict)
    roles: dict[str, RoleState] = field(default_factory=dict)
    members: dict[int, MemberState] = field(default_factory=dict, repr=False)

    @property
    def everyone(self) -> RoleState:
        return self.roles["@everyone"]

    def role_by_id(self, role_id: int) -> RoleState | None:
        return next((r for r in self.roles.values() if r.id == role_id), None)

    def base_permissions(self, member: MemberState) -> int:
        """Guild-wide permissions, exactly as Discord computes them."""
        if member.user.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role_id in member.role_ids:
            role = self.role_by_id(role_id)
            if role is not None:
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def channel_permissions(self, member: MemberState, channel: ChannelState) -> int:
        """Permissions in a channel after overwrites and Discord's implicit denials.

        Threads use their parent's overwrites.
        """
        perms = self.base_permissions(member)
        if perms == ALL_PERMISSIONS:
            return perms
        source = channel.parent or channel
        overwrites = {(o.type, o.id): o for o in source.overwrites}
        everyone = overwrites.get((0, self.id))
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            overwrite = overwrites.get((0, role_id))
            if overwrite is not None:
                allow |= overwrite.allow
                deny |= overwrite.deny
        perms = (perms & ~deny) | allow
        own = overwrites.get((1, member.user.id))
        if own is not None:
            perms = (perms & ~own.deny) | own.allow
        if not perms & VIEW_CHANNEL:
            return 0
        if not perms & SEND_MESSAGES:
            perms &= ~(SEND_TTS_MESSAGES | MENTION_EVERYONE | EMBED_LINKS | ATTACH_FILES)
        return perms

    def everyone_channel_permissions(self, channel: ChannelState) -> int:
        """What @everyone alone may do in `channel` (a member with no roles)."""
        nobody = MemberState(UserState(0, "@everyone"), self)
        return self.channel_permissions(nobody, channel)

    def create_payload(self, *, include_members: bool, bot_id: int) -> JSON:
        """The GUILD_CREATE payload discord.py builds its Guild, channels and `guild.me` from."""
        members = [
            m.payload() for m in self.members.values() if include_members or m.user.id == bot_id
        ]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [r.payload() for r in self.roles.values()],
            "channels": [c.payload() for c in self.channels.values()],
            # only active threads: archived ones come from REST (GET /channels/{id})
            "threads": [t.payload() for t in self.threads.values() if not t.archived],
            "members": members,
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": iso_now(),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }


@dataclass(frozen=True)
class StoredFile:
    """An uploaded file: its bytes and what its attachment object says (see `attachments`)."""

    id: int
    channel_id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None
    description: str | None = None
    title: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class StoredMessage:
    """A message the bot created, with what Discord keeps around it.

    `file_ids` are all its uploaded files, in order, including those an embed or component
    shows (which Discord leaves out of the message's `attachments`).
    """

    data: JSON
    channel: ChannelState
    allowed_mentions: JSON | None
    interaction_id: int | None = None
    file_ids: list[int] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def ephemeral(self) -> bool:
        return bool(self.data["flags"] & FLAG_EPHEMERAL)

    @property
    def author_id(self) -> int:
        return int(self.data["author"]["id"])


@dataclass(eq=False)
class InteractionRecord:
    """One INTERACTION_CREATE and everything the bot did in response."""

    id: int
    token: str
    type: int
    name: str
    channel: ChannelState
    user: UserState
    member: MemberState | None  # None in a DM
    sent_at: float
    component_message_id: int | None = None
    callback_type: int | None = None
    callback_at: float | None = None
    original_id: int | None = None
    loading: bool = False
    followup_ids: list[int] = field(default_factory=list)
    choices: list[JSON] | None = None
    modal: JSON | None = None
    settled: bool = False
    # the INTERACTION_CREATE body as sent (its `context`, `authorizing_integration_owners`)
    payload: JSON = field(default_factory=dict, repr=False)
    # False where only the user's own install answers and they may not have it answer
    # publicly (USE_EXTERNAL_APPS): Discord makes every answer ephemeral
    public_allowed: bool = True

    @property
    def owners(self) -> JSON:
        """The interaction's `authorizing_integration_owners`."""
        owners: JSON = self.payload.get("authorizing_integration_owners") or {}
        return owners

    @property
    def user_install_only(self) -> bool:
        """Only the user's own install reached it: the app is not in this server (or DM)."""
        return set(self.owners) == {"1"}


MessageListener = Callable[[ChannelState, JSON], None]


class World:
    """Everything the fake Discord knows; shared by the REST API, the gateway and the facade."""

    def __init__(self, token: str, application_name: str, fixed_ids_ms: int | None = None) -> None:
        self.token = token
        self.snowflakes = SnowflakeFactory(fixed_ids_ms)
        self.application_id = self.snowflakes.next()
        self.application_name = application_name
        self.bot_user = UserState(self.application_id, application_name, bot=True)
        self.owner = UserState(self.snowflakes.next(), "owner")
        self.users: dict[int, UserState] = {u.id: u for u in (self.bot_user, self.owner)}
        self.guilds: dict[int, GuildState] = {}
        # servers the bot is not in (members use the app there only through a user install):
        # no gateway events, no REST access; their channels refuse the bot with 403 50001
        self.guilds_without_bot: dict[int, GuildState] = {}
        self.channels: dict[int, ChannelState] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.global_commands: list[JSON] = []
        self.guild_commands: dict[int, list[JSON]] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interaction_tokens: dict[str, InteractionRecord] = {}
        self.dm_channels: dict[int, ChannelState] = {}  # by recipient id
        self.files: dict[int, StoredFile] = {}  # uploaded files by attachment id
        self.cdn_base = ""  # where attachment urls point: the emulator's own host, once started
        self.cdn_secret = secrets.token_bytes(32)  # signs attachment urls, as Discord's CDN does
        self.violations: list[str] = []
        self.unhandled: list[str] = []
        self.message_listeners: list[MessageListener] = []
        self._changed = asyncio.Event()

    def new_token(self) -> str:
        return "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)

    def violation(self, text: str) -> None:
        self.violations.append(text)
        self.notify()

    def notify(self) -> None:
        """Wake everything waiting in `wait_until`."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for `predicate` to hold, re-checking after every state change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                continue

    def bot_member(self, guild: GuildState) -> MemberState:
        return guild.members[self.bot_user.id]

    def bot_permissions(self, channel: ChannelState) -> int:
        """The bot's permissions in a channel; in a DM, what Discord reports there; none
        where the bot is not (a server without it, a private channel between users)."""
        if channel.guild is None:
            return DM_APP_PERMISSIONS if channel.recipient is not None else 0
        member = channel.guild.members.get(self.bot_user.id)
        if member is None:
            return 0
        return channel.guild.channel_permissions(member, channel)

    def app_permissions(self, channel: ChannelState) -> int:
        """An interaction's `app_permissions` here: the bot's own where it is; without it,
        what Discord reports (Receiving and Responding, Interaction object)."""
        guild = channel.guild
        if guild is None:
            return DM_APP_PERMISSIONS if channel.recipient is not None else PRIVATE_APP_PERMISSIONS
        if self.bot_user.id in guild.members:
            return self.bot_permissions(channel)
        return guild.everyone_channel_permissions(channel) | ANSWER_PERMISSIONS

    def open_dm(self, user: UserState) -> ChannelState:
        """The bot's DM channel with `user`: created once, the same channel ever after."""
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = ChannelState(
                self.snowflakes.next(), None, f"@{user.username}", DM, recipient=user
            )
            self.dm_channels[user.id] = channel
            self.channels[channel.id] = channel
            self.notify()
        return channel

    def shares_guild(self, user: UserState) -> bool:
        """Whether `user` is in a guild with the bot (Discord lets bots DM only such users)."""
        return any(
            user.id in g.members and self.bot_user.id in g.members for g in self.guilds.values()
        )

    def commands_for(self, guild_id: int | None) -> list[JSON]:
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, [])

    def add_message(self, message: StoredMessage) -> None:
        self.messages[message.id] = message
        if not message.ephemeral:
            message.channel.message_ids.append(message.id)
        if message.interaction_id is None and message.author_id == self.bot_user.id:
            for listener in self.message_listeners:
                listener(message.channel, message.data)
        self.notify()

    def remove_message(self, message: StoredMessage) -> None:
        del self.messages[message.id]
        for file_id in message.file_ids:
            self.files.pop(file_id, None)
        if message.id in message.channel.message_ids:
            message.channel.message_ids.remove(message.id)
        self.notify()
