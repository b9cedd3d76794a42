"""Shared Discord plumbing for the command modules: cards to embeds (and their pictures
to attachments), paging, deferral."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.client.app import report_error
from bot.client.delivery import embeds_and_files
from bot.pledges.cards import Card

log = logging.getLogger(__name__)

# Answer directly when the work is done within this; otherwise defer first, so the
# 3-second acknowledgement deadline is always met.
DEFER_AFTER = 1.5
DEFER_AT_KEY = "pledgebot.defer_at"  # in Interaction.extras: when `in_time` defers
PAGE_TIMEOUT = 600.0  # well inside the 15-minute life of an interaction token
NOT_INSTALLED_HERE = (
    "I'm not in this server, so this command can't work here: it needs pledgebot added to "
    "the server itself, by someone with Manage Server."
)

T = TypeVar("T")


def message_for(card: Card) -> dict[str, Any]:
    """One card as a message's embed, and its picture (if any) as the file the embed shows."""
    embeds, files = embeds_and_files([card])
    return {"embed": embeds[0], "files": files} if files else {"embed": embeds[0]}


class PageView(discord.ui.View):
    """Previous/next buttons that only the member who asked can press.

    A page with a picture (the first page's chart) uploads it with the page; turning to a
    page without one removes the attachment, which Discord would otherwise show below it.
    """

    def __init__(self, pages: Sequence[Card], owner_id: int) -> None:
        super().__init__(timeout=PAGE_TIMEOUT)
        self.pages = list(pages)
        self.owner_id = owner_id
        self.index = 0
        self.origin: discord.Interaction[Any] | None = None
        self.has_pictures = any(page.picture is not None for page in self.pages)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index >= len(self.pages) - 1
        self.counter.label = f"{self.index + 1}/{len(self.pages)}"

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            "Only the member who ran this command can turn its pages. "
            "Run the command yourself to browse.",
            ephemeral=True,
        )
        return False

    async def _show(self, interaction: discord.Interaction[Any], index: int) -> None:
        self.index = max(0, min(index, len(self.pages) - 1))
        self._sync_buttons()
        embeds, files = embeds_and_files([self.pages[self.index]])
        if not self.has_pictures:  # nothing attached to keep or remove: a plain JSON edit
            await interaction.response.edit_message(embed=embeds[0], view=self)
            return
        # the attachments listed replace the message's: [] removes the picture
        await interaction.response.edit_message(embed=embeds[0], attachments=files, view=self)

    @discord.ui.button(label="◀ Previous", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]
    ) -> None:
        await self._show(interaction, self.index - 1)

    @discord.ui.button(label="1/1", style=discord.ButtonStyle.secondary, disabled=True)
    async def counter(
        self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]
    ) -> None:
        await self._show(interaction, self.index)

    @discord.ui.button(label="Next ▶", style=discord.ButtonStyle.primary)
    async def next(self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index + 1)

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        if self.origin is not None:
            try:
                await self.origin.edit_original_response(view=self)
            except discord.HTTPException as exc:
                log.debug("could not disable page buttons: %s", exc)

    async def on_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        item: discord.ui.Item[Any],
    ) -> None:
        await report_error(interaction, error)


async def reply(interaction: discord.Interaction[Any], *, private: bool, **message: Any) -> None:
    """Send `message` as the answer, or as a followup once the interaction was deferred."""
    if interaction.response.is_done():
        await interaction.followup.send(ephemeral=private, **message)
    else:
        await interaction.response.send_message(ephemeral=private, **message)


async def send_cards(
    interaction: discord.Interaction[Any], cards: Sequence[Card], *, private: bool
) -> None:
    """Send the first card, with page buttons when there are more."""
    view = PageView(cards, interaction.user.id) if len(cards) > 1 else None
    buttons = {} if view is None else {"view": view}  # discord.py refuses view=None
    await reply(interaction, private=private, **message_for(cards[0]), **buttons)
    if view is not None:
        view.origin = interaction


async def in_time(interaction: discord.Interaction[Any], work: Awaitable[T], *, private: bool) -> T:
    """Await `work`, deferring the interaction if it is slow, so Discord hears from us in time.

    The clock starts at the interaction's first call here (its permission check, usually),
    not at each call: a slow check followed by slow work still defers by DEFER_AFTER.
    A timer, not a task, watches the clock: most answers finish long before it, and run
    inline at no extra cost.
    """
    loop = asyncio.get_running_loop()
    defer_at: float = interaction.extras.setdefault(DEFER_AT_KEY, loop.time() + DEFER_AFTER)
    deferring: list[asyncio.Task[Any]] = []

    def defer() -> None:
        if not interaction.response.is_done():
            deferring.append(
                asyncio.ensure_future(interaction.response.defer(ephemeral=private, thinking=True))
            )

    timer = loop.call_at(defer_at, defer)
    try:
        result = await work
    except BaseException:
        timer.cancel()
        # The error handler answers next: it must find the deferral done, not in flight.
        await asyncio.gather(*deferring, return_exceptions=True)
        raise
    timer.cancel()
    for task in deferring:
        await task
    return result


async def answer(
    interaction: discord.Interaction[Any],
    work: Awaitable[Sequence[Card]],
    *,
    private: bool,
) -> None:
    """Run `work` and send its cards, deferring first if it is slow.

    Errors (including UserError) propagate to the tree's error handler, which answers
    privately, so nothing is left unanswered.
    """
    cards = await in_time(interaction, work, private=private)
    await send_cards(interaction, cards, private=private)


def require_server_install(interaction: discord.Interaction[Any]) -> None:
    """Server-only commands act on the server's own install of the bot (its channels, its
    settings). Discord offers them nowhere else; one that still arrives from a DM, or from a
    server the bot is not in through a member's own install, is refused with the reason."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    if not interaction.is_guild_integration():
        raise app_commands.CheckFailure(NOT_INSTALLED_HERE)


ChoiceSource = Callable[[str], Sequence[tuple[str, str]]]


def autocomplete(source: ChoiceSource, current: str) -> list[app_commands.Choice[str]]:
    """Choices within Discord's limits, or an empty list: never an error.

    discord.py swallows autocomplete exceptions and leaves the member's menu hanging,
    so failures become an empty menu here instead.
    """
    try:
        pairs = source(current)
    except Exception:
        log.exception("autocomplete failed for %r", current[:100])
        return []
    return [app_commands.Choice(name=name, value=value) for name, value in pairs[:25]]
