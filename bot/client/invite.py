"""Inviting pledgebot to a server: the permissions it uses, in one list, and the URL; and
the URL that installs it on a member's own account.

The list is what the bot needs in a briefing or alert channel, each for a reason a
moderator can check; the invite asks for exactly these, and the README shows the same
list (tests/test_invite.py keeps the two together). Nothing here asks for Administrator
or for privileged intents.
"""

from __future__ import annotations

import discord

# (discord.py's name for the permission, Discord's label, why pledgebot needs it)
BOT_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("view_channel", "View Channels", "see the channels briefings and alerts go to"),
    ("send_messages", "Send Messages", "post briefings and pledge alerts"),
    ("send_messages_in_threads", "Send Messages in Threads", "post briefings in threads"),
    ("embed_links", "Embed Links", "every briefing, alert and answer is an embed"),
    ("attach_files", "Attach Files", "the status chart in digest briefings"),
    (
        "read_message_history",
        "Read Message History",
        "after a crash, find a post already made instead of posting it twice",
    ),
)
SCOPES = ("bot", "applications.commands")


def bot_permissions() -> discord.Permissions:
    return discord.Permissions(**{name: True for name, _, _ in BOT_PERMISSIONS})


def server_invite_url(client_id: int) -> str:
    """Discord's page for adding the bot to a server, asking for `BOT_PERMISSIONS` only."""
    return discord.utils.oauth_url(client_id, permissions=bot_permissions(), scopes=SCOPES)


# A user install asks for no permissions and no bot: the member commands answer only
# through the interaction, wherever the member uses them.
USER_INSTALL_SCOPES = ("applications.commands",)
USER_INSTALL = 1  # Discord's integration_type for an install to a user's own account


def user_install_url(client_id: int) -> str:
    """Discord's page for a member to add pledgebot to their own account (a user install).

    discord.py's `oauth_url` has no `integration_type`; Discord's OAuth2 URL takes it as a
    query parameter (Application, Install Links; OAuth2, Authorization URL)."""
    url = discord.utils.oauth_url(client_id, scopes=USER_INSTALL_SCOPES)
    return f"{url}&integration_type={USER_INSTALL}"
