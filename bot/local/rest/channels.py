"""/channels/{id}: a channel, typing, its history and the bot's messages in it.

Every route checks the bot's permissions in the channel as Discord does (403 50001 without
VIEW_CHANNEL, 50013 for any other missing bit) and applies Discord's thread rules: a locked
thread takes messages only from MANAGE_THREADS, an archived one is re-opened by a new message
(announced with THREAD_UPDATE) but refuses edits. `enforce_nonce` is remembered only for
`nonce_window` seconds, as Discord remembers it only for a few minutes.

A DM channel (type 1) has no permissions or overwrites; instead a post there is refused with
403 50007 "Cannot send messages to this user" when the recipient closed their DMs or shares no
guild with the bot (Discord's rule for bots), and deleting the recipient's message is 403 50003
"Cannot execute action on a DM channel". Everything else (limits, nonces, history) is the same.
"""

from __future__ import annotations

import time

from bot.local.gateway import Gateway
from bot.local.limits import FieldError
from bot.local.models import (
    ATTACH_FILES,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    ChannelState,
    StoredMessage,
    World,
    iso_now,
)
from bot.local.rest.base import ApiError, Call, Reply
from bot.local.rest.messages import SETTABLE_FLAGS, announce, apply_edit, new_message, validate


class ChannelRoutes:
    """The channel and message handlers, over the world; THREAD_UPDATE goes to the gateway."""

    def __init__(self, world: World, gateway: Gateway, *, nonce_window: float) -> None:
        self.world = world
        self.gateway = gateway
        self.nonce_window = nonce_window

    # -- helpers --------------------------------------------------------------------------

    def _channel(self, call: Call, *, needs: int = 0) -> ChannelState:
        channel = self.world.channels.get(call.id("channel"))
        if channel is None or channel.deleted:
            raise ApiError(404, 10003)
        self._require(channel, needs)
        return channel

    def _require(self, channel: ChannelState, needs: int) -> None:
        """403 like Discord: 50001 without VIEW_CHANNEL, 50013 for any other missing bit.

        A DM has no permissions to check; who may be messaged is `_check_reachable`'s."""
        if channel.guild is None:
            return
        perms = self.world.bot_permissions(channel)
        if not perms & VIEW_CHANNEL:
            raise ApiError(403, 50001)
        if perms & needs != needs:
            raise ApiError(403, 50013)

    def _channel_message(self, call: Call, channel: ChannelState) -> StoredMessage:
        stored = self.world.messages.get(call.id("message"))
        if stored is None or stored.channel is not channel or stored.ephemeral:
            raise ApiError(404, 10008)
        return stored

    def _check_reachable(self, channel: ChannelState) -> None:
        """A DM post: 403 50007 when the recipient closed DMs or shares no guild with the bot."""
        recipient = channel.recipient
        if channel.guild is not None or recipient is None:
            return
        if not recipient.accepts_dms or not self.world.shares_guild(recipient):
            raise ApiError(403, 50007)

    def _check_thread_open(self, channel: ChannelState, *, reopening: bool) -> None:
        """Discord's thread rules: a locked thread takes messages only from MANAGE_THREADS; an
        archived one is re-opened by a new message (`reopening`) but refuses edits."""
        if not channel.is_thread:
            return
        moderator = bool(self.world.bot_permissions(channel) & MANAGE_THREADS)
        if channel.archived and (not reopening or (channel.locked and not moderator)):
            raise ApiError(403, 50083)
        if channel.locked and not moderator:
            raise ApiError(403, 160005)

    def _unarchive(self, thread: ChannelState) -> None:
        """A message in an archived thread re-opens it, announced with THREAD_UPDATE."""
        thread.archived = False
        thread.archive_timestamp = iso_now()
        self.gateway.dispatch("THREAD_UPDATE", thread.payload())

    # -- handlers -------------------------------------------------------------------------

    async def get_channel(self, call: Call) -> Reply:
        return 200, self._channel(call).payload()

    async def typing(self, call: Call) -> Reply:
        self._channel(call, needs=SEND_MESSAGES)
        return 204, None

    async def get_history(self, call: Call) -> Reply:
        """Newest first, like Discord, whichever of before/after/around picks the window.

        `after` gives the `limit` messages right after it; `around` about half before and
        half from it on (the message itself included). Only one of the three may be passed.
        """
        channel = self._channel(call, needs=READ_MESSAGE_HISTORY)
        limit = call.query_int("limit", 50)
        if not 1 <= limit <= 100:
            raise ApiError.invalid_form(
                [FieldError(("limit",), "NUMBER_TYPE_MAX", "Must be between 1 and 100.")]
            )
        anchors = [k for k in ("before", "after", "around") if k in call.query]
        if len(anchors) > 1:
            raise ApiError.invalid_form(
                [
                    FieldError(
                        (anchors[1],),
                        "BASE_TYPE_BAD_REQUEST",
                        f"only one of before, after and around may be passed (got {anchors})",
                    )
                ]
            )
        ids = channel.message_ids  # oldest first
        if "after" in call.query:
            after = call.query_int("after", 0)
            chosen = [i for i in ids if i > after][:limit]
        elif "around" in call.query:
            around = call.query_int("around", 0)
            older = [i for i in ids if i < around]
            older = older[len(older) - limit // 2 :] if limit // 2 else []
            chosen = older + [i for i in ids if i >= around][: limit - len(older)]
        else:
            before = call.query_int("before", 2**63)
            chosen = [i for i in ids if i < before][-limit:]
        return 200, [self.world.messages[i].data for i in reversed(chosen)]

    async def create_message(self, call: Call) -> Reply:
        channel = self._channel(call)
        needs = SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES
        self._require(channel, needs | (ATTACH_FILES if call.files else 0))
        self._check_reachable(channel)
        self._check_thread_open(channel, reopening=True)
        payload = call.json_object()
        validate(payload, call.files, creating=True)
        nonce = payload.get("nonce")
        enforced = nonce is not None and bool(payload.get("enforce_nonce"))
        now = time.monotonic()
        if enforced:
            # Discord remembers a nonce only for a few minutes; after that it posts again.
            message_id, posted_at = channel.nonces.get(str(nonce), (0, 0.0))
            earlier = self.world.messages.get(message_id)
            if earlier is not None and now - posted_at <= self.nonce_window:
                return 200, earlier.data
        if channel.archived:
            self._unarchive(channel)
        flags = int(payload.get("flags") or 0) & SETTABLE_FLAGS
        stored = new_message(
            self.world, channel, payload, call.files, flags=flags, interaction=None
        )
        if enforced:
            channel.nonces[str(nonce)] = (stored.id, now)
        announce(self.gateway, stored)
        return 200, stored.data

    async def get_message(self, call: Call) -> Reply:
        channel = self._channel(call, needs=READ_MESSAGE_HISTORY)
        return 200, self._channel_message(call, channel).data

    async def edit_message(self, call: Call) -> Reply:
        channel = self._channel(call)
        stored = self._channel_message(call, channel)
        if stored.author_id != self.world.bot_user.id:
            raise ApiError(403, 50005)
        self._require(channel, ATTACH_FILES if call.files else 0)
        self._check_thread_open(channel, reopening=False)
        payload = call.json_object()
        validate(payload, call.files, creating=False)
        apply_edit(self.world, stored, payload, call.files)
        return 200, stored.data

    async def delete_message(self, call: Call) -> Reply:
        channel = self._channel(call)
        stored = self._channel_message(call, channel)
        if stored.author_id != self.world.bot_user.id:
            if channel.guild is None:
                raise ApiError(403, 50003)
            self._require(channel, MANAGE_MESSAGES)
        self.world.remove_message(stored)
        return 204, None
