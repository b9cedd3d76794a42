"""/follow add | list | remove | clear | resume, and the buttons on alert DMs.

What each answer says is `bot.follows.members.FollowDesk`, without Discord; here
`FollowCommands` and `alert_buttons` only parse what Discord sends and answer privately.
The buttons are `DynamicItem`s: they match the custom ids `bot.follows.compose` gives alert
DMs, so they work on any alert ever sent, after a restart and in a DM.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands

from bot.client.app import report_error
from bot.follows.compose import SHOW_PREFIX, STOP_PREFIX
from bot.follows.follows import FOLLOW_KINDS, FollowKind
from bot.follows.members import ITEM_HELP, FollowDesk
from bot.pledges.cards import Card
from commands.ui import answer, autocomplete

log = logging.getLogger(__name__)


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class FollowCommands(app_commands.Group):
    """Every answer is private: what a member follows is nobody else's business."""

    def __init__(self, desk: FollowDesk) -> None:
        super().__init__(name="follow", description="Get a DM when a pledge's status changes")
        self.desk = desk

    @app_commands.command(name="add", description="Follow a pledge, a power or a whole statement")
    @app_commands.describe(item=ITEM_HELP)
    async def add(
        self, interaction: discord.Interaction[Any], item: app_commands.Range[str, 1, 200]
    ) -> None:
        await answer(interaction, self.desk.add(interaction.user.id, item), private=True)

    @app_commands.command(name="list", description="What you follow, and whether alerts are paused")
    async def list_(self, interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, self.desk.listing(interaction.user.id), private=True)

    @app_commands.command(name="remove", description="Stop following one item")
    @app_commands.describe(item="Start typing one of your follows")
    async def remove(
        self, interaction: discord.Interaction[Any], item: app_commands.Range[str, 1, 200]
    ) -> None:
        await answer(interaction, self.desk.remove(interaction.user.id, item), private=True)

    @app_commands.command(
        name="clear", description="Stop following everything and delete all I keep about it"
    )
    async def clear(self, interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, self.desk.clear(interaction.user.id), private=True)

    @app_commands.command(name="resume", description="Get alerts again after they were paused")
    async def resume(self, interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, self.desk.resume(interaction.user.id), private=True)

    @add.autocomplete("item")
    async def item_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        await self.desk.services.fresh()
        return autocomplete(self.desk.choices, current)

    @remove.autocomplete("item")
    async def own_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        try:
            found = await self.desk.own_choices(interaction.user.id, current)
        except Exception:  # an empty menu rather than a hanging one, as `autocomplete` does
            log.exception("autocomplete of own follows failed")
            return []
        return autocomplete(lambda _: found, current)


# -- the buttons on alert DMs -----------------------------------------------------

SHOW_TEMPLATE = re.escape(SHOW_PREFIX) + r"(?P<slug>\S+)"
STOP_TEMPLATE = re.escape(STOP_PREFIX) + rf"(?P<kind>{'|'.join(FOLLOW_KINDS)}):(?P<slug>\S+)"

AlertButton = type[discord.ui.DynamicItem[discord.ui.Button[Any]]]


def alert_buttons(desk: FollowDesk) -> tuple[AlertButton, AlertButton]:
    """The "Show pledge" and "Stop alerts for this" buttons, for `Client.add_dynamic_items`.

    discord.py only logs what a dynamic item's callback raises: each answers its own
    errors privately, like the tree's error handler.
    """

    class ShowPledge(discord.ui.DynamicItem[discord.ui.Button[Any]], template=SHOW_TEMPLATE):
        def __init__(self, button: discord.ui.Button[Any], slug: str) -> None:
            super().__init__(button)
            self.slug = slug

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction[Any],
            item: discord.ui.Item[Any],
            match: re.Match[str],
            /,
        ) -> ShowPledge:
            assert isinstance(item, discord.ui.Button)
            return cls(item, match["slug"])

        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            try:
                await answer(interaction, desk.show(self.slug), private=True)
            except Exception as error:
                await report_error(interaction, error)

    class StopAlerts(discord.ui.DynamicItem[discord.ui.Button[Any]], template=STOP_TEMPLATE):
        def __init__(self, button: discord.ui.Button[Any], kind: FollowKind, slug: str) -> None:
            super().__init__(button)
            self.kind = kind
            self.slug = slug

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction[Any],
            item: discord.ui.Item[Any],
            match: re.Match[str],
            /,
        ) -> StopAlerts:
            assert isinstance(item, discord.ui.Button)
            kind = next(k for k in FOLLOW_KINDS if k == match["kind"])
            return cls(item, kind, match["slug"])

        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            async def stopped() -> list[Card]:
                await desk.services.fresh()
                return [await desk.stop(interaction.user.id, self.kind, self.slug)]

            try:
                await answer(interaction, stopped(), private=True)
            except Exception as error:
                await report_error(interaction, error)

    return ShowPledge, StopAlerts
