"""Slash commands: thin Discord adapters over `bot`. `install` adds them all to a tree."""

from __future__ import annotations

from typing import Any

from discord import app_commands

from bot.briefings.admin import BriefingAdmin
from bot.follows.follows import Follows
from bot.follows.members import FollowDesk
from bot.pledges.services import Services
from bot.pledges.suggestions import Suggestions
from commands.about import about_command
from commands.briefing import BriefingCommands
from commands.claim import ClaimCommands
from commands.follow import FollowCommands, alert_buttons
from commands.operator import OperatorCommands, review_buttons
from commands.pledge import PledgeCommands
from commands.power import PowerCommands


def install(
    tree: app_commands.CommandTree[Any], services: Services, briefings: BriefingAdmin
) -> None:
    follows = Follows(services.store.db)
    desk = FollowDesk(services, follows)
    suggestions = Suggestions(services.store.db)
    tree.add_command(PledgeCommands(services, suggestions))
    tree.add_command(PowerCommands(services))
    tree.add_command(ClaimCommands(services))
    tree.add_command(about_command(services))
    tree.add_command(OperatorCommands(services, suggestions))
    tree.add_command(BriefingCommands(briefings, follows, services))
    tree.add_command(FollowCommands(desk))
    # The buttons on alert DMs: matched by custom id, so any alert's buttons work, even
    # one sent before this process started.
    tree.client.add_dynamic_items(*alert_buttons(desk))
    # The review buttons of /operator suggestions, likewise: they outlive a restart.
    tree.client.add_dynamic_items(*review_buttons(services, suggestions))
