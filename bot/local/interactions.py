"""Building INTERACTION_CREATE payloads the way Discord's client would, from registered schemas.

Options are typed from the command the bot registered (not from what the test passes), so a
test can only send what a real user could: unknown commands, unknown options, wrong types,
missing required options or values outside `choices` are refused before anything is sent.

Where a command can be used is Discord's too (Application Commands, Contexts; Receiving and
Responding, Authorizing Integration Owners Object): a global command is offered where its
`contexts` include the place (0 a server, 1 the DM with the bot, 2 a DM or group DM between
users) and one of its `integration_types` reaches there: the server install (0) where the
bot is in the server, or in its DM with someone who shares a server with it; the user's own
install (1) anywhere, if they installed the app. A guild command exists only in its guild.
Each key of `authorizing_integration_owners` is one install that reached the invocation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bot.local.limits import UPLOAD_LIMIT_BYTES
from bot.local.models import (
    ADMINISTRATOR,
    FLAG_EPHEMERAL,
    JSON,
    SEND_MESSAGES,
    USE_EXTERNAL_APPS,
    ChannelState,
    GuildState,
    InteractionRecord,
    MemberState,
    RoleState,
    UserState,
    World,
)

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
# Interaction context types and application integration types.
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2
GUILD_INSTALL, USER_INSTALL = 0, 1
PLACES = {GUILD: "a server", BOT_DM: "the DM with the bot", PRIVATE_CHANNEL: "a private channel"}
INSTALL_NAMES = {GUILD_INSTALL: "server installs", USER_INSTALL: "user installs"}
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 3, 4, 5, 6, 7, 8, 9, 10
OptionValue = str | int | float | bool | UserState | MemberState | RoleState | ChannelState


class CommandUsageError(ValueError):
    """Raised instead of sending an interaction Discord's client would never produce."""


def find_command(world: World, guild: GuildState | None, name: str) -> JSON:
    """A registered chat-input command, guild-specific first, then global (only global
    outside a server: guild commands are not available in DMs)."""
    scoped = world.guild_commands.get(guild.id, []) if guild is not None else []
    for command in (*scoped, *world.global_commands):
        if command["name"] == name and command.get("type", 1) == 1:
            return command
    registered = sorted(c["name"] for c in (*scoped, *world.global_commands))
    raise CommandUsageError(f"/{name} is not registered (registered: {registered or 'none'})")


def context_of(channel: ChannelState) -> int:
    """The interaction context of a place: a server, the DM with the bot, or a private
    channel between users."""
    if channel.guild is not None:
        return GUILD
    return BOT_DM if channel.recipient is not None else PRIVATE_CHANNEL


def installs_at(world: World, channel: ChannelState, user: UserState) -> JSON:
    """Which installs of the app reach `user` in `channel`, as owner keys and values: the
    server install where the bot is in the server ("0": its id) or in the bot's DM with
    someone sharing a server with it ("0": "0"); the user's own install anywhere ("1")."""
    owners: JSON = {}
    guild = channel.guild
    if guild is not None and world.bot_user.id in guild.members:
        owners[str(GUILD_INSTALL)] = str(guild.id)
    elif channel.recipient is not None and world.shares_guild(user):
        owners[str(GUILD_INSTALL)] = "0"
    if user.installed:
        owners[str(USER_INSTALL)] = str(user.id)
    return owners


def command_owners(world: World, command: JSON, channel: ChannelState, user: UserState) -> JSON:
    """`authorizing_integration_owners` for `command` used here by `user`; refused (as
    Discord's client hides the command) where no install of it reaches."""
    name = command["name"]
    if "guild_id" in command:  # guild commands ignore contexts and integration types
        guild = channel.guild
        if guild is None or str(guild.id) != command["guild_id"]:
            raise CommandUsageError(f"/{name} is a command of another server")
        return {str(GUILD_INSTALL): command["guild_id"]}
    context = context_of(channel)
    contexts = command.get("contexts")
    if contexts is not None and context not in contexts:
        raise CommandUsageError(
            f"/{name} is not available in {PLACES[context]} (contexts={contexts})"
        )
    types = command.get("integration_types") or [GUILD_INSTALL]
    reach = installs_at(world, channel, user)
    owners = {k: v for k, v in reach.items() if int(k) in types}
    if not owners:
        reasons = []
        if str(GUILD_INSTALL) not in reach:
            shared = "no server is shared with the bot"
            reasons.append(shared if context == BOT_DM else "the bot is not here")
        if not user.installed:
            reasons.append(f"{user.username} has not installed the app on their account")
        if reach:
            left_out = " and ".join(INSTALL_NAMES[int(k)] for k in reach)
            reasons.append(f"its integration_types={types} leave out {left_out}")
        why = ", and ".join(reasons)
        raise CommandUsageError(f"/{name} is not available to {user.username} here: {why}")
    return owners


