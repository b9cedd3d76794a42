"""/guilds/{id}: a guild, its channels, its roles and one member.

Read-only, as the bot only reads guilds over REST; what it learns at start-up comes from the
gateway's GUILD_CREATE. GET /guilds/{id} therefore leaves out the fields Discord sends only on
the gateway.
"""

from __future__ import annotations

from bot.local.models import GuildState, World
from bot.local.rest.base import ApiError, Call, Reply

# Fields of a guild payload Discord sends in GUILD_CREATE but not from GET /guilds/{id}.
GATEWAY_ONLY = ("channels", "threads", "members", "voice_states", "presences", "joined_at", "large")


class GuildRoutes:
    """The guild, channel list, role list and member handlers, over the world."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _guild(self, call: Call) -> GuildState:
        guild_id = call.id("guild")
        if guild_id in self.world.guilds_without_bot:
            # a server where members use the app they installed, but the bot is not in it
            raise ApiError(403, 50001)
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004)
        return guild

    async def get_guild(self, call: Call) -> Reply:
        payload = self._guild(call).create_payload(
            include_members=False, bot_id=self.world.bot_user.id
        )
        return 200, {k: v for k, v in payload.items() if k not in GATEWAY_ONLY}

    async def get_guild_channels(self, call: Call) -> Reply:
        return 200, [c.payload() for c in self._guild(call).channels.values()]

    async def get_guild_roles(self, call: Call) -> Reply:
        return 200, [r.payload() for r in self._guild(call).roles.values()]

    async def get_member(self, call: Call) -> Reply:
        member = self._guild(call).members.get(call.id("user"))
        if member is None:
            raise ApiError(404, 10007)
        return 200, member.payload()
