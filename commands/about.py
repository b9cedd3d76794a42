"""/about"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.pledges import answers
from bot.pledges.services import Services
from commands.pledge import PRIVATE, statement_choices
from commands.ui import answer


def about_command(services: Services) -> app_commands.Command[Any, Any, None]:
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.command(
        name="about", description="What pledgebot is, its sources, and how it rates pledges"
    )
    @app_commands.describe(statement="One statement's provenance and full text", private=PRIVATE)
    async def about(
        interaction: discord.Interaction[Any],
        statement: str | None = None,
        private: bool = False,
    ) -> None:
        await answer(interaction, answers.about(services, statement), private=private)

    @about.autocomplete("statement")
    async def statement_autocomplete(
        interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return await statement_choices(services, current)

    return about
