"""/about"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.pledges import answers
from bot.pledges.services import Services
from commands.pledge import PRIVATE
from commands.ui import answer


def about_command(services: Services) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="about", description="What pledgebot is and how it works")
    @app_commands.describe(private=PRIVATE)
    async def about(interaction: discord.Interaction[Any], private: bool = False) -> None:
        await answer(interaction, answers.about(services), private=private)

    return about
