"""/power list | show"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.pledges import answers
from bot.pledges.services import Services
from commands.pledge import PRIVATE
from commands.ui import answer, autocomplete


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class PowerCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="power", description="Legal powers behind the pledges")
        self.services = services

    @app_commands.command(name="list", description="List the legal powers we cover")
    @app_commands.describe(private=PRIVATE)
    async def list_(self, interaction: discord.Interaction[Any], private: bool = False) -> None:
        await answer(interaction, answers.power_list(self.services), private=private)

    @app_commands.command(name="show", description="One legal power in full, with quotes")
    @app_commands.describe(power="Start typing a power's name", private=PRIVATE)
    async def show(
        self, interaction: discord.Interaction[Any], power: str, private: bool = False
    ) -> None:
        await answer(interaction, answers.power_show(self.services, power), private=private)

    @show.autocomplete("power")
    async def power_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        await self.services.fresh()
        return autocomplete(self.services.powers.choices, current)
