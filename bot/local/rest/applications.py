"""/applications: the bot's application and its global and guild commands.

A PUT of the command list is checked against Discord's command schema limits before anything
is stored, keeps the ids of commands that still exist (same type and name), and echoes what
Discord echoes; a list for another application is refused with 403, one for an unknown guild
with 404.
"""

from __future__ import annotations

from typing import Any

from bot.local.gateway import Gateway
from bot.local.limits import check_commands
from bot.local.models import JSON, World
from bot.local.rest.base import ApiError, Call, Reply


class ApplicationRoutes:
    """The application and command handlers; the application's flags come from the gateway."""

    def __init__(self, world: World, gateway: Gateway) -> None:
        self.world = world
        self.gateway = gateway

    async def get_application(self, call: Call) -> Reply:
        world = self.world
        return 200, {
            "id": str(world.application_id),
            "name": world.application_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": world.bot_user.payload(),
            "owner": world.owner.payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.gateway.application_flags,
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(world.guilds),
        }

    def _command_scope(self, call: Call) -> int | None:
        if call.id("app") != self.world.application_id:
            raise ApiError(
                403, 50001, violation=f"application id {call.match['app']} is not this bot's"
            )
        guild_id = call.match["guild"]
        if guild_id is not None and int(guild_id) in self.world.guilds_without_bot:
            raise ApiError(403, 50001)  # a server that never installed the app
        if guild_id is not None and int(guild_id) not in self.world.guilds:
            raise ApiError(404, 10004)
        return None if guild_id is None else int(guild_id)

    async def get_commands(self, call: Call) -> Reply:
        return 200, self.world.commands_for(self._command_scope(call))

    async def put_commands(self, call: Call) -> Reply:
        scope = self._command_scope(call)
        errors = check_commands(call.body)
        if errors:
            raise ApiError.invalid_form(errors)
        world = self.world
        existing = {(c["type"], c["name"]): c for c in world.commands_for(scope)}
        stored: list[JSON] = []
        for command in call.body:
            kind = int(command.get("type") or 1)
            previous = existing.get((kind, command["name"]))
            entry: JSON = {
                "id": previous["id"] if previous else str(world.snowflakes.next()),
                "application_id": str(world.application_id),
                "version": str(world.snowflakes.next()),
                "type": kind,
                "name": command["name"],
                "description": command.get("description", ""),
                "options": command.get("options") or [],
                "default_member_permissions": _optional_str(
                    command.get("default_member_permissions")
                ),
                "dm_permission": command.get("dm_permission", True),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types") or [0],
                "nsfw": command.get("nsfw", False),
                "name_localizations": command.get("name_localizations"),
                "description_localizations": command.get("description_localizations"),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        if scope is None:
            world.global_commands = stored
        else:
            world.guild_commands[scope] = stored
        world.notify()
        return 200, stored


def _optional_str(value: Any) -> str | None:
    """Discord echoes permission bitfields back as strings."""
    return None if value is None else str(value)
