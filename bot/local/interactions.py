"""Building INTERACTION_CREATE payloads the way Discord's client would, from registered schemas.

Options are typed from the command the bot registered (not from what the test passes), so a
test can only send what a real user could: unknown commands, unknown options, wrong types,
missing required options or values outside `choices` are refused before anything is sent.
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
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 3, 4, 5, 6, 7, 8, 9, 10
OptionValue = str | int | float | bool | UserState | MemberState | RoleState | ChannelState


class CommandUsageError(ValueError):
    """Raised instead of sending an interaction Discord's client would never produce."""


def find_command(world: World, guild: GuildState, name: str) -> JSON:
    """A registered chat-input command, guild-specific first, then global."""
    for command in (*world.commands_for(guild.id), *world.global_commands):
        if command["name"] == name and command.get("type", 1) == 1:
            return command
    registered = sorted(c["name"] for c in (*world.commands_for(guild.id), *world.global_commands))
    raise CommandUsageError(f"/{name} is not registered (registered: {registered or 'none'})")


def check_invocable(command: JSON, guild: GuildState, member: MemberState) -> None:
    """Discord hides commands outside their contexts or needing `default_member_permissions`."""
    contexts = command.get("contexts")
    if contexts is not None and 0 not in contexts:
        raise CommandUsageError(
            f"/{command['name']} is not available in guilds (contexts={contexts})"
        )
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
        self, world: World, guild: GuildState, member: MemberState, *, unchecked: bool = False
    ) -> None:
        self.world = world
        self.guild = guild
        self.member = member
        self.unchecked = unchecked
        self.data: dict[str, dict[str, JSON]] = {}

    def user(self, value: UserState | MemberState) -> str:
        user = value.user if isinstance(value, MemberState) else value
        self.data.setdefault("users", {})[str(user.id)] = user.payload()
        member = self.guild.members.get(user.id)
        if member is not None:
            perms = self.guild.base_permissions(member)
            payload = member.payload(permissions=perms, with_user=False)
            self.data.setdefault("members", {})[str(user.id)] = payload
        return str(user.id)

    def role(self, role: RoleState) -> str:
        if self.guild.role_by_id(role.id) is not role and not self.unchecked:
            raise CommandUsageError(f"role {role.name!r} is not in guild {self.guild.name!r}")
        self.data.setdefault("roles", {})[str(role.id)] = role.payload()
        return str(role.id)

    def channel(self, channel: ChannelState, allowed_types: list[int] | None) -> str:
        if (channel.guild is not self.guild or channel.deleted) and not self.unchecked:
            raise CommandUsageError(f"#{channel.name} is not a channel of {self.guild.name!r}")
        if allowed_types and channel.type not in allowed_types:
            raise CommandUsageError(f"#{channel.name} (type {channel.type}) not in {allowed_types}")
        payload = channel.payload()
        payload["permissions"] = str(self.guild.channel_permissions(self.member, channel))
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
    guild: GuildState,
    member: MemberState,
    path: list[str],
    options: Mapping[str, Any],
    *,
    focused: str | None = None,
    unchecked: bool = False,
) -> tuple[JSON, str]:
    """The `data` of a type 2 (or, with `focused`, type 4) interaction and the full name.

    `unchecked` skips what Discord's client enforces but a server cannot rely on: who may
    see the command (a server's own command-permission overrides can show it to anyone)
    and whether a channel or role belongs to this guild (a modified client).
    """
    if not path:
        raise CommandUsageError("no command name given")
    command = find_command(world, guild, path[0])
    if not unchecked:
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
    return data, " ".join(path)


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
) -> JSON:
    """A complete INTERACTION_CREATE body with every field discord.py 2.7 reads.

    In a guild the invoker comes as `member` (with permissions); in the DM with the bot as
    `user`, with no guild fields, context 1 (BOT_DM), the "0" owner and the DM's
    `app_permissions`, as Discord sends it.
    """
    channel_payload = channel.payload()
    payload: JSON = {
        "id": str(record_id),
        "application_id": str(world.application_id),
        "type": kind,
        "data": data,
        "channel_id": str(channel.id),
        "channel": channel_payload,
        "token": token,
        "version": 1,
        "app_permissions": str(world.bot_permissions(channel)),
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": channel.integration_owners(),
        "context": 0,
        "attachment_size_limit": UPLOAD_LIMIT_BYTES,
    }
    guild = channel.guild
    if guild is None:
        payload.update(user=user.payload(), context=1)
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
