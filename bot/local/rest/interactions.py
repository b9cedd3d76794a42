"""Answering interactions: the callback, followups and the @original response as webhooks.

Discord allows one callback per interaction, of a type that fits the interaction (a modal or
choices only where they make sense), within `interaction_deadline` seconds of sending it;
anything else is refused and recorded as a violation. Followups and the webhook message routes
need the interaction's token, this application's id and a message response first. The first
followup after a "thinking" defer replaces the loading message, as on Discord.

Where only the user's own install of the app reached the interaction (a server or private
channel without the bot), Discord allows 5 followups (400 40094 after that), and in a server
where the member may not use external apps every answer is ephemeral, whatever its flags.
"""

from __future__ import annotations

import time

from bot.local.gateway import Gateway
from bot.local.limits import FieldError, check_choices, check_modal
from bot.local.models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    JSON,
    InteractionRecord,
    StoredMessage,
    World,
)
from bot.local.rest.base import ApiError, Call, Reply
from bot.local.rest.messages import SETTABLE_FLAGS, announce, apply_edit, new_message, validate

# Callback types Discord accepts per interaction type (2 command, 3 component, 4
# autocomplete, 5 modal submit: 6 and 7 only for a modal opened from a component).
CALLBACKS_FOR = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
# Followups an interaction reached only through a user install may have (Create Followup).
USER_INSTALL_FOLLOWUPS = 5


def answer_flags(record: InteractionRecord, requested: int) -> int:
    """The flags an answer gets: ephemeral when Discord allows it no public answer here."""
    return requested if record.public_allowed else requested | FLAG_EPHEMERAL


