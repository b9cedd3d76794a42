"""Writing messages into the world, shared by channel posts and interaction responses.

A message the bot posts in a channel, an interaction's original response and a followup are
one kind of message to Discord: the same limits, the same mention resolution, the same
attachment records and the same PATCH semantics. They are built here once, as functions of
the world, so the channel and interaction routes cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from bot.local.attachments import (
    Upload,
    attachment_payload,
    cdn_path,
    file_from_upload,
    resolve_components,
    resolve_embeds,
)
from bot.local.gateway import Gateway
from bot.local.limits import check_message
from bot.local.limits import is_empty_message as is_empty
from bot.local.models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    JSON,
    MENTION_EVERYONE,
    ChannelState,
    InteractionRecord,
    MemberState,
    StoredFile,
    StoredMessage,
    World,
    iso_now,
)
from bot.local.rest.base import ApiError

FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
MENTION = re.compile(r"<@([!&]?)(\d+)>")


def validate(payload: JSON, files: list[Upload], *, creating: bool) -> None:
    """Discord's limits on a message body; a new message must also show something."""
    errors = check_message(payload, len(files))
    if errors:
        raise ApiError.invalid_form(errors)
    if creating and is_empty(payload, len(files)):
        raise ApiError(400, 50006, "Cannot send an empty message", violation="empty message")


def mentions(world: World, channel: ChannelState, content: str, allowed: JSON | None) -> JSON:
    """Who a message really pings, from its content and `allowed_mentions` (as Discord does)."""
    parse = None if allowed is None else set(allowed.get("parse") or [])

    def permitted(kind: str, raw: str) -> bool:
        listed = {str(x) for x in (allowed or {}).get(kind) or []}
        return parse is None or kind in parse or raw in listed

    guild = channel.guild
    # A DM has no roles and no one to reach with @everyone; a user mention resolves to any user.
    can_ping_all = guild is not None and bool(world.bot_permissions(channel) & MENTION_EVERYONE)
    users: list[JSON] = []
    roles: list[str] = []
    for prefix, raw in MENTION.findall(content):
        if prefix == "&":
            role = None if guild is None else guild.role_by_id(int(raw))
            pingable = role is not None and (role.mentionable or can_ping_all)
            if pingable and permitted("roles", raw) and raw not in roles:
                roles.append(raw)
        else:
            member = world.users.get(int(raw)) if guild is None else guild.members.get(int(raw))
            user = member.user if isinstance(member, MemberState) else member
            if user is not None and permitted("users", raw) and all(u["id"] != raw for u in users):
                users.append(user.payload())
    everyone = (
        ("@everyone" in content or "@here" in content)
        and (parse is None or "everyone" in parse)
        and can_ping_all
    )
    return {"mentions": users, "mention_roles": roles, "mention_everyone": everyone}


def _described(payload: JSON) -> dict[str, JSON]:
    """The payload's `attachments` entries by id (a `files[n]` index or an attachment id)."""
    entries = payload.get("attachments") or []
    return {str(a.get("id")): a for a in entries if isinstance(a, dict)}


def _shown(
    world: World, embeds: Any, components: Any, files: list[StoredFile]
) -> tuple[list[JSON], list[Any]]:
    """Embeds and components with each `attachment://` resolved against `files`."""
    rich = [{"type": "rich", **e} for e in embeds or []]
    resolved_components, errors = resolve_components(world, components or [], files)
    if errors:
        raise ApiError.invalid_form(errors)
    return resolve_embeds(world, rich, files), resolved_components


def _listed(world: World, files: list[StoredFile], data: JSON) -> list[JSON]:
    """The message's `attachments`: its files that no embed or component shows."""
    if not files:
        return []
    shown = json.dumps([data.get("embeds"), data.get("components")])
    return [attachment_payload(world, f) for f in files if cdn_path(f) not in shown]


