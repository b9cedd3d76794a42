"""/users: the bot's own user (how discord.py logs in) and any user the world knows."""

from __future__ import annotations

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