class InteractionRoutes:
    """The callback and interaction-webhook handlers, over the world's interaction records."""

    def __init__(self, world: World, gateway: Gateway, *, interaction_deadline: float) -> None:
        self.world = world
        self.gateway = gateway
        self.interaction_deadline = interaction_deadline

    # -- the callback ---------------------------------------------------------------------

    async def callback(self, call: Call) -> Reply:
        world = self.world
        record = world.interactions.get(call.id("interaction"))
        if record is None or record.token != call.match["token"]:
            raise ApiError(404, 10062, violation="callback for an unknown interaction")
        now = time.perf_counter()
        if record.callback_type is not None:
            raise ApiError(
                400,
                40060,
                "Interaction has already been acknowledged.",
                violation=f"second callback for /{record.name} "
                f"(first was type {record.callback_type})",
            )
        elapsed = now - record.sent_at
        if elapsed > self.interaction_deadline:
            raise ApiError(
                404,
                10062,
                violation=f"/{record.name} acknowledged after {elapsed:.2f} s "
                f"(Discord allows {self.interaction_deadline:g} s)",
            )
        payload = call.json_object()
        kind = payload.get("type")
        data = payload.get("data") or {}
        if kind not in CALLBACKS_FOR[record.type]:
            error = FieldError(
                ("type",),
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"callback type {kind} is not valid for interaction type {record.type}",
            )
            raise ApiError.invalid_form([error])
        if kind in (4, 7):
            validate(data, call.files, creating=kind == 4)
        if kind == 8:
            errors = check_choices(data.get("choices"))
        elif kind == 9:
            errors = check_modal(data)
        else:
            errors = []
        if errors:
            raise ApiError.invalid_form(errors)
        component_message = world.messages.get(record.component_message_id or 0)
        if kind in (6, 7) and component_message is None:
            raise ApiError(404, 10008, violation="the component's message is gone")
        if kind == 4:
            flags = answer_flags(
                record, int(data.get("flags") or 0) & (SETTABLE_FLAGS | FLAG_EPHEMERAL)
            )
            reply = new_message(
                world, record.channel, data, call.files, flags=flags, interaction=record
            )
            record.original_id = reply.id
            announce(self.gateway, reply)
        elif kind == 5:
            flags = FLAG_LOADING | answer_flags(
                record, int(data.get("flags") or 0) & FLAG_EPHEMERAL
            )
            loading = new_message(world, record.channel, {}, [], flags=flags, interaction=record)
            record.original_id = loading.id
            record.loading = True
            announce(self.gateway, loading)
        elif kind in (6, 7) and component_message is not None:
            record.original_id = component_message.id
            if kind == 7:
                apply_edit(world, component_message, data, call.files)
        record.choices = data.get("choices") if kind == 8 else None
        record.modal = data if kind == 9 else None
        record.callback_type = kind
        record.callback_at = now
        record.settled = kind not in (5, 6)
        world.notify()
        if not call.flag("with_response"):
            return 204, None
        return 200, self._callback_body(record, kind)

    def _callback_body(self, record: InteractionRecord, kind: int) -> JSON:
        """The InteractionCallbackResponse discord.py 2.7 reads (it always asks with_response)."""
        message = self.world.messages.get(record.original_id or 0)
        summary: JSON = {
            "id": str(record.id),
            "type": record.type,
            "response_message_loading": record.loading,
            "response_message_ephemeral": message is not None and message.ephemeral,
        }
        body: JSON = {"interaction": summary}
        if message is not None and kind in (4, 5, 7):
            summary["response_message_id"] = str(message.id)
            body["resource"] = {"type": kind, "message": message.data}
        return body

    # -- the interaction webhook ----------------------------------------------------------

    def _webhook_interaction(self, call: Call) -> InteractionRecord:
        record = self.world.interaction_tokens.get(call.match["token"])
        if record is None or call.id("app") != self.world.application_id:
            raise ApiError(
                404, 10015, violation="unknown interaction webhook (wrong token or application id)"
            )
        if record.callback_type is None or record.callback_type in (8, 9):
            raise ApiError(
                404,
                10015,
                violation=f"/{record.name}: followup before a message response "
                f"(callback {record.callback_type})",
            )
        return record

    def _webhook_message(self, call: Call, record: InteractionRecord) -> StoredMessage:
        ref = call.match["message"]
        message_id = record.original_id if ref == "@original" else int(ref)
        known = ref == "@original" or message_id in record.followup_ids
        stored = self.world.messages.get(message_id or 0)
        if not known or stored is None:
            raise ApiError(
                404, 10008, violation=f"/{record.name}: no message {ref} on this interaction"
            )
        return stored

    async def followup(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        if record.user_install_only and len(record.followup_ids) >= USER_INSTALL_FOLLOWUPS:
            raise ApiError(
                400,
                40094,
                "This interaction has hit the maximum number of follow up messages",
                violation=f"/{record.name}: more than {USER_INSTALL_FOLLOWUPS} followups "
                "where only a user install reached it",
            )
        payload = call.json_object()
        validate(payload, call.files, creating=True)
        original = self.world.messages.get(record.original_id or 0)
        if record.loading and original is not None:
            # The first followup after a "thinking" defer replaces the loading message and keeps
            # the defer's ephemerality, whatever flags it asks for.
            apply_edit(self.world, original, payload, call.files)
            record.loading = False
            stored = original
        else:
            flags = answer_flags(
                record, int(payload.get("flags") or 0) & (SETTABLE_FLAGS | FLAG_EPHEMERAL)
            )
            stored = new_message(
                self.world, record.channel, payload, call.files, flags=flags, interaction=record
            )
            announce(self.gateway, stored)
        record.followup_ids.append(stored.id)
        record.settled = True
        self.world.notify()
        return (200, stored.data) if call.flag("wait") else (204, None)

    async def get_webhook_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        return 200, self._webhook_message(call, record).data

    async def edit_webhook_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        stored = self._webhook_message(call, record)
        payload = call.json_object()
        validate(payload, call.files, creating=False)
        apply_edit(self.world, stored, payload, call.files)
        if stored.id == record.original_id:
            record.loading = False
            record.settled = True
            self.world.notify()
        return 200, stored.data

    async def delete_webhook_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        self.world.remove_message(self._webhook_message(call, record))
        return 204, None