def new_message(
    world: World,
    channel: ChannelState,
    payload: JSON,
    uploads: list[Upload],
    *,
    flags: int,
    interaction: InteractionRecord | None,
) -> StoredMessage:
    """Store a message by the bot (with its uploads), as a reply to `interaction` if given."""
    content = payload.get("content") or ""
    allowed = payload.get("allowed_mentions")
    described = _described(payload)
    files = [
        file_from_upload(
            world,
            channel.id,
            upload,
            described.get(str(upload.index), {}),
            ephemeral=bool(flags & FLAG_EPHEMERAL),
        )
        for upload in uploads
    ]
    embeds, components = _shown(world, payload.get("embeds"), payload.get("components"), files)
    data: JSON = {
        "id": str(world.snowflakes.next()),
        "channel_id": str(channel.id),
        "author": world.bot_user.payload(),
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": bool(payload.get("tts")),
        **mentions(world, channel, content, allowed),
        "attachments": [],
        "embeds": embeds,
        "reactions": [],
        "pinned": False,
        "type": 0,
        "flags": flags,
        "components": components,
    }
    data["attachments"] = _listed(world, files, data)
    if payload.get("nonce") is not None:
        data["nonce"] = payload["nonce"]
    reference = payload.get("message_reference")
    if reference:
        data["type"] = 19
        data["message_reference"] = {"channel_id": str(channel.id), **reference}
        if channel.guild is not None:
            data["message_reference"].setdefault("guild_id", str(channel.guild.id))
    if interaction is not None:
        data["application_id"] = data["webhook_id"] = str(world.application_id)
        data["type"] = 20 if interaction.type == 2 else 0
        metadata: JSON = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": interaction.user.payload(),
            "authorizing_integration_owners": interaction.owners,
        }
        if interaction.component_message_id is not None:
            metadata["interacted_message_id"] = str(interaction.component_message_id)
        data["interaction_metadata"] = metadata
    stored = StoredMessage(
        data,
        channel,
        allowed,
        interaction.id if interaction else None,
        file_ids=[f.id for f in files],
    )
    world.files.update((f.id, f) for f in files)
    world.add_message(stored)
    return stored


def announce(gateway: Gateway, stored: StoredMessage) -> None:
    """MESSAGE_CREATE for a new message the channel shows (never an ephemeral one), to a bot
    with the GUILD_MESSAGES intent (or DIRECT_MESSAGES in a DM), as Discord sends it; none
    where the bot is not (a server without it, a private channel between users)."""
    if stored.ephemeral:
        return
    guild = stored.channel.guild
    bot_id = gateway.world.bot_user.id
    if (guild is None and stored.channel.recipient is None) or (
        guild is not None and bot_id not in guild.members
    ):
        return
    if guild is None:
        gateway.dispatch("MESSAGE_CREATE", dict(stored.data), intent=INTENT_DIRECT_MESSAGES)
        return
    member = guild.members.get(stored.author_id)
    event = {**stored.data, "guild_id": str(guild.id)}
    if member is not None:
        event["member"] = member.payload(with_user=False)
    gateway.dispatch("MESSAGE_CREATE", event, intent=INTENT_GUILD_MESSAGES)


def _edited_files(
    world: World, stored: StoredMessage, payload: JSON, uploads: list[Upload]
) -> list[StoredFile]:
    """The files after a PATCH: with `attachments` given, only the files it lists stay or are
    appended (descriptions may change); without it, all stay and every upload is appended."""
    current = [world.files[i] for i in stored.file_ids if i in world.files]
    described = _described(payload)
    listed = "attachments" in payload

    def new_file(upload: Upload) -> StoredFile:
        entry = described.get(str(upload.index), {})
        return file_from_upload(world, stored.channel.id, upload, entry, ephemeral=stored.ephemeral)

    if not listed:
        return current + [new_file(u) for u in uploads]
    kept = []
    for existing in current:
        entry = described.get(str(existing.id))
        if entry is None:
            continue
        if "description" in entry:
            description = entry["description"]
            existing = dataclasses.replace(
                existing, description=description if isinstance(description, str) else None
            )
        kept.append(existing)
    return kept + [new_file(u) for u in uploads if str(u.index) in described]


def apply_edit(world: World, stored: StoredMessage, payload: JSON, uploads: list[Upload]) -> None:
    """A PATCH: only the given fields change; the result must still show something."""
    data = dict(stored.data)
    if "content" in payload:
        data["content"] = payload["content"] or ""
    files = _edited_files(world, stored, payload, uploads)
    embeds, components = _shown(world, payload.get("embeds"), payload.get("components"), files)
    if "embeds" in payload:
        data["embeds"] = embeds
    if "components" in payload:
        data["components"] = components
    if "flags" in payload:
        settable = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
        data["flags"] = (data["flags"] & ~FLAG_SUPPRESS_EMBEDS) | (
            int(payload["flags"] or 0) & settable
        )
    data["attachments"] = _listed(world, files, data)
    if is_empty(data, len(files)):
        raise ApiError(
            400,
            50006,
            "Cannot send an empty message",
            violation="edit leaves the message empty",
        )
    if "allowed_mentions" in payload:
        stored.allowed_mentions = payload["allowed_mentions"]
    data.update(mentions(world, stored.channel, data["content"], stored.allowed_mentions))
    data["flags"] &= ~FLAG_LOADING
    data["edited_timestamp"] = iso_now()
    for gone in set(stored.file_ids) - {f.id for f in files}:
        world.files.pop(gone, None)
    world.files.update((f.id, f) for f in files)
    stored.file_ids = [f.id for f in files]
    stored.data = data
    world.notify()
