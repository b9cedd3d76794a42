"""/operator status: pledgebot's operators record a pledge's status from Discord.

Content is global (every server sees it), so only the user ids in `[bot] operator_ids`
may change it, whatever their permissions in the server they type in.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.models import STATUSES
from bot.pledges import answers
from bot.pledges.services import Services
from commands.ui import answer, autocomplete


@app_commands.default_permissions(administrator=True)
class OperatorCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="operator", description="For pledgebot's operators only")
        self.services = services

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id not in self.services.config.operator_ids:
            # an AppCommandError, so the tree's error handler answers it
            raise app_commands.CheckFailure(
                "Only pledgebot's operators can change pledge statuses."
            )
        return True

    @app_commands.command(name="status", description="Record a pledge's new status")
    @app_commands.describe(
        pledge="The pledge",
        status="Its new status",
        note="Why it changed (shown in the history)",
        evidence="An http(s) link to public evidence; needed for any status but Not yet rated",
    )
    @app_commands.choices(
        status=[app_commands.Choice(name=s.label, value=s.slug) for s in STATUSES]
    )
    async def status(
        self,
        interaction: discord.Interaction[Any],
        pledge: str,
        status: str,
        note: app_commands.Range[str, 1, 500],
        evidence: app_commands.Range[str, 1, 300] | None = None,
    ) -> None:
        await answer(
            interaction,
            answers.set_status(
                self.services,
                pledge,
                status,
                note,
                evidence or "",
                f"discord:{interaction.user.id}",
            ),
            private=True,
        )

    @status.autocomplete("pledge")
    async def pledge_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        await self.services.fresh()
        return autocomplete(self.services.pledges.choices, current)