def public_answers_allowed(owners: JSON, channel: ChannelState, member: MemberState | None) -> bool:
    """In a server the app reaches only through the member's own install, Discord shows its
    answers to everyone only if the member may send messages there and use external apps
    (Permissions, USE_EXTERNAL_APPS); otherwise every answer is ephemeral."""
    if channel.guild is None or member is None or set(owners) != {str(USER_INSTALL)}:
        return True
    needed = SEND_MESSAGES | USE_EXTERNAL_APPS
    return channel.guild.channel_permissions(member, channel) & needed == needed


def check_invocable(command: JSON, guild: GuildState, member: MemberState) -> None:
    """Discord hides commands needing `default_member_permissions` the member lacks (where the
    server install offers them; their contexts are `command_owners`' to check)."""
    required = command.get("default_member_permissions")
    if required is not None:
        needed = int(required)
        perms = guild.base_permissions(member)
        if not perms & ADMINISTRATOR and (needed == 0 or perms & needed != needed):
            raise CommandUsageError(
                f"{member.user.username} cannot see /{command['name']}: "
                f"it needs permissions {needed:#x} (default_member_permissions)"
            )


def _leaf_schema(command: JSON, path: list[str]) -> tuple[list[JSON], list[JSON]]:
    """Walk `path` (subcommand group/subcommand names); return (chain of nodes, leaf options)."""
    chain: list[JSON] = []
    options: list[JSON] = command.get("options") or []
    for part in path:
        node = next(
            (
                o
                for o in options
                if o["name"] == part and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if node is None:
            raise CommandUsageError(f"/{command['name']} has no subcommand {part!r} at that level")
        chain.append(node)
        options = node.get("options") or []
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
        names = [o["name"] for o in options]
        raise CommandUsageError(f"/{command['name']} needs a subcommand: one of {names}")
    return chain, options


def _check_choice(schema: JSON, value: Any) -> None:
    choices = schema.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        allowed = [c["value"] for c in choices]
        raise CommandUsageError(
            f"option {schema['name']!r} must be one of {allowed}, not {value!r}"
        )


def _check_range(schema: JSON, value: Any) -> None:
    low, high = schema.get("min_value"), schema.get("max_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise CommandUsageError(f"option {schema['name']!r} must be within [{low}, {high}]")
    if isinstance(value, str):
        low_len, high_len = schema.get("min_length", 0), schema.get("max_length", 6000)
        if not low_len <= len(value) <= high_len:
            raise CommandUsageError(
                f"option {schema['name']!r} must be {low_len}..{high_len} characters long"
            )


class _Resolver:
    """Collects the `resolved` block for user, role and channel options."""

    def __init__(
        self,
        world: World,
        guild: GuildState | None,
        member: MemberState | None,
        *,
        unchecked: bool = False,
    ) -> None:
        self.world = world
        self.guild = guild
        self.member = member
        self.unchecked = unchecked
        self.data: dict[str, dict[str, JSON]] = {}

    def user(self, value: UserState | MemberState) -> str:
        user = value.user if isinstance(value, MemberState) else value
        self.data.setdefault("users", {})[str(user.id)] = user.payload()
        member = None if self.guild is None else self.guild.members.get(user.id)
        if member is not None and self.guild is not None:
            perms = self.guild.base_permissions(member)
            payload = member.payload(permissions=perms, with_user=False)
            self.data.setdefault("members", {})[str(user.id)] = payload
        return str(user.id)

    def role(self, role: RoleState) -> str:
        guild = self.guild
        if (guild is None or guild.role_by_id(role.id) is not role) and not self.unchecked:
            where = "this DM" if guild is None else f"guild {guild.name!r}"
            raise CommandUsageError(f"role {role.name!r} is not in {where}")
        self.data.setdefault("roles", {})[str(role.id)] = role.payload()
        return str(role.id)

    def channel(self, channel: ChannelState, allowed_types: list[int] | None) -> str:
        guild = self.guild
        if (guild is None or channel.guild is not guild or channel.deleted) and not self.unchecked:
            where = "this DM" if guild is None else repr(guild.name)
            raise CommandUsageError(f"#{channel.name} is not a channel of {where}")
        if allowed_types and channel.type not in allowed_types:
            raise CommandUsageError(f"#{channel.name} (type {channel.type}) not in {allowed_types}")
        payload = channel.payload()
        if guild is not None and self.member is not None:
            payload["permissions"] = str(guild.channel_permissions(self.member, channel))
        self.data.setdefault("channels", {})[str(channel.id)] = payload
        return str(channel.id)


def _option_value(schema: JSON, value: Any, resolver: _Resolver, focused: bool) -> Any:
    """Convert a Python value into the wire value Discord would send for this option type."""
    kind = schema["type"]
    name = schema["name"]

    def wrong() -> CommandUsageError:
        return CommandUsageError(f"option {name!r} (type {kind}) cannot take {value!r}")

    if focused:
        if not isinstance(value, str):
            raise CommandUsageError(f"the focused option {name!r} takes the typed text (a str)")
        return value
    if kind == STRING:
        if not isinstance(value, str):
            raise wrong()
        _check_choice(schema, value)
        _check_range(schema, value)
        return value
    if kind in (INTEGER, NUMBER):
        numeric = (int,) if kind == INTEGER else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            raise wrong()
        _check_choice(schema, value)
        _check_range(schema, value)
        return value
    if kind == BOOLEAN:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind in (USER, MENTIONABLE) and isinstance(value, UserState | MemberState):
        return resolver.user(value)
    if kind in (ROLE, MENTIONABLE) and isinstance(value, RoleState):
        return resolver.role(value)
    if kind == CHANNEL and isinstance(value, ChannelState):
        return resolver.channel(value, schema.get("channel_types"))
    raise wrong()


def build_command_data(
    world: World,
    channel: ChannelState,
    user: UserState,
    member: MemberState | None,
    path: list[str],
    options: Mapping[str, Any],
    *,
    focused: str | None = None,
    unchecked: bool = False,
) -> tuple[JSON, str, JSON]:
    """The `data` of a type 2 (or, with `focused`, type 4) interaction, the full name and the
    `authorizing_integration_owners`, for `user` in `channel` (`member` in a server).

    `unchecked` skips what Discord's client enforces but a server cannot rely on: who may
    see the command (a server's own command-permission overrides can show it to anyone),
    where it is offered, and whether a channel or role belongs to this guild (a modified
    client).
    """
    if not path:
        raise CommandUsageError("no command name given")
    guild = channel.guild
    command = find_command(world, guild, path[0])
    if unchecked:
        owners = installs_at(world, channel, user)
    else:
        owners = command_owners(world, command, channel, user)
        if guild is not None and member is not None and str(GUILD_INSTALL) in owners:
            check_invocable(command, guild, member)
    chain, schemas = _leaf_schema(command, path[1:])
    by_name = {s["name"]: s for s in schemas}
    unknown = sorted(set(options) - set(by_name))
    if unknown:
        raise CommandUsageError(
            f"/{' '.join(path)} has no option(s) {unknown}; it has {sorted(by_name)}"
        )
    if focused is not None:
        schema = by_name.get(focused)
        if schema is None or not schema.get("autocomplete"):
            raise CommandUsageError(f"option {focused!r} of /{' '.join(path)} has no autocomplete")
    else:
        missing = [s["name"] for s in schemas if s.get("required") and s["name"] not in options]
        if missing:
            raise CommandUsageError(f"/{' '.join(path)} is missing required option(s) {missing}")
    resolver = _Resolver(world, guild, member, unchecked=unchecked)
    leaf: list[JSON] = []
    for schema in schemas:
        if schema["name"] not in options:
            continue
        is_focused = schema["name"] == focused
        value = _option_value(schema, options[schema["name"]], resolver, is_focused)
        entry: JSON = {"name": schema["name"], "type": schema["type"], "value": value}
        if is_focused:
            entry["focused"] = True
        leaf.append(entry)
    for node in reversed(chain):
        leaf = [{"name": node["name"], "type": node["type"], "options": leaf}]
    data: JSON = {"id": command["id"], "name": command["name"], "type": 1, "options": leaf}
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    if resolver.data:
        data["resolved"] = resolver.data
    return data, " ".join(path), owners


def interaction_payload(
    world: World,
    record_id: int,
    token: str,
    kind: int,
    channel: ChannelState,
    user: UserState,
    member: MemberState | None,
    data: JSON,
    message: JSON | None = None,
    owners: JSON | None = None,
) -> JSON:
    """A complete INTERACTION_CREATE body with every field discord.py 2.7 reads.

    In a guild the invoker comes as `member` (with permissions), with the partial `guild`;
    outside one as `user`, with no guild fields: context 1 (BOT_DM) in the DM with the bot,
    2 (PRIVATE_CHANNEL) in one between users. `owners` (the installs that reached it) is
    worked out from the place when not given; `app_permissions` is the bot's where it is,
    else what Discord reports for an app without its bot there.
    """
    channel_payload = channel.payload()
    if owners is None:
        owners = installs_at(world, channel, user)
    payload: JSON = {
        "id": str(record_id),
        "application_id": str(world.application_id),
        "type": kind,
        "data": data,
        "channel_id": str(channel.id),
        "channel": channel_payload,
        "token": token,
        "version": 1,
        "app_permissions": str(world.app_permissions(channel)),
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": owners,
        "context": context_of(channel),
        "attachment_size_limit": UPLOAD_LIMIT_BYTES,
    }
    guild = channel.guild
    if guild is None:
        payload["user"] = user.payload()
    else:
        if member is None:
            raise CommandUsageError(f"{user.username} is not a member of {guild.name!r}")
        permissions = guild.channel_permissions(member, channel)
        channel_payload["permissions"] = str(permissions)
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": "en-US", "features": []},
            member=member.payload(permissions=permissions),
            guild_locale="en-US",
        )
    if message is not None:
        payload["message"] = message
    return payload


class InteractionResult:
    """What happened to one interaction; `message` and `followups` always show the latest state."""

    def __init__(self, world: World, record: InteractionRecord) -> None:
        self._world = world
        self._record = record

    def __repr__(self) -> str:
        return (
            f"<InteractionResult /{self._record.name} callback_type={self.callback_type} "
            f"ephemeral={self.ephemeral} content={(self.message or {}).get('content')!r}>"
        )

    @property
    def interaction_id(self) -> int:
        return self._record.id

    @property
    def callback_type(self) -> int | None:
        return self._record.callback_type

    @property
    def latency(self) -> float | None:
        """Seconds from sending INTERACTION_CREATE to receiving the callback POST."""
        if self._record.callback_at is None:
            return None
        return self._record.callback_at - self._record.sent_at

    @property
    def message(self) -> JSON | None:
        """The visible response: the reply (4/5) or the component's message (6/7)."""
        stored = self._world.messages.get(self._record.original_id or 0)
        return None if stored is None else copy.deepcopy(stored.data)

    @property
    def ephemeral(self) -> bool:
        message = self.message
        return message is not None and bool(message["flags"] & FLAG_EPHEMERAL)

    @property
    def followups(self) -> list[JSON]:
        found = (self._world.messages.get(i) for i in self._record.followup_ids)
        return [copy.deepcopy(m.data) for m in found if m is not None]

    @property
    def modal(self) -> JSON | None:
        """The modal the bot opened (callback type 9), if any."""
        return self._record.modal

    @property
    def payload(self) -> JSON:
        """The INTERACTION_CREATE body the bot got (`context`, `authorizing_integration_owners`,
        `app_permissions`...)."""
        return copy.deepcopy(self._record.payload)
