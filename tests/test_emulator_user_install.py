"""Members who install the app on their own account, on the local Discord: a bare discord.py
bot whose commands declare `integration_types` and `contexts`, used in a server with the bot,
in one without it, in the DM with the bot and in a group DM between users.

What Discord does, the emulator does (Application Commands, Contexts; Receiving and
Responding, Interaction object and Authorizing Integration Owners Object; Permissions,
USE_EXTERNAL_APPS): a command is offered only where one of its installs reaches the user;
`context` and `authorizing_integration_owners` say which; an app whose bot is not there
answers only through the interaction (its REST calls there are refused), gets at most 5
followups, and answers privately where the member may not use external apps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.local import ChannelState, CommandUsageError, Emulator, GuildState, UserState
from bot.local.models import Overwrite
from tests.test_emulator import GUILDS_ONLY, QuickBot, running, take_violations

EPHEMERAL = 1 << 6
SEND_MESSAGES, USE_EXTERNAL_APPS = 1 << 11, 1 << 50
# Discord's change log (calculated permissions): an app without its bot in a server has the
# channel's @everyone permissions plus these; in a DM between users, these and @everyone.
ATTACH_AND_EMBED = discord.Permissions(attach_files=True, embed_links=True).value
PRIVATE_APP_PERMISSIONS = ATTACH_AND_EMBED | discord.Permissions(mention_everyone=True).value


class Again(discord.ui.View):
    """A button on an answer, to see what a click on it carries."""

    def __init__(self, seen: dict[str, Any]) -> None:
        super().__init__(timeout=None)
        self.seen = seen

    @discord.ui.button(label="Again", custom_id="lookup:again")
    async def again(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        self.seen["again"] = interaction
        await interaction.response.send_message("again", ephemeral=True)


def user_app_bot(seen: dict[str, Any]) -> commands.Bot:
    """/lookup goes everywhere (both installs, all contexts); /setup is for servers that
    installed the app; /chatty sends `count` followups; /here is a guild command."""
    bot = QuickBot(
        command_prefix=commands.when_mentioned, intents=GUILDS_ONLY, guild_ready_timeout=0.05
    )

    @bot.tree.command(name="lookup", description="Answers anywhere")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def lookup(interaction: discord.Interaction, private: bool = False) -> None:
        seen["lookup"] = interaction
        await interaction.response.send_message("found", ephemeral=private, view=Again(seen))

    @bot.tree.command(name="setup", description="For servers that installed the app")
    @app_commands.allowed_installs(guilds=True, users=False)
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    async def setup(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("set up", ephemeral=True)

    @bot.tree.command(name="chatty", description="Many followups")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def chatty(interaction: discord.Interaction, count: int) -> None:
        await interaction.response.send_message("here they come", ephemeral=True)
        for number in range(count):
            try:
                await interaction.followup.send(f"followup {number + 1}", ephemeral=True)
            except discord.HTTPException as refused:
                seen["refused"] = refused
                return

    @app_commands.command(name="here", description="Only in one server")
    async def here(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("here", ephemeral=True)

    seen["here"] = here
    return bot


@dataclass
class Places:
    emu: Emulator
    bot: commands.Bot
    home: GuildState  # the bot is in it
    away: GuildState  # the bot is not
    fan: UserState  # installed the app on their account
    friend: UserState  # did not
    seen: dict[str, Any] = field(default_factory=dict)

    @property
    def away_general(self) -> ChannelState:
        return self.away.channels["general"]


@contextlib.asynccontextmanager
async def places() -> AsyncIterator[Places]:
    async with Emulator() as emu:
        home = emu.add_guild("Home", channels=("general",))
        away = emu.add_guild("Away", channels=("general", "quiet"), bot_member=False)
        fan, friend = emu.add_user("fan"), emu.add_user("friend")
        emu.install_for_user(fan)
        seen: dict[str, Any] = {}
        bot = user_app_bot(seen)
        async with running(emu, bot):
            bot.tree.add_command(seen.pop("here"), guild=discord.Object(home.id))
            await bot.tree.sync()
            await bot.tree.sync(guild=discord.Object(home.id))
            yield Places(emu, bot, home, away, fan, friend, seen)
        assert emu.unhandled == []


@pytest.fixture
async def p() -> AsyncIterator[Places]:
    async with places() as value:
        yield value


async def test_commands_keep_their_installs_and_contexts(p: Places) -> None:
    registered = {c["name"]: c for c in p.emu.commands()}
    assert (registered["lookup"]["integration_types"], registered["lookup"]["contexts"]) == (
        [0, 1],
        [0, 1, 2],
    )
    assert (registered["setup"]["integration_types"], registered["setup"]["contexts"]) == ([0], [0])
    # what the command left out, Discord fills in: the server install, every context (null)
    bare = [{"name": "plain", "description": "No installs given", "type": 1}]
    [echoed] = await p.bot.http.bulk_upsert_global_commands(p.emu.application_id, bare)
    assert (echoed["integration_types"], echoed["contexts"]) == ([0], None)


@pytest.mark.parametrize(
    ("field_name", "value"), [("integration_types", [0, 2]), ("contexts", [0, 3]), ("contexts", 1)]
)
async def test_unknown_installs_or_contexts_are_refused(
    p: Places, field_name: str, value: Any
) -> None:
    bad = [{"name": "odd", "description": "Odd", "type": 1, field_name: value}]
    with pytest.raises(discord.HTTPException) as refused:
        await p.bot.http.bulk_upsert_global_commands(p.emu.application_id, bad)
    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert field_name in str(take_violations(p.emu))


async def test_in_a_server_without_the_bot_only_the_interaction_answers(p: Places) -> None:
    before = len(p.emu.requests)
    result = await p.emu.run_command(p.away, "lookup", user=p.fan)
    assert (result.callback_type, result.ephemeral) == (4, False)
    assert result.message is not None and result.message["content"] == "found"
    sent = result.payload
    assert (sent["context"], sent["guild_id"]) == (0, str(p.away.id))
    assert sent["authorizing_integration_owners"] == {"1": str(p.fan.id)}
    assert sent["guild"] == {"id": str(p.away.id), "locale": "en-US", "features": []}
    assert sent["member"]["user"]["id"] == str(p.fan.id) and "permissions" in sent["member"]
    everyone = p.away.everyone_channel_permissions(p.away_general)
    assert int(sent["app_permissions"]) == everyone | ATTACH_AND_EMBED
    # discord.py: a partial guild it does not cache, the user's install, a partial channel
    interaction: discord.Interaction = p.seen["lookup"]
    assert interaction.guild_id == p.away.id and p.bot.get_guild(p.away.id) is None
    assert interaction.is_user_integration() and not interaction.is_guild_integration()
    assert interaction.context.guild and not interaction.context.dm_channel
    # the bot saw no gateway event from there, and only interaction routes were used
    assert all(r.path.startswith(("/interactions/", "/webhooks/")) for r in p.emu.requests[before:])
    channel = interaction.channel
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as refused:
        await channel.send("posting where I am not")
    assert refused.value.code == 50001  # Missing Access, as Discord answers
    with pytest.raises(discord.Forbidden):
        await p.bot.fetch_channel(p.away_general.id)
    with pytest.raises(discord.Forbidden):  # Missing Access, not Unknown Guild
        await p.bot.fetch_guild(p.away.id)
    with pytest.raises(discord.Forbidden):  # guild commands for a server that never added it
        await p.bot.tree.sync(guild=discord.Object(p.away.id))
    assert p.emu.messages(p.away_general) == []
    private = await p.emu.run_command(p.away, "lookup", options={"private": True}, user=p.fan)
    assert private.ephemeral


async def test_a_button_on_such_an_answer_reaches_the_app_the_same_way(p: Places) -> None:
    result = await p.emu.run_command(p.away, "lookup", user=p.fan)
    assert result.message is not None
    metadata = result.message["interaction_metadata"]
    assert metadata["authorizing_integration_owners"] == {"1": str(p.fan.id)}
    clicked = await p.emu.click_button(result.message, "lookup:again", user=p.fan)
    assert clicked.payload["authorizing_integration_owners"] == {"1": str(p.fan.id)}
    assert clicked.payload["context"] == 0 and clicked.ephemeral
    assert p.seen["again"].is_user_integration()


async def test_commands_are_offered_only_where_an_install_reaches(p: Places) -> None:
    with pytest.raises(CommandUsageError, match="has not installed the app"):
        await p.emu.run_command(p.away, "lookup", user=p.friend)
    with pytest.raises(CommandUsageError, match="leave out user installs"):
        await p.emu.run_command(p.away, "setup", user=p.fan)
    with pytest.raises(CommandUsageError, match="not available in the DM with the bot"):
        await p.emu.run_command(None, "setup", user=p.fan, channel=p.emu.dm_with_bot(p.fan))
    group = p.emu.add_private_channel(p.fan, p.friend)
    with pytest.raises(CommandUsageError, match="not available in a private channel"):
        await p.emu.run_command(None, "setup", user=p.fan, channel=group)
    with pytest.raises(CommandUsageError, match="not registered"):  # a guild command
        await p.emu.run_command(p.away, "here", user=p.fan)
    with pytest.raises(CommandUsageError, match="not registered"):
        await p.emu.run_command(None, "here", user=p.fan, channel=p.emu.dm_with_bot(p.fan))
    assert (await p.emu.run_command(p.home, "here", user=p.fan)).ephemeral
    assert p.emu.unhandled == []


async def test_in_a_server_with_the_bot_each_install_that_reaches_is_named(p: Places) -> None:
    both = await p.emu.run_command(p.home, "lookup", user=p.fan)
    owners = {"0": str(p.home.id), "1": str(p.fan.id)}
    assert both.payload["authorizing_integration_owners"] == owners
    server = await p.emu.run_command(p.home, "setup", user=p.fan)
    assert server.payload["authorizing_integration_owners"] == {"0": str(p.home.id)}
    plain = await p.emu.run_command(p.home, "lookup", user=p.friend)
    assert plain.payload["authorizing_integration_owners"] == {"0": str(p.home.id)}
    assert p.seen["lookup"].is_guild_integration()


async def test_in_the_dm_with_the_bot(p: Places) -> None:
    # sharing a server with the bot: its server install reaches the DM ("0": "0")
    shared = await p.emu.run_command(
        None, "lookup", user=p.friend, channel=p.emu.dm_with_bot(p.friend)
    )
    assert (shared.payload["context"], shared.payload["authorizing_integration_owners"]) == (
        1,
        {"0": "0"},
    )
    assert "guild_id" not in shared.payload and "member" not in shared.payload
    # sharing none: only their own install
    loner = p.emu.add_user("loner", in_guilds=False)
    with pytest.raises(CommandUsageError, match="no server is shared"):
        await p.emu.run_command(None, "lookup", user=loner, channel=p.emu.dm_with_bot(loner))
    p.emu.install_for_user(loner)
    alone = await p.emu.run_command(None, "lookup", user=loner, channel=p.emu.dm_with_bot(loner))
    assert alone.payload["authorizing_integration_owners"] == {"1": str(loner.id)}
    assert not alone.ephemeral
    interaction: discord.Interaction = p.seen["lookup"]
    assert interaction.context.dm_channel and isinstance(interaction.channel, discord.DMChannel)
    with pytest.raises(CommandUsageError, match="not in the DM"):
        await p.emu.run_command(None, "lookup", user=p.fan, channel=p.emu.dm_with_bot(loner))


async def test_in_a_private_channel_between_users(p: Places) -> None:
    group = p.emu.add_private_channel(p.fan, p.friend)
    result = await p.emu.run_command(None, "lookup", user=p.fan, channel=group)
    assert (result.callback_type, result.ephemeral) == (4, False)
    sent = result.payload
    assert (sent["context"], sent["authorizing_integration_owners"]) == (2, {"1": str(p.fan.id)})
    assert "guild_id" not in sent and sent["user"]["id"] == str(p.fan.id)
    assert int(sent["app_permissions"]) == PRIVATE_APP_PERMISSIONS
    assert [u["id"] for u in sent["channel"]["recipients"]] == [str(p.fan.id), str(p.friend.id)]
    interaction: discord.Interaction = p.seen["lookup"]
    assert interaction.context.private_channel and interaction.is_user_integration()
    with pytest.raises(discord.NotFound):  # no channel the bot knows
        await p.bot.http.send_message(group.id, params=discord.http.handle_message_parameters("x"))
    with pytest.raises(CommandUsageError, match="has not installed the app"):
        await p.emu.run_command(None, "lookup", user=p.friend, channel=group)
    stranger = p.emu.add_user("stranger")
    p.emu.install_for_user(stranger)
    with pytest.raises(CommandUsageError, match="not in the DM"):
        await p.emu.run_command(None, "lookup", user=stranger, channel=group)
    three = p.emu.add_private_channel(p.fan, p.friend, stranger)
    grouped = await p.emu.run_command(None, "lookup", user=stranger, channel=three)
    assert grouped.payload["channel"]["type"] == 3


async def test_without_use_external_apps_every_answer_is_ephemeral(p: Places) -> None:
    quiet = p.away.channels["quiet"]
    quiet.overwrites.append(Overwrite(p.away.id, 0, deny=USE_EXTERNAL_APPS))  # @everyone
    muted = await p.emu.run_command(p.away, "lookup", user=p.fan, channel=quiet)
    assert muted.ephemeral  # asked for public, shown only to them
    assert not (await p.emu.run_command(p.away, "lookup", user=p.fan)).ephemeral
    quiet.overwrites[0] = Overwrite(p.away.id, 0, deny=SEND_MESSAGES)
    assert (await p.emu.run_command(p.away, "lookup", user=p.fan, channel=quiet)).ephemeral
    # where the bot is installed, the server's own permissions decide as ever
    assert not (await p.emu.run_command(p.home, "lookup", user=p.fan)).ephemeral


async def test_only_five_followups_where_only_the_user_install_reaches(p: Places) -> None:
    result = await p.emu.run_command(p.away, "chatty", options={"count": 6}, user=p.fan)
    await asyncio.wait_for(_refused(p), 5)
    assert len(result.followups) == 5
    refused: discord.HTTPException = p.seen["refused"]
    assert (refused.status, refused.code) == (400, 40094)
    assert "more than 5 followups" in take_violations(p.emu)[0]
    p.seen.pop("refused")
    home = await p.emu.run_command(p.home, "chatty", options={"count": 6}, user=p.fan)
    await p.emu._world.wait_until(lambda: len(home.followups) == 6, 5, "six followups")
    assert "refused" not in p.seen


async def _refused(p: Places) -> None:
    await p.emu._world.wait_until(lambda: "refused" in p.seen, 5, "the sixth followup refused")


async def test_a_server_without_the_bot_sends_it_no_gateway_events(p: Places) -> None:
    events: list[tuple[str, Any]] = []
    dispatch = p.emu._gateway.dispatch

    def recording(event: str, data: Any, **kwargs: Any) -> None:
        events.append((event, data))
        dispatch(event, data, **kwargs)

    p.emu._gateway.dispatch = recording  # type: ignore[method-assign]
    try:
        p.emu.add_channel(p.away, "news")
        p.emu.add_role(p.away, "fans")
        p.emu.add_member(p.away, p.emu.add_user("newcomer", in_guilds=False), permissions=8)
        later = p.emu.add_user("later")
        assert later.id in p.away.members  # every user joins, as in servers with the bot
        await p.emu.run_command(p.away, "lookup", options={"private": False}, user=p.fan)
    finally:
        p.emu._gateway.dispatch = dispatch  # type: ignore[method-assign]
    about_away = [e for e, data in events if str(p.away.id) in str(data)]
    assert about_away == ["INTERACTION_CREATE"]  # not even MESSAGE_CREATE for the answer
    assert p.bot.get_guild(p.away.id) is None
