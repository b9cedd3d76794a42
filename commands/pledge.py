"""/pledge list | show | search | history | suggest"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.models import STATUSES
from bot.pledges import answers
from bot.pledges.services import Services
from bot.pledges.suggestions import EVIDENCE_LIMIT, NOTE_LIMIT, Suggestions, suggest
from commands.ui import answer, autocomplete

PRIVATE = "Only you see the answer"


async def statement_choices(services: Services, current: str) -> list[app_commands.Choice[str]]:
    """The statements carried, for any command's `statement` option."""
    await services.fresh()
    return autocomplete(services.statement_names.choices, current)


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class PledgeCommands(app_commands.Group):
    def __init__(self, services: Services, suggestions: Suggestions) -> None:
        super().__init__(name="pledge", description="Pledges made in the statements we carry")
        self.services = services
        self.suggestions = suggestions

    @app_commands.command(name="list", description="List pledges, with their status")
    @app_commands.describe(
        statement="Only pledges from this statement", status="Only pledges with this status"
    )
    @app_commands.describe(private=PRIVATE)
    @app_commands.choices(
        status=[app_commands.Choice(name=s.label, value=s.slug) for s in STATUSES]
    )
    async def list_(
        self,
        interaction: discord.Interaction[Any],
        statement: str | None = None,
        status: str | None = None,
        private: bool = False,
    ) -> None:
        await answer(
            interaction, answers.pledge_list(self.services, statement, status), private=private
        )

    @list_.autocomplete("statement")
    async def statement_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return await statement_choices(self.services, current)

    @app_commands.command(name="show", description="One pledge in full, with quotes")
    @app_commands.describe(pledge="Start typing a pledge's name", private=PRIVATE)
    async def show(
        self, interaction: discord.Interaction[Any], pledge: str, private: bool = False
    ) -> None:
        await answer(interaction, answers.pledge_show(self.services, pledge), private=private)

    @app_commands.command(name="search", description="Search pledges, powers and claims")
    @app_commands.describe(query="Words to look for", private=PRIVATE)
    async def search(
        self,
        interaction: discord.Interaction[Any],
        query: app_commands.Range[str, 1, 200],
        private: bool = False,
    ) -> None:
        await answer(interaction, answers.pledge_search(self.services, query), private=private)

    @app_commands.command(name="history", description="How a pledge's status has changed")
    @app_commands.describe(pledge="Start typing a pledge's name", private=PRIVATE)
    async def history(
        self, interaction: discord.Interaction[Any], pledge: str, private: bool = False
    ) -> None:
        await answer(interaction, answers.pledge_history(self.services, pledge), private=private)

    @app_commands.command(
        name="suggest", description="Suggest a pledge's status, with a link to the evidence"
    )
    @app_commands.describe(
        pledge="Start typing a pledge's name",
        status="The status you think it has now",
        evidence="An http(s) link to public evidence",
        note="Why (shown in the history if accepted, never with your name)",
    )
    @app_commands.choices(
        status=[app_commands.Choice(name=s.label, value=s.slug) for s in STATUSES]
    )
    async def suggest(
        self,
        interaction: discord.Interaction[Any],
        pledge: str,
        status: str,
        evidence: app_commands.Range[str, 1, EVIDENCE_LIMIT],
        note: app_commands.Range[str, 1, NOTE_LIMIT] | None = None,
    ) -> None:
        """Always private: who suggests what is for operators only."""
        work = suggest(
            self.services,
            self.suggestions,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            pledge=pledge,
            status=status,
            evidence=evidence,
            note=note or "",
        )
        await answer(interaction, work, private=True)

    @show.autocomplete("pledge")
    @history.autocomplete("pledge")
    @suggest.autocomplete("pledge")
    async def pledge_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        await self.services.fresh()
        return autocomplete(self.services.pledges.choices, current)
