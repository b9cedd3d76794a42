"""/claim list | show: what the statements claim, always as theirs, never as fact."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.pledges import answers
from bot.pledges.services import Services
from commands.pledge import PRIVATE, statement_choices
from commands.ui import answer, autocomplete


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class ClaimCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="claim", description="What the statements claim, with quotes")
        self.services = services

    @app_commands.command(name="list", description="List the claims a statement makes")
    @app_commands.describe(statement="Only claims from this statement", private=PRIVATE)
    async def list_(
        self,
        interaction: discord.Interaction[Any],
        statement: str | None = None,
        private: bool = False,
    ) -> None:
        await answer(interaction, answers.claim_list(self.services, statement), private=private)

    @list_.autocomplete("statement")
    async def statement_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return await statement_choices(self.services, current)

    @app_commands.command(name="show", description="One claim in full: who says so, and quotes")
    @app_commands.describe(claim="Start typing a claim", private=PRIVATE)
    async def show(
        self, interaction: discord.Interaction[Any], claim: str, private: bool = False
    ) -> None:
        await answer(interaction, answers.claim_show(self.services, claim), private=private)

    @show.autocomplete("claim")
    async def claim_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        await self.services.fresh()
        return autocomplete(self.services.claims.choices, current)
