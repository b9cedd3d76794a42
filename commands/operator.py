"""/operator status | suggestions: pledgebot's operators rate pledges and review members'
suggestions from Discord.

Content is global (every server sees it), so only the user ids in `[bot] operator_ids`
may change it, whatever their permissions in the server they type in. The review buttons
(Accept, Reject, the pages) are `DynamicItem`s matched by custom id, so they work after a
restart, and each click checks again that the clicker is an operator. Reject asks for the
reason in a modal; a modal left open across a restart is gone (Reject opens a new one).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot.client.app import report_error
from bot.client.delivery import embed_for
from bot.errors import UserError
from bot.models import STATUSES
from bot.pledges import answers, cards
from bot.pledges.services import Services
from bot.pledges.suggestions import REASON_LIMIT, ReviewPage, Suggestions
from commands.ui import answer, autocomplete, in_time, reply, require_server_install

NOT_AN_OPERATOR = "Only pledgebot's operators can review suggestions."
PAGE_TEMPLATE = r"suggestion:page:(?P<index>[0-9]{1,9})"
ACCEPT_TEMPLATE = r"suggestion:accept:(?P<id>[0-9]{1,18}):(?P<index>[0-9]{1,9})"
REJECT_TEMPLATE = r"suggestion:reject:(?P<id>[0-9]{1,18}):(?P<index>[0-9]{1,9})"
REASON_TIMEOUT = 600.0  # a modal's own life; the suggestion waits whatever happens to it


@app_commands.guild_only()
@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.default_permissions(administrator=True)
class OperatorCommands(app_commands.Group):
    def __init__(self, services: Services, suggestions: Suggestions) -> None:
        super().__init__(name="operator", description="For pledgebot's operators only")
        self.services = services
        self.suggestions = suggestions

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        require_server_install(interaction)
        if not is_operator(self.services, interaction):
            # an AppCommandError, so the tree's error handler answers it
            raise app_commands.CheckFailure(
                "Only pledgebot's operators can rate pledges and review suggestions."
            )
        return True

    @app_commands.command(
        name="suggestions", description="Review members' suggested statuses, oldest first"
    )
    async def suggestions_(self, interaction: discord.Interaction[Any]) -> None:
        page = await in_time(interaction, self.suggestions.review_page(0), private=True)
        await show_review(interaction, page, first=True)

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


# -- reviewing suggestions ---------------------------------------------------------------


def is_operator(services: Services, interaction: discord.Interaction[Any]) -> bool:
    return interaction.user.id in services.config.operator_ids


def review_view(page: ReviewPage) -> discord.ui.View | None:
    """Accept and Reject for the page's suggestion, and the pages. Every click goes to the
    `review_buttons` handlers by custom id, so the view is stopped (never kept in memory)."""
    if page.suggestion_id is None:
        return None
    at, last, number = page.index, page.total - 1, page.suggestion_id
    view = discord.ui.View(timeout=None)
    for label, style, action in (
        ("Accept", discord.ButtonStyle.success, "accept"),
        ("Reject", discord.ButtonStyle.danger, "reject"),
    ):
        custom_id = f"suggestion:{action}:{number}:{at}"
        view.add_item(discord.ui.Button(label=label, style=style, custom_id=custom_id, row=0))
    if page.total > 1:
        turns = (
            ("◀ Previous", f"suggestion:page:{max(at - 1, 0)}", at == 0),
            (f"{at + 1}/{page.total}", "suggestion:at", True),
            ("Next ▶", f"suggestion:page:{min(at + 1, last)}", at >= last),
        )
        for label, custom_id, disabled in turns:
            view.add_item(
                discord.ui.Button(
                    label=label,
                    custom_id=custom_id,
                    disabled=disabled,
                    style=discord.ButtonStyle.secondary,
                    row=1,
                )
            )
    view.stop()
    return view


async def show_review(
    interaction: discord.Interaction[Any], page: ReviewPage, *, first: bool = False
) -> None:
    """The page as the command's answer, in place of the page clicked on, or (after a slow
    click was deferred) as a new private message."""
    view = review_view(page)
    if first or interaction.response.is_done():
        buttons = {} if view is None else {"view": view}  # discord.py refuses view=None
        await reply(interaction, private=True, embed=embed_for(page.card), **buttons)
        return
    await interaction.response.edit_message(embed=embed_for(page.card), view=view)


Reviewer = Callable[[discord.Interaction[Any]], Awaitable[ReviewPage]]


async def review(services: Services, interaction: discord.Interaction[Any], work: Reviewer) -> None:
    """An operator's click: checked, done, and the page shown; every failure answered
    privately (discord.py only logs what a dynamic item or a modal raises)."""
    try:
        if not is_operator(services, interaction):
            raise UserError(NOT_AN_OPERATOR)
        page = await in_time(interaction, work(interaction), private=True)
        await show_review(interaction, page)
    except Exception as error:
        await report_error(interaction, error)


def decided_by(interaction: discord.Interaction[Any]) -> str:
    """Who decided, as `/operator status` names who rated."""
    return f"discord:{interaction.user.id}"


ReviewButton = type[discord.ui.DynamicItem[discord.ui.Button[Any]]]


def review_buttons(
    services: Services, suggestions: Suggestions
) -> tuple[ReviewButton, ReviewButton, ReviewButton]:
    """The review page's buttons, for `Client.add_dynamic_items`."""

    class RejectReason(discord.ui.Modal):
        reason: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Why? The member is told this reason",
            custom_id="reason",
            style=discord.TextStyle.paragraph,
            min_length=1,
            max_length=REASON_LIMIT,
        )

        def __init__(self, suggestion_id: int, index: int) -> None:
            super().__init__(
                title=f"Reject suggestion #{suggestion_id}"[:45],
                timeout=REASON_TIMEOUT,
                custom_id=f"suggestion:reason:{suggestion_id}:{secrets.token_hex(4)}",
            )
            self.suggestion_id = suggestion_id
            self.index = index

        async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
            async def rejected(interaction: discord.Interaction[Any]) -> ReviewPage:
                done = await suggestions.reject(
                    self.suggestion_id, by=decided_by(interaction), reason=self.reason.value
                )
                services.changed()
                text = (
                    f"❌ Rejected #{done.suggestion.id} ({done.suggestion.pledge_title}); "
                    f"{done.told} member(s) will be told the reason."
                )
                return await suggestions.review_page(self.index, text)

            await review(services, interaction, rejected)

    class TurnPage(discord.ui.DynamicItem[discord.ui.Button[Any]], template=PAGE_TEMPLATE):
        def __init__(self, button: discord.ui.Button[Any], index: int) -> None:
            super().__init__(button)
            self.index = index

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction[Any],
            item: discord.ui.Item[Any],
            match: re.Match[str],
            /,
        ) -> TurnPage:
            assert isinstance(item, discord.ui.Button)
            return cls(item, int(match["index"]))

        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            async def turned(_: discord.Interaction[Any]) -> ReviewPage:
                return await suggestions.review_page(self.index)

            await review(services, interaction, turned)

    class Accept(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ACCEPT_TEMPLATE):
        def __init__(self, button: discord.ui.Button[Any], suggestion_id: int, index: int) -> None:
            super().__init__(button)
            self.suggestion_id = suggestion_id
            self.index = index

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction[Any],
            item: discord.ui.Item[Any],
            match: re.Match[str],
            /,
        ) -> Accept:
            assert isinstance(item, discord.ui.Button)
            return cls(item, int(match["id"]), int(match["index"]))

        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            async def accepted(interaction: discord.Interaction[Any]) -> ReviewPage:
                done = await suggestions.accept(self.suggestion_id, by=decided_by(interaction))
                services.changed()
                s = done.suggestion
                text = (
                    f"✅ Accepted #{s.id}: **{s.pledge_title}** is now "
                    f"{cards.status_label(s.status)}; {done.told} member(s) will be told."
                )
                return await suggestions.review_page(self.index, text)

            await review(services, interaction, accepted)

    class Reject(discord.ui.DynamicItem[discord.ui.Button[Any]], template=REJECT_TEMPLATE):
        def __init__(self, button: discord.ui.Button[Any], suggestion_id: int, index: int) -> None:
            super().__init__(button)
            self.suggestion_id = suggestion_id
            self.index = index

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction[Any],
            item: discord.ui.Item[Any],
            match: re.Match[str],
            /,
        ) -> Reject:
            assert isinstance(item, discord.ui.Button)
            return cls(item, int(match["id"]), int(match["index"]))

        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            """The reason first, in a modal (a modal must be the click's first answer)."""
            try:
                if not is_operator(services, interaction):
                    raise UserError(NOT_AN_OPERATOR)
                await interaction.response.send_modal(RejectReason(self.suggestion_id, self.index))
            except Exception as error:
                await report_error(interaction, error)

    return TurnPage, Accept, Reject
