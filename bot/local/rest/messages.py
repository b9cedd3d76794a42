"""Writing messages into the world, shared by channel posts and interaction responses.

A message the bot posts in a channel, an interaction's original response and a followup are
one kind of message to Discord: the same limits, the same mention resolution, the same
attachment records and the same PATCH semantics. They are built here once, as functions of
the world, so the channel and interaction routes cannot drift apart.
"""

from __future__ import annotations

import re

from bot.local.limits import check_message
from bot.local.limits import is_empty_message as is_empty
from bot.local.models import (
    FLAG_LOADING,
    JSON,
    MENTION_EVERYONE,
    ChannelState,
    InteractionRecord,
    MemberState,
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


def validate(payload: JSON, files: list[JSON], *, creating: bool) -> None:
    """Discord's limits on a message body; a new message must also show something."""
    errors = check_message(payload)
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


def attachments(world: World, payload: JSON, files: list[JSON]) -> list[JSON]:
    """Attachment records for the uploaded files, described by the payload's `attachments`."""
    described = {str(a.get("id")): a for a in payload.get("attachments") or []}
    result = []
    for index, upload in enumerate(files):
        attachment_id = world.snowflakes.next()
        url = f"https://cdn.discordapp.com/attachments/{attachment_id}/{upload['filename']}"
        result.append(
            {
                "id": str(attachment_id),
                "filename": upload["filename"],
                "size": upload["size"],
                "content_type": upload["content_type"],
                "description": described.get(str(index), {}).get("description"),
                "url": url,
                "proxy_url": url,
            }
        )
    return result


def new_message(
    world: World,
    channel: ChannelState,
    payload: JSON,
    files: list[JSON],
    *,
    flags: int,
    interaction: InteractionRecord | None,
) -> StoredMessage:
    """Store (and announce) a message by the bot, as a reply to `interaction` if given."""
    content = payload.get("content") or ""
    allowed = payload.get("allowed_mentions")
    data: JSON = {
        "id": str(world.snowflakes.next()),
        "channel_id": str(channel.id),
        "author": world.bot_user.payload(),
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": bool(payload.get("tts")),
        **mentions(world, channel, content, allowed),
        "attachments": attachments(world, payload, files),
        "embeds": [{"type": "rich", **e} for e in payload.get("embeds") or []],
        "reactions": [],
        "pinned": False,
        "type": 0,
        "flags": flags,
        "components": payload.get("components") or [],
    }
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
            "authorizing_integration_owners": channel.integration_owners(),
        }
        if interaction.component_message_id is not None:
            metadata["interacted_message_id"] = str(interaction.component_message_id)
        data["interaction_metadata"] = metadata
    stored = StoredMessage(data, channel, allowed, interaction.id if interaction else None)
    world.add_message(stored)
    return stored


def apply_edit(world: World, stored: StoredMessage, payload: JSON, files: list[JSON]) -> None:
    """A PATCH: only the given fields change; the result must still show something."""
    data = dict(stored.data)
    if "content" in payload:
        data["content"] = payload["content"] or ""
    if "embeds" in payload:
        data["embeds"] = [{"type": "rich", **e} for e in payload["embeds"] or []]
    if "components" in payload:
        data["components"] = payload["components"] or []
    if "flags" in payload:
        settable = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
        data["flags"] = (data["flags"] & ~FLAG_SUPPRESS_EMBEDS) | (
            int(payload["flags"] or 0) & settable
        )
    if "attachments" in payload:
        keep = {str(a.get("id")) for a in payload["attachments"] or []}
        data["attachments"] = [a for a in data["attachments"] if a["id"] in keep]
    data["attachments"] = data["attachments"] + attachments(world, payload, files)
    if is_empty(data, len(data["attachments"])):
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
    stored.data = data
    world.notify()
