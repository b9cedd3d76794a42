"""Shared Discord plumbing for the command modules: cards to embeds, paging, deferral."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.app import report_error
from bot.cards import Card
from bot.delivery import embed_for

log = logging.getLogger(__name__)

# Answer directly when the work is done within this; otherwise defer first, so the
# 3-second acknowledgement deadline is always met.
DEFER_AFTER = 1.5
PAGE_TIMEOUT = 600.0  # well inside the 15-minute life of an interaction token


class PageView(discord.ui.View):
    """Previous/next buttons that only the member who asked can press."""

    def __init__(self, pages: Sequence[Card], owner_id: int) -> None:
        super().__init__(timeout=PAGE_TIMEOUT)
        self.pages = list(pages)
        self.owner_id = owner_id
        self.index = 0
        self.origin: discord.Interaction[Any] | None = None
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
        await interaction.response.edit_message(embed=embed_for(self.pages[self.index]), view=self)

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


async def send_cards(
    interaction: discord.Interaction[Any], cards: Sequence[Card], *, private: bool
) -> None:
    """Send the first card, with page buttons when there are more."""
    embed = embed_for(cards[0])
    view = PageView(cards, interaction.user.id) if len(cards) > 1 else None
    if interaction.response.is_done():
        if view is not None:
            await interaction.followup.send(embed=embed, view=view, ephemeral=private)
        else:
            await interaction.followup.send(embed=embed, ephemeral=private)
    elif view is not None:
        await interaction.response.send_message(embed=embed, view=view, ephemeral=private)
    else:
        await interaction.response.send_message(embed=embed, ephemeral=private)
    if view is not None:
        view.origin = interaction


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
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER)
    if not done:
        await interaction.response.defer(ephemeral=private, thinking=True)
    await send_cards(interaction, await task, private=private)


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
