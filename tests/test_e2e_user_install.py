"""Members who install pledgebot on their own account: the real bot, the emulator, real sockets.

The member commands (/pledge, /power, /claim, /about, /follow) declare both installs and every
context; /briefing and /operator only the server install, in servers. A member who installed
pledgebot uses the member commands in a server the bot is not in, in their DM with the bot and
in a DM between users: each is answered through the interaction alone (the bot makes no
channel or guild call there), publicly or privately as asked, and the interaction says where
it came from (`context`) and which install reached it (`authorizing_integration_owners`).
What is stored (/follow) is checked on both backends (`[sqlite]`, `[postgresql]`).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.client.app import PledgeBot
from bot.client.runner import console_bot
from bot.config import Config
from bot.local import ChannelState, CommandUsageError, GuildState, InteractionResult, UserState
from bot.local.console import Console
from commands.ui import NOT_INSTALLED_HERE
from tests.conftest import DATA_DIR
from tests.e2e import World, embed_text, running_bot, with_config, world, world_on_both_backends
from tests.test_e2e_follow_dms import delivery_states, operated, wait_until
from tests.test_robustness_support import wait_for

__all__ = ["world_on_both_backends"]  # the `w` fixture, on both backends

pytestmark = pytest.mark.e2e

PLEDGE = "europol-partnership"
POWER = "scpo"
STATEMENT = "smuggling-gangs"
MEMBER_COMMANDS = {"pledge", "power", "claim", "about", "follow"}
SERVER_COMMANDS = {"briefing", "operator"}
ADMINISTRATOR = 1 << 3
# Each member command once, with what it needs: (command, options).
MEMBER_USES: list[tuple[str, dict[str, Any]]] = [
    ("pledge show", {"pledge": PLEDGE}),
    ("pledge list", {}),
    ("power show", {"power": POWER}),
    ("claim list", {}),
    ("about", {"statement": STATEMENT}),  # pages, and a chart attached
    ("follow add", {"item": f"pledge:{PLEDGE}"}),
]


@pytest.fixture(name="one")
async def sqlite_world(tmp_path: Path) -> AsyncIterator[World]:
    """For what the store plays no part in: SQLite only."""
    async with world(tmp_path) as value:
        yield value


def away(w: World) -> GuildState:
    """A server pledgebot is not in; every user of the world is a member of it."""
    return w.emu.add_guild("Away", channels=("general",), bot_member=False)


@contextmanager
def seen_by_the_bot(bot: PledgeBot) -> Iterator[list[discord.Interaction[Any]]]:
    """Every interaction discord.py hands the bot, as it read it."""
    seen: list[discord.Interaction[Any]] = []

    async def on_interaction(interaction: discord.Interaction[Any]) -> None:
        seen.append(interaction)

    bot.add_listener(on_interaction)
    try:
        yield seen
    finally:
        bot.remove_listener(on_interaction)


def channel_or_guild_calls(w: World, since: int) -> list[str]:
    """REST calls the bot made to channels or guilds (not through an interaction)."""
    return [
        f"{r.method} {r.path}"
        for r in w.emu.requests[since:]
        if r.path.startswith(("/channels/", "/guilds/", "/users/@me/channels"))
    ]


async def use_every_member_command(
    w: World, guild: GuildState | None, user: UserState, channel: ChannelState | None
) -> list[InteractionResult]:
    results = []
    for name, options in MEMBER_USES:
        result = await w.emu.run_command(guild, name, options=options, user=user, channel=channel)
        assert result.message is not None, name
        assert "went wrong" not in embed_text(result.message), (name, embed_text(result.message))
        results.append(result)
    return results


async def test_each_command_says_where_it_can_be_installed_and_used(one: World) -> None:
    async with running_bot(one):
        registered = {c["name"]: c for c in one.emu.commands()}
    assert set(registered) == MEMBER_COMMANDS | SERVER_COMMANDS
    for name in MEMBER_COMMANDS:
        command = registered[name]
        assert (command["integration_types"], command["contexts"]) == ([0, 1], [0, 1, 2]), name
    for name in SERVER_COMMANDS:
        command = registered[name]
        assert (command["integration_types"], command["contexts"]) == ([0], [0]), name
        assert command["default_member_permissions"] is not None, name  # moderators, admins


async def test_member_commands_in_a_server_without_the_bot(w: World) -> None:
    there = away(w)
    w.emu.install_for_user(w.member)
    async with running_bot(w) as bot:
        since = len(w.emu.requests)
        with seen_by_the_bot(bot) as seen:
            results = await use_every_member_command(w, there, w.member, None)
            private = await w.emu.run_command(
                there, "pledge show", options={"pledge": PLEDGE, "private": True}, user=w.member
            )
        shown, listed, power, claims, about, followed = results
        assert "Europol" in embed_text(shown.message) and not shown.ephemeral
        assert private.ephemeral and "Europol" in embed_text(private.message)
        assert not power.ephemeral and not claims.ephemeral and not about.ephemeral
        assert followed.ephemeral and "You now follow" in embed_text(followed.message)
        assert "Europol" in embed_text(listed.message)
        # the statement's pages (the first with its chart) turn through the interaction too
        assert about.message is not None and w.emu.files(about.message)
        turned = await w.emu.click_button(about.message, label="Next ▶", user=w.member)
        assert turned.callback_type == 7 and turned.message is not None
        counter = [b["label"] for row in turned.message["components"] for b in row["components"]]
        assert counter[1].startswith("2/")  # ◀ Previous, 2/N, Next ▶
        # it came from a server (context 0) through the member's own install only
        for result in [*results, private, turned]:
            sent = result.payload
            assert sent["context"] == 0 and sent["guild_id"] == str(there.id)
            assert sent["authorizing_integration_owners"] == {"1": str(w.member.id)}
        assert all(i.guild_id == there.id and i.is_user_integration() for i in seen)
        assert not any(i.is_guild_integration() for i in seen)
        assert bot.get_guild(there.id) is None
        choices = await w.emu.autocomplete(
            there, "pledge show", focused="pledge", value="europ", user=w.member
        )
        assert PLEDGE in [c["value"] for c in choices]
        # answered through the interactions alone: nothing posted, fetched or opened
        assert channel_or_guild_calls(w, since) == []
        assert w.emu.messages(there.channels["general"]) == []
        # and what /follow stored is theirs wherever they ask
        at_home = await w.emu.run_command(w.guild, "follow list", user=w.member)
        assert "Europol" in embed_text(at_home.message)
    assert w.emu.violations == []


async def test_member_commands_in_a_dm_and_in_a_dm_between_users(w: World) -> None:
    loner = w.emu.add_user("loner", in_guilds=False)  # shares no server with the bot
    w.emu.install_for_user(loner)
    w.emu.install_for_user(w.member)
    between = w.emu.add_private_channel(w.member, loner)
    async with running_bot(w) as bot:
        since = len(w.emu.requests)
        with seen_by_the_bot(bot) as seen:
            in_dm = await use_every_member_command(w, None, loner, w.emu.dm_with_bot(loner))
            privately = await use_every_member_command(w, None, w.member, between)
        for result in in_dm:
            assert result.payload["context"] == 1  # the DM with the bot
            assert result.payload["authorizing_integration_owners"] == {"1": str(loner.id)}
        for result in privately:
            assert result.payload["context"] == 2  # a DM between users
            assert result.payload["authorizing_integration_owners"] == {"1": str(w.member.id)}
        assert not privately[0].ephemeral and "Europol" in embed_text(privately[0].message)
        assert [i.context.dm_channel for i in seen[: len(in_dm)]] == [True] * len(in_dm)
        assert all(i.context.private_channel for i in seen[len(in_dm) :])
        assert all(i.guild_id is None and i.is_user_integration() for i in seen)
        assert channel_or_guild_calls(w, since) == []
        assert w.emu.messages(between) == []
        listed = await w.emu.run_command(
            None, "follow list", user=loner, channel=w.emu.dm_with_bot(loner)
        )
        assert "Europol" in embed_text(listed.message)
    assert w.emu.violations == []


async def test_server_commands_stay_in_servers_that_installed_the_bot(one: World) -> None:
    there = away(one)
    operator = one.emu.add_user("operator", permissions=ADMINISTRATOR)
    for user in (one.moderator, operator):
        one.emu.install_for_user(user)
    between = one.emu.add_private_channel(one.moderator, operator)
    config = with_config(one, operator_ids=frozenset({operator.id}))
    status = {
        "pledge": PLEDGE,
        "status": "in-progress",
        "note": "Talks",
        "evidence": "https://x.org",
    }
    uses = [("briefing list", one.moderator, {}), ("operator status", operator, status)]
    async with running_bot(one, config):
        for name, user, options in uses:
            elsewhere: list[tuple[GuildState | None, ChannelState | None]] = [
                (there, None),
                (None, one.emu.dm_with_bot(user)),
                (None, between),
            ]
            for guild, channel in elsewhere:
                with pytest.raises(CommandUsageError, match="not available"):
                    await one.emu.run_command(
                        guild, name, options=options, user=user, channel=channel
                    )
            home = await one.emu.run_command(one.guild, name, options=options, user=user)
            assert home.ephemeral and "went wrong" not in embed_text(home.message)
            assert home.payload["authorizing_integration_owners"] == {"0": str(one.guild.id)}
            # a modified client sending it anyway: the bot refuses, privately, and says why
            forced = await one.emu.run_command(
                there, name, options=options, user=user, unchecked=True
            )
            assert forced.ephemeral and embed_text(forced.message) == NOT_INSTALLED_HERE


async def test_alerts_to_a_member_sharing_no_server_pause_and_say_why(one: World) -> None:
    operator, config = operated(one)
    loner = one.emu.add_user("loner", in_guilds=False)
    one.emu.install_for_user(loner)
    dm = one.emu.dm_with_bot(loner)
    async with running_bot(one, config) as bot:
        followed = await one.emu.run_command(
            None, "follow add", options={"item": f"pledge:{PLEDGE}"}, user=loner, channel=dm
        )
        assert "share a server" in embed_text(followed.message)
        await operator.rate(PLEDGE, "in-progress")

        async def refused() -> bool:
            return await delivery_states(bot, loner) == ["failed"]

        await wait_until(refused, "the refused DM recorded")  # Discord: 403 50007
        assert one.emu.dms(loner) == []
        answered = await one.emu.run_command(None, "about", user=loner, channel=dm)
        await wait_for(lambda: len(answered.followups) == 1, 10, "the pause notice")
        [notice] = answered.followups
        assert notice["flags"] & (1 << 6)  # only they see it
        assert "share no server" in notice["content"] and "/follow resume" in notice["content"]
        listed = await one.emu.run_command(None, "follow list", user=loner, channel=dm)
        assert "paused" in embed_text(listed.message)


def test_the_console_acts_as_a_member_who_installed_pledgebot(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(
        Config(database_path=tmp_path / "c.db", content_dir=DATA_DIR), console_bot, out
    )
    console.start()
    said: dict[str, str] = {}
    try:
        for line in (
            ":in other-server",
            "/pledge show pledge:europol-partnership",
            ":install on",
            "/pledge show pledge:europol-partnership",
            "/briefing list",
            ":in dm",
            "/about",
            ":in group-dm",
            "/power list",
            ":in #general",
            "/claim list",
        ):
            start = len(out.getvalue())
            assert console.run_line(line)
            said[line] = said.get(line, "") + out.getvalue()[start:]
    finally:
        console.stop()
    shown = said["/pledge show pledge:europol-partnership"]
    refused, answered = shown.split("┏", 1)
    assert "has not installed the app" in refused  # before :install on
    assert "New partnership with Europol" in answered
    assert "not available" in said["/briefing list"]
    assert "About pledgebot" in said["/about"]
    assert "Legal powers" in said["/power list"]
    assert "The statement says" in said["/claim list"]
    assert "pledgebot is not in" in said[":in other-server"]
