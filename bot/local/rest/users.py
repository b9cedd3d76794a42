"""/users: the bot's own user (how discord.py logs in), any user the world knows, and the
bot's DM channels (POST /users/@me/channels).

Opening a DM is refused only where Discord refuses it: an id that names no user (400 50033
"Invalid Recipient(s)") or a bot, the bot itself included (400 50007). A user who closed their
DMs or shares no guild with the bot still gets a channel; sending to it is what fails (403
50007, in the channel routes).
"""

from __future__ import annotations

from bot.local.limits import FieldError
from bot.local.models import World
from bot.local.rest.base import ApiError, Call, Reply


class UserRoutes:
    """The user handlers, over the world."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def get_me(self, call: Call) -> Reply:
        return 200, {
            **self.world.bot_user.payload(),
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
        }

    async def get_user(self, call: Call) -> Reply:
        user = self.world.users.get(call.id("user"))
        if user is None:
            raise ApiError(404, 10013)
        return 200, user.payload()

    async def create_dm(self, call: Call) -> Reply:
        """The DM channel with `recipient_id`: the same channel for the same user every time."""
        payload = call.json_object()
        if "recipient_id" not in payload:
            raise ApiError.invalid_form(
                [FieldError(("recipient_id",), "BASE_TYPE_REQUIRED", "This field is required")]
            )
        raw = payload["recipient_id"]
        text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
        if not text.isdigit():
            raise ApiError.invalid_form(
                [
                    FieldError(
                        ("recipient_id",), "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.'
                    )
                ]
            )
        user = self.world.users.get(int(text))
        if user is None:
            raise ApiError(400, 50033)
        if user.bot:
            raise ApiError(400, 50007)
        return 200, self.world.open_dm(user).payload()
