"""The local Discord emulator, driven by a real discord.py bot over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.client.endpoints import apply_endpoints, reset_endpoints
from bot.local import ChannelState, CommandUsageError, Emulator, GuildState, UserState

PLEDGES = ["euro-adoption", "energy-price-cap", "eu-referendum", "housing-target"]
GUILDS_ONLY = discord.Intents.none() | discord.Intents(guilds=True)
COMMAND_NAMES = {"pledge", "vote", "feedback", "long", "slow", "reset"}


class VoteView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Yes", custom_id="vote:yes", style=discord.ButtonStyle.success)
    async def yes(
        self, interaction: discord.Interaction, button: discord.ui.Button[VoteView]
    ) -> None:
        await interaction.response.edit_message(
            content=f"{interaction.user.name} voted yes", view=None
        )

    @discord.ui.button(label="Later", custom_id="vote:later")
    async def later(
        self, interaction: discord.Interaction, button: discord.ui.Button[VoteView]
    ) -> None:
        await interaction.response.defer()  # type 6: acknowledge now, edit the message later
        await interaction.edit_original_response(content="maybe later")


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(label="Your feedback")


class QuickBot(commands.Bot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY (Discord's identify rate limit)."""


def build_bot(seen: dict[str, Any], intents: discord.Intents = GUILDS_ONLY) -> commands.Bot:
    """A bare bot with the command shapes pledgebot uses; `seen` captures what handlers got."""
    bot = QuickBot(
        command_prefix=commands.when_mentioned, intents=intents, guild_ready_timeout=0.05
    )
    pledge = app_commands.Group(name="pledge", description="Pledges")
    admin = app_commands.Group(name="admin", description="Admin tools", parent=pledge)

    @pledge.command(name="show", description="Show a pledge")
    async def show(interaction: discord.Interaction, pledge: str, private: bool = False) -> None:
        seen["show_user"] = interaction.user
        await interaction.response.send_message(f"Pledge: {pledge}", ephemeral=private)

    @show.autocomplete("pledge")
    async def pledge_names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if current == "all":  # more than Discord's 25
            return [app_commands.Choice(name=f"p{i}", value=f"p{i}") for i in range(26)]
        return [app_commands.Choice(name=p, value=p) for p in PLEDGES if current in p]

    @pledge.command(name="post", description="Post a pledge to a channel")
    async def post(
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        count: int,
        ratio: float,
        urgent: bool,
        role: discord.Role,
        member: discord.Member,
    ) -> None:
        await interaction.response.defer(thinking=True)
        seen.update(
            channel=channel, count=count, ratio=ratio, urgent=urgent, role=role, member=member
        )
        await asyncio.sleep(0.02)
        await interaction.followup.send(f"posted {count} to {channel.mention}")
        details = await interaction.followup.send("details", ephemeral=True, wait=True)
        await details.edit(content="details (edited)")

    @admin.command(name="refresh", description="Refresh sources")
    async def refresh(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.edit_original_response(content="refreshed")
        seen["original"] = (await interaction.original_response()).content

    @admin.command(name="purge", description="Reply, then delete the reply")
    async def purge(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("temporary")
        await interaction.delete_original_response()

    @bot.tree.command(name="vote", description="Vote on a pledge")
    async def vote(interaction: discord.Interaction, private: bool = False) -> None:
        await interaction.response.send_message(
            "Support this pledge?", view=VoteView(), ephemeral=private
        )

    @bot.tree.command(name="feedback", description="Opens a form")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal())

    @bot.tree.command(name="long", description="Replies over the limit, then recovers")
    async def long(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("x" * 2001)
        except discord.HTTPException as error:
            seen["long_error"] = error
            await interaction.response.send_message("too long, sorry")

    @bot.tree.command(name="slow", description="Answers late, or never after deferring")
    async def slow(interaction: discord.Interaction, delay: float, defer: bool = False) -> None:
        if defer:
            await interaction.response.defer()
            return
        await asyncio.sleep(delay)
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as error:
            seen["slow_error"] = error

    @bot.tree.command(name="reset", description="Moderators only")
    @app_commands.default_permissions(manage_guild=True)
    async def reset(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("reset done")

    bot.tree.add_command(pledge)
    return bot


@contextlib.asynccontextmanager
async def running(emu: Emulator, bot: commands.Bot) -> AsyncIterator[commands.Bot]:
    """Log the bot in against the emulator and tear everything down cleanly."""
    apply_endpoints(emu.base_url, emu.gateway_url)
    task: asyncio.Task[None] | None = None
    try:
        await bot.login(emu.token)
        task = asyncio.create_task(bot.connect())
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        yield bot
    finally:
        await bot.close()
        if task is not None:
            await task
        reset_endpoints()


@dataclass
class Harness:
    emu: Emulator
    bot: commands.Bot
    guild: GuildState
    alice: UserState
    mod: UserState
    seen: dict[str, Any] = field(default_factory=dict)

    @property
    def general(self) -> ChannelState:
        return self.guild.channels["general"]

    def channel(self, state: ChannelState) -> discord.TextChannel:
        channel = self.bot.get_channel(state.id)
        assert isinstance(channel, discord.TextChannel)
        return channel


@contextlib.asynccontextmanager
async def harness(**emulator_options: Any) -> AsyncIterator[Harness]:
    async with Emulator(**emulator_options) as emu:
        guild = emu.add_guild("Demo", channels=("general", "briefings"))
        alice, mod = emu.add_user("alice"), emu.add_user("mod", manage_guild=True)
        seen: dict[str, Any] = {}
        async with running(emu, build_bot(seen)) as bot:
            await bot.tree.sync()
            yield Harness(emu, bot, guild, alice, mod, seen)
        assert emu.violations == [], "unexpected Discord-limit violations"
        assert emu.unhandled == [], "the bot used routes the emulator does not implement"


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as value:
        yield value


async def event(bot: commands.Bot, name: str) -> Any:
    """Wait for the bot to process a gateway event the emulator just dispatched."""
    return await bot.wait_for(name, timeout=2)


def take_violations(emu: Emulator) -> list[str]:
    found = list(emu.violations)
    emu.violations.clear()
    return found


async def test_bot_connects_and_sees_the_guild(h: Harness) -> None:
    guild = h.bot.get_guild(h.guild.id)
    assert guild is not None and guild.me is not None
    assert {c.name for c in guild.text_channels} == {"general", "briefings"}
    assert h.bot.application_id == h.emu.application_id == h.emu.bot_user.id
    assert h.emu.identify_count == 1
    assert h.emu.identified_intents == GUILDS_ONLY.value
    assert h.channel(h.general).permissions_for(guild.me).send_messages
    assert (h.emu.requests[0].method, h.emu.requests[0].path) == ("GET", "/users/@me")


async def test_sync_registers_commands_with_stable_ids(h: Harness) -> None:
    registered = {c["name"]: c for c in h.emu.commands()}
    assert set(registered) == COMMAND_NAMES
    subcommands = {o["name"]: o["type"] for o in registered["pledge"]["options"]}
    assert subcommands == {"show": 1, "post": 1, "admin": 2}
    assert registered["reset"]["default_member_permissions"] == str(
        discord.Permissions.manage_guild.flag
    )
    again = await h.bot.tree.sync()
    assert {c.name: c.id for c in again} == {n: int(c["id"]) for n, c in registered.items()}


async def test_guild_commands_take_precedence(h: Harness) -> None:
    target = discord.Object(h.guild.id)
    h.bot.tree.copy_global_to(guild=target)
    synced = await h.bot.tree.sync(guild=target)
    assert {c.guild_id for c in synced} == {h.guild.id}
    assert len(h.emu.commands(h.guild)) == len(COMMAND_NAMES)
    result = await h.emu.run_command(h.guild, "pledge show", options={"pledge": "x"}, user=h.alice)
    assert result.message is not None and result.message["content"] == "Pledge: x"


async def test_run_command_replies(h: Harness) -> None:
    result = await h.emu.run_command(
        h.guild, "pledge", subcommand="show", options={"pledge": "euro-adoption"}, user=h.alice
    )
    assert result.callback_type == 4
    assert result.message is not None and result.message["content"] == "Pledge: euro-adoption"
    assert result.latency is not None and 0 < result.latency < 1
    assert not result.ephemeral
    assert result.message["interaction_metadata"]["user"]["id"] == str(h.alice.id)


async def test_typed_options_and_deferred_followup(h: Harness) -> None:
    role = h.emu.add_role(h.guild, "Moderators", mentionable=True)
    briefings = h.guild.channels["briefings"]
    completed = asyncio.ensure_future(event(h.bot, "app_command_completion"))
    options = {
        "channel": briefings,
        "count": 3,
        "ratio": 0.5,
        "urgent": True,
        "role": role,
        "member": h.mod,
    }
    result = await h.emu.run_command(h.guild, "pledge post", options=options, user=h.alice)
    seen = h.seen
    assert isinstance(seen["channel"], discord.TextChannel) and seen["channel"].id == briefings.id
    assert (seen["count"], seen["ratio"], seen["urgent"]) == (3, 0.5, True)
    assert type(seen["count"]) is int and type(seen["ratio"]) is float
    assert isinstance(seen["role"], discord.Role) and seen["role"].id == role.id
    assert isinstance(seen["member"], discord.Member) and seen["member"].id == h.mod.id
    assert result.callback_type == 5
    assert result.message is not None
    assert result.message["content"] == f"posted 3 to <#{briefings.id}>"
    assert result.message["flags"] == 0  # the first followup replaced the "thinking" message
    await completed
    first, details = result.followups
    assert first["id"] == result.message["id"]
    assert (details["content"], details["flags"]) == ("details (edited)", 64)


async def test_deferred_ephemeral_edit_of_original(h: Harness) -> None:
    completed = asyncio.ensure_future(event(h.bot, "app_command_completion"))
    result = await h.emu.run_command(h.guild, "pledge admin refresh", user=h.alice)
    assert result.callback_type == 5
    assert result.ephemeral
    assert result.message is not None and result.message["content"] == "refreshed"
    assert result.followups == []
    await completed
    assert h.seen["original"] == "refreshed"


async def test_original_response_can_be_deleted(h: Harness) -> None:
    completed = asyncio.ensure_future(event(h.bot, "app_command_completion"))
    result = await h.emu.run_command(h.guild, "pledge admin purge", user=h.alice)
    assert result.callback_type == 4
    await completed
    assert result.message is None
    assert [m async for m in h.channel(h.general).history()] == []


async def test_modal_is_recorded(h: Harness) -> None:
    result = await h.emu.run_command(h.guild, "feedback", user=h.alice)
    assert (result.callback_type, result.message) == (9, None)
    assert result.modal is not None and result.modal["title"] == "Feedback"


async def test_ephemeral_replies_stay_out_of_the_channel(h: Harness) -> None:
    hidden = await h.emu.run_command(
        h.guild, "pledge show", options={"pledge": "a", "private": True}, user=h.alice
    )
    shown = await h.emu.run_command(h.guild, "pledge show", options={"pledge": "b"}, user=h.alice)
    assert hidden.ephemeral and not shown.ephemeral
    history = [m async for m in h.channel(h.general).history()]
    assert [m.content for m in history] == ["Pledge: b"]
    assert h.emu.messages(h.general) == []  # interaction replies are not REST posts


async def test_autocomplete(h: Harness) -> None:
    choices = await h.emu.autocomplete(
        h.guild, "pledge show", focused="pledge", value="eu", user=h.alice
    )
    assert [c["value"] for c in choices] == ["euro-adoption", "eu-referendum"]
    with pytest.raises(TimeoutError):
        await h.emu.autocomplete(
            h.guild, "pledge show", focused="pledge", value="all", user=h.alice, timeout=0.3
        )
    assert take_violations(h.emu)[0].endswith("data.choices: Must be 25 or fewer in length.")


async def test_button_click_updates_the_message(h: Harness) -> None:
    result = await h.emu.run_command(h.guild, "vote", user=h.alice)
    assert result.message is not None
    button = result.message["components"][0]["components"][0]
    assert (button["custom_id"], button["label"]) == ("vote:yes", "Yes")
    click = await h.emu.click_button(result.message, label="Yes", user=h.mod)
    assert click.callback_type == 7
    assert click.message is not None and click.message["id"] == result.message["id"]
    assert click.message["content"] == "mod voted yes"
    assert result.message["components"] == []  # results are live views of the message
    with pytest.raises(CommandUsageError, match="no button"):
        await h.emu.click_button(result.message, "vote:yes", user=h.mod)  # the update removed it

    private = await h.emu.run_command(h.guild, "vote", options={"private": True}, user=h.alice)
    assert private.message is not None and private.ephemeral
    with pytest.raises(CommandUsageError, match="only the user"):
        await h.emu.click_button(private.message["id"], "vote:yes", user=h.mod)
    mine = await h.emu.click_button(int(private.message["id"]), "vote:yes", user=h.alice)
    assert mine.ephemeral and mine.message is not None
    assert mine.message["content"] == "alice voted yes"

    deferred = await h.emu.run_command(h.guild, "vote", user=h.alice)
    assert deferred.message is not None
    later = await h.emu.click_button(deferred.message, "vote:later", user=h.mod)
    assert later.callback_type == 6
    assert later.message is not None and later.message["id"] == deferred.message["id"]
    assert later.message["content"] == "maybe later"


async def test_reply_over_the_limit_is_rejected(h: Harness) -> None:
    result = await h.emu.run_command(h.guild, "long", user=h.alice)
    assert result.message is not None and result.message["content"] == "too long, sorry"
    error = h.seen["long_error"]
    assert (error.status, error.code) == (400, 50035)
    assert "content" in error.text and "2000" in error.text
    assert take_violations(h.emu) == [
        f"POST {callback_path(h, result.interaction_id)}: content: Must be 2000 or fewer in length."
    ]


def callback_path(h: Harness, interaction_id: int) -> str:
    """The callback URL path the bot used (it embeds the interaction token)."""
    paths = (
        r.path for r in h.emu.requests if r.path.startswith(f"/interactions/{interaction_id}/")
    )
    return next(paths)


async def test_second_callback_is_refused(h: Harness) -> None:
    result = await h.emu.run_command(h.guild, "vote", user=h.alice)
    url = h.emu.base_url + callback_path(h, result.interaction_id)
    async with aiohttp.ClientSession() as session:
        response = await session.post(url, json={"type": 4, "data": {"content": "again"}})
        assert response.status == 400
        assert (await response.json())["code"] == 40060
    assert take_violations(h.emu)[0].endswith("(first was type 4)")


async def test_late_acknowledgement_is_unknown_interaction() -> None:
    async with harness(interaction_deadline=0.1) as h:
        completed = asyncio.ensure_future(event(h.bot, "app_command_completion"))
        with pytest.raises(TimeoutError, match="never acknowledged /slow"):
            await h.emu.run_command(
                h.guild, "slow", options={"delay": 0.2}, user=h.alice, timeout=0.5
            )
        await completed
        assert h.seen["slow_error"].code == 10062
        assert "acknowledged after" in take_violations(h.emu)[0]


async def test_defer_without_followup_times_out(h: Harness) -> None:
    with pytest.raises(TimeoutError, match="after callback type 5"):
        await h.emu.run_command(
            h.guild, "slow", options={"delay": 0.0, "defer": True}, user=h.alice, timeout=0.2
        )


async def test_commands_are_checked_like_the_discord_client(h: Harness) -> None:
    sent_before = len(h.emu.requests)
    with pytest.raises(CommandUsageError, match="not registered"):
        await h.emu.run_command(h.guild, "nope", user=h.alice)
    with pytest.raises(CommandUsageError, match="no option"):
        await h.emu.run_command(
            h.guild, "pledge show", options={"pledge": "x", "bogus": 1}, user=h.alice
        )
    with pytest.raises(CommandUsageError, match="cannot take"):
        await h.emu.run_command(h.guild, "pledge show", options={"pledge": 5}, user=h.alice)
    with pytest.raises(CommandUsageError, match="missing required"):
        await h.emu.run_command(h.guild, "pledge show", user=h.alice)
    with pytest.raises(CommandUsageError, match="needs a subcommand"):
        await h.emu.run_command(h.guild, "pledge", user=h.alice)
    with pytest.raises(CommandUsageError, match="default_member_permissions"):
        await h.emu.run_command(h.guild, "reset", user=h.alice)
    assert len(h.emu.requests) == sent_before
    allowed = await h.emu.run_command(h.guild, "reset", user=h.mod)
    assert allowed.message is not None and allowed.message["content"] == "reset done"


async def test_permissions_and_injected_http_errors(h: Harness) -> None:
    channel = h.channel(h.general)
    h.emu.fail_next(status=403)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("a")
    h.emu.fail_next(status=404)
    with pytest.raises(discord.NotFound) as missing:
        await channel.send("b")
    h.emu.fail_next(status=503)
    with pytest.raises(discord.DiscordServerError):
        await channel.send("c")
    assert (forbidden.value.code, missing.value.code) == (50013, 10003)

    h.emu.set_bot_channel_permissions(h.general, deny=discord.Permissions(send_messages=True).value)
    await event(h.bot, "guild_channel_update")
    assert not channel.permissions_for(channel.guild.me).send_messages
    with pytest.raises(discord.Forbidden) as denied:
        await channel.send("d")
    assert denied.value.code == 50013
    h.emu.set_bot_channel_permissions(h.general)
    await channel.send("e")
    assert [m["content"] for m in h.emu.messages(h.general)] == ["e"]


async def test_429_is_retried_and_delivered_once(h: Harness) -> None:
    h.emu.fail_next(status=429, retry_after=0.05)
    message = await h.channel(h.general).send("hello")
    posts = [
        r.status for r in h.emu.requests if r.method == "POST" and r.path.endswith("/messages")
    ]
    assert posts == [429, 200]
    assert [m["id"] for m in h.emu.messages(h.general)] == [str(message.id)]


async def test_enforce_nonce_deduplicates(h: Harness) -> None:
    channel = h.channel(h.general)
    first = await channel.send("briefing", nonce=1234)
    second = await channel.send("briefing", nonce=1234)
    third = await channel.send("briefing", nonce=5678)
    assert first.id == second.id != third.id
    assert len(h.emu.messages(h.general)) == 2


async def test_enforce_nonce_is_remembered_only_for_the_nonce_window() -> None:
    """Item 11: Discord drops a repeated nonce for a few minutes only, then posts again."""
    async with harness(nonce_window=0.2) as h:
        channel = h.channel(h.general)
        first = await channel.send("briefing", nonce="slot-1")
        again = await channel.send("briefing", nonce="slot-1")
        await asyncio.sleep(0.3)
        later = await channel.send("briefing", nonce="slot-1")
        once_more = await channel.send("briefing", nonce="slot-1")
        assert first.id == again.id != later.id == once_more.id
        assert len(h.emu.messages(h.general)) == 2


async def test_archived_and_locked_threads_behave_like_discord(h: Harness) -> None:
    """Item 10: archived threads leave discord.py's cache, re-open on a post; locked refuse."""
    thread = h.emu.add_thread(h.general, "daily")
    await event(h.bot, "thread_create")
    assert isinstance(h.bot.get_channel(thread.id), discord.Thread)

    h.emu.archive_thread(thread)
    await event(h.bot, "thread_update")
    assert h.bot.get_channel(thread.id) is None  # discord.py forgets archived threads
    fetched = await h.bot.fetch_channel(thread.id)
    assert isinstance(fetched, discord.Thread) and fetched.archived and not fetched.locked

    rejoined = asyncio.ensure_future(event(h.bot, "thread_join"))
    await asyncio.sleep(0)
    posted = await h.bot.get_partial_messageable(thread.id).send("reopens it")
    cached = await rejoined
    assert not thread.archived and cached.id == thread.id and not cached.archived
    assert h.bot.get_channel(thread.id) is not None

    h.emu.archive_thread(thread)
    await event(h.bot, "thread_update")
    with pytest.raises(discord.Forbidden) as edit_archived:
        await posted.edit(content="edited while archived")
    assert edit_archived.value.code == 50083

    h.emu.lock_thread(thread)  # archived and locked: only MANAGE_THREADS re-opens it
    with pytest.raises(discord.Forbidden) as archived_locked:
        await h.bot.get_partial_messageable(thread.id).send("refused")
    assert archived_locked.value.code == 50083
    h.emu.archive_thread(thread, archived=False)  # a moderator re-opens, still locked
    await event(h.bot, "thread_join")
    with pytest.raises(discord.Forbidden) as locked:
        await h.bot.get_partial_messageable(thread.id).send("refused")
    assert locked.value.code == 160005
    assert thread.locked and [m["content"] for m in h.emu.messages(thread)] == ["reopens it"]

    manage_threads = discord.Permissions(manage_threads=True).value
    h.emu.set_bot_channel_permissions(h.general, allow=manage_threads)
    await event(h.bot, "guild_channel_update")
    await h.bot.get_partial_messageable(thread.id).send("moderators may")
    assert len(h.emu.messages(thread)) == 2

    h.emu.delete_channel(thread)
    with pytest.raises(discord.NotFound) as gone:
        await h.bot.fetch_channel(thread.id)
    assert gone.value.code == 10003


async def test_member_roles_never_list_everyone_but_discord_py_adds_it(h: Harness) -> None:
    """Discord leaves @everyone out of member payloads; discord.py's Member.roles has it."""
    h.emu.add_member(h.guild, h.alice, roles=[h.guild.everyone])
    assert str(h.guild.id) not in h.guild.members[h.alice.id].payload()["roles"]
    await h.emu.run_command(h.guild, "pledge show", options={"pledge": "x"}, user=h.alice)
    user = h.seen["show_user"]
    assert isinstance(user, discord.Member)
    assert [r.id for r in user.roles] == [h.guild.id]
    assert user.roles[0].is_default()
    fetched = await h.bot.get_guild(h.guild.id).fetch_member(h.emu.bot_user.id)  # type: ignore[union-attr]
    assert fetched.roles[0].id == h.guild.id and len(fetched.roles) == 2


async def test_history_pages_like_discord_and_keeps_footers(h: Harness) -> None:
    """Item 11: before/after/around/limit, newest first, embeds with footers and authors."""
    channel = h.channel(h.general)
    sent = [
        await channel.send(f"m{i}", embed=discord.Embed(title="t").set_footer(text=f"mark {i}"))
        for i in range(7)
    ]
    ids = [m.id for m in sent]
    http = h.bot.http

    def listed(data: list[Any]) -> list[int]:
        return [int(m["id"]) for m in data]

    assert listed(await http.logs_from(channel.id, 3)) == ids[:-4:-1]
    assert listed(await http.logs_from(channel.id, 2, before=ids[3])) == [ids[2], ids[1]]
    assert listed(await http.logs_from(channel.id, 2, after=ids[1])) == [ids[3], ids[2]]
    assert listed(await http.logs_from(channel.id, 3, around=ids[3])) == [ids[4], ids[3], ids[2]]
    assert listed(await http.logs_from(channel.id, 1, around=ids[3])) == [ids[3]]
    history = [m async for m in channel.history(after=sent[2], limit=None)]
    assert [m.id for m in history] == ids[3:]  # discord.py puts `after` oldest first
    assert history[0].embeds[0].footer.text == "mark 3"
    assert history[0].author.id == h.emu.bot_user.id

    headers = {"Authorization": f"Bot {h.emu.token}"}
    url = f"{h.emu.base_url}/channels/{channel.id}/messages"
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url) as default:
            assert listed(await default.json()) == ids[::-1]  # default limit 50
        for query in ({"limit": "0"}, {"limit": "101"}, {"before": str(ids[3]), "after": "1"}):
            async with session.get(url, params=query) as refused:
                assert refused.status == 400, query
    assert len(take_violations(h.emu)) == 3

    alice = h.emu.add_user_message(h.general, h.alice, "mark 9 from alice")
    newest = [m async for m in channel.history(limit=1)]
    assert newest[0].id == int(alice["id"]) and newest[0].author.id == h.alice.id
    assert len(h.emu.messages(h.general)) == 7  # only the bot's own posts


async def test_limits_on_channel_messages(h: Harness) -> None:
    channel = h.channel(h.general)
    with pytest.raises(discord.HTTPException) as too_big:
        await channel.send(
            embeds=[
                discord.Embed(title="t" * 257, description="d" * 4000),
                discord.Embed(description="d" * 2000),
            ]
        )
    assert too_big.value.code == 50035
    row = {
        "type": 1,
        "components": [{"type": 2, "style": 1, "label": "l" * 81, "custom_id": "c" * 101}] * 6,
    }
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel.id)
    with pytest.raises(discord.HTTPException):
        await h.bot.http.request(route, json={"content": "rows", "components": [row] * 6})
    with pytest.raises(discord.HTTPException) as empty:
        await h.bot.http.request(route, json={"content": " "})
    assert empty.value.code == 50006
    found = "\n".join(take_violations(h.emu))
    for expected in (
        "embeds.0.title: Must be 256 or fewer",
        "embeds: Embed size exceeds maximum size of 6000",
        "components: Must be 5 or fewer in length.",
        "components.0.components: Must be between 1 and 5",
        "components.0.components.0.custom_id: Must be between 1 and 100",
        "components.0.components.0.label: Must be 80 or fewer",
        "custom_id: Component custom id cannot be duplicated",
        "empty message",
    ):
        assert expected in found
    assert h.emu.messages(h.general) == []


async def test_command_schema_is_validated(h: Harness) -> None:
    bad = [
        {
            "name": "Bad Name",
            "description": "",
            "options": [
                {"type": 3, "name": "later", "description": "d"},
                {"type": 3, "name": "first", "description": "d", "required": True},
                {
                    "type": 3,
                    "name": "pick",
                    "description": "d",
                    "choices": [{"name": str(i), "value": str(i)} for i in range(26)],
                },
            ],
        }
    ]
    with pytest.raises(discord.HTTPException) as error:
        await h.bot.http.bulk_upsert_global_commands(h.emu.application_id, payload=bad)
    assert (error.value.status, error.value.code) == (400, 50035)
    found = "\n".join(take_violations(h.emu))
    assert "0.name: Command name is invalid" in found
    assert "0.description: Must be between 1 and 100" in found
    assert "0.options.1.required: Required options must be placed before" in found
    assert "0.options.2.choices: Must be 25 or fewer" in found
    assert len(h.emu.commands()) == len(COMMAND_NAMES)  # the bad PUT changed nothing


async def test_mentions_follow_allowed_mentions(h: Harness) -> None:
    role = h.emu.add_role(h.guild, "Moderators", mentionable=True)
    await event(h.bot, "guild_role_create")
    channel = h.channel(h.general)
    quiet = await channel.send(
        f"<@&{role.id}> <@{h.alice.id}>", allowed_mentions=discord.AllowedMentions.none()
    )
    loud = await channel.send(f"<@&{role.id}> <@{h.alice.id}>")
    quiet_data, loud_data = h.emu.messages(h.general)
    assert (quiet_data["mention_roles"], quiet_data["mentions"]) == ([], [])
    assert loud_data["mention_roles"] == [str(role.id)]
    assert [u["id"] for u in loud_data["mentions"]] == [str(h.alice.id)]
    assert h.emu.allowed_mentions(quiet.id) == {"parse": []}
    assert h.emu.allowed_mentions(loud.id) is None
    assert [r.id for r in loud.role_mentions] == [role.id]


async def test_edit_delete_fetch_and_files(h: Harness) -> None:
    channel = h.channel(h.general)
    delivered: list[tuple[str, str]] = []
    h.emu.on_message(lambda where, data: delivered.append((where.name, data["content"])))
    message = await channel.send("draft", file=discord.File(io.BytesIO(b"abc"), "notes.txt"))
    await message.edit(content="final")
    fetched = await channel.fetch_message(message.id)
    assert (fetched.content, fetched.attachments[0].filename, fetched.attachments[0].size) == (
        "final",
        "notes.txt",
        3,
    )
    assert fetched.edited_at is not None
    assert delivered == [("general", "draft")]
    await message.delete()
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(message.id)
    assert h.emu.messages(h.general) == []
    fetched_channel = await h.bot.fetch_channel(h.general.id)
    assert isinstance(fetched_channel, discord.TextChannel) and fetched_channel.name == "general"


async def test_wait_for_messages_sees_background_posts(h: Harness) -> None:
    briefings = h.guild.channels["briefings"]
    later = asyncio.create_task(h.channel(briefings).send("morning briefing"))
    messages = await h.emu.wait_for_messages(briefings, count=1, timeout=2)
    await later
    assert [m["content"] for m in messages] == ["morning briefing"]


async def test_threads_and_deleted_channels(h: Harness) -> None:
    created = asyncio.gather(event(h.bot, "guild_channel_create"), event(h.bot, "thread_create"))
    news = h.emu.add_channel(h.guild, "news", type=5)
    thread = h.emu.add_thread(news, "discussion")
    await created
    bot_thread = h.bot.get_channel(thread.id)
    assert isinstance(bot_thread, discord.Thread) and bot_thread.parent_id == news.id
    await bot_thread.send("in thread")
    assert [m["content"] for m in h.emu.messages(thread)] == ["in thread"]
    assert h.channel(news).is_news()

    h.emu.delete_channel(news)
    await event(h.bot, "guild_channel_delete")
    assert h.bot.get_channel(news.id) is None
    with pytest.raises(discord.NotFound) as gone:
        await h.bot.get_partial_messageable(news.id).send("too late")
    assert gone.value.code == 10003
    with pytest.raises(CommandUsageError):
        await h.emu.run_command(
            h.guild, "pledge show", options={"pledge": "x"}, user=h.alice, channel=news
        )


async def test_unimplemented_routes_are_listed(h: Harness) -> None:
    message = await h.channel(h.general).send("react to me")
    with pytest.raises(discord.NotFound):
        await message.add_reaction("👍")
    assert len(h.emu.unhandled) == 1
    assert re.fullmatch(r"PUT /channels/\d+/messages/\d+/reactions/.+/@me", h.emu.unhandled[0])
    h.emu.unhandled.clear()


async def test_resume_replays_missed_events(h: Harness) -> None:
    await h.emu.drop_gateway(resumable=True)
    late = h.emu.add_channel(h.guild, "late")  # dispatched while the bot is disconnected
    await h.emu.wait_until_ready_sent()
    created = await event(h.bot, "guild_channel_create")
    assert created.id == late.id
    assert (h.emu.resume_count, h.emu.identify_count) == (1, 1)
    result = await h.emu.run_command(h.guild, "pledge show", options={"pledge": "x"}, user=h.alice)
    assert result.message is not None and result.message["content"] == "Pledge: x"


async def test_invalid_session_makes_the_bot_identify_again(h: Harness) -> None:
    await h.emu.drop_gateway(resumable=False)
    await h.emu.wait_until_ready_sent()
    assert (h.emu.resume_count, h.emu.identify_count) == (0, 2)
    result = await h.emu.run_command(h.guild, "pledge show", options={"pledge": "y"}, user=h.alice)
    assert result.message is not None and result.message["content"] == "Pledge: y"


async def test_global_rate_limit() -> None:
    async with harness(rate_limit_per_second=10) as h:  # login + sync already used 3
        general, briefings = h.channel(h.general), h.channel(h.guild.channels["briefings"])
        sends = [c.send(f"n{i}") for i in range(4) for c in (general, briefings)]
        await asyncio.gather(*sends)
        assert h.emu.rate_limited_count >= 1
        assert any(r.status == 429 for r in h.emu.requests)
        assert (
            len(h.emu.messages(h.general))
            == len(h.emu.messages(h.guild.channels["briefings"]))
            == 4
        )


async def test_privileged_intents_need_approval() -> None:
    members = GUILDS_ONLY | discord.Intents(members=True)
    async with Emulator() as emu:
        emu.add_guild("Demo")
        bot = build_bot({}, intents=members)
        apply_endpoints(emu.base_url, emu.gateway_url)
        try:
            await bot.login(emu.token)
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(bot.connect(), 5)
        finally:
            await bot.close()
            reset_endpoints()
    async with Emulator(privileged_intents=members.value) as emu:
        guild = emu.add_guild("Demo")
        alice = emu.add_user("alice")
        async with running(emu, build_bot({}, intents=members)) as bot:
            cached = bot.get_guild(guild.id)
            assert cached is not None and cached.chunked
            assert cached.get_member(alice.id) is not None


async def test_wrong_token_fails_login() -> None:
    async with Emulator(token="right") as emu:
        bot = build_bot({})
        apply_endpoints(emu.base_url, emu.gateway_url)
        try:
            with pytest.raises(discord.LoginFailure):
                await bot.login("wrong")
        finally:
            await bot.close()
            reset_endpoints()


async def test_read_routes(h: Harness) -> None:
    guild = await h.bot.fetch_guild(h.guild.id)
    assert guild.name == "Demo" and {r.name for r in await guild.fetch_roles()} >= {"@everyone"}
    assert {c.name for c in await guild.fetch_channels()} == {"general", "briefings"}
    member = await guild.fetch_member(h.mod.id)
    assert member.guild_permissions.manage_guild
    with pytest.raises(discord.NotFound) as unknown:
        await guild.fetch_member(12345)
    assert unknown.value.code == 10007
    assert (await h.bot.fetch_user(h.alice.id)).name == "alice"
    assert {c.name for c in await h.bot.tree.fetch_commands()} == COMMAND_NAMES
    async with h.channel(h.general).typing():
        pass
    shards, url, _ = await h.bot.http.get_bot_gateway()
    assert (shards, url) == (1, h.emu.gateway_url)
    app = await h.bot.http.request(discord.http.Route("GET", "/applications/@me"))
    assert app["id"] == str(h.emu.application_id)


async def test_raw_gateway_protocol() -> None:
    """Uncompressed JSON, heartbeats, presence, and the close codes for protocol mistakes."""
    async with Emulator() as emu, aiohttp.ClientSession() as session:
        emu.add_guild("Demo")
        url = emu.gateway_url + "?v=10&encoding=json"
        async with session.ws_connect(url) as ws:
            assert await ws.receive_json() == {"op": 10, "d": {"heartbeat_interval": 41250}}
            await ws.send_json({"op": 2, "d": {"token": emu.token, "intents": 1, "properties": {}}})
            ready, guild_create = await ws.receive_json(), await ws.receive_json()
            assert (ready["t"], ready["s"], guild_create["t"], guild_create["s"]) == (
                "READY",
                1,
                "GUILD_CREATE",
                2,
            )
            await ws.send_json(
                {"op": 3, "d": {"status": "idle", "activities": [], "afk": False, "since": 0}}
            )
            await ws.send_json({"op": 1, "d": 2})
            assert await ws.receive_json() == {"op": 11}
            assert emu.presence is not None and emu.presence["status"] == "idle"
            await ws.send_json({"op": 99, "d": None})
            assert (await ws.receive()).data == 4001
        async with session.ws_connect(url) as ws:
            await ws.receive_json()
            await ws.send_json({"op": 2, "d": {"token": "stolen", "intents": 1, "properties": {}}})
            assert (await ws.receive()).data == 4004
        async with session.ws_connect(emu.gateway_url + "?v=9&encoding=json") as ws:
            assert (await ws.receive()).data == 4012
        async with session.get(emu.base_url.replace("v10", "v9") + "/users/@me") as response:
            assert response.status == 404
        assert emu.unhandled == ["GET /api/v9/users/@me"]
        refused_op, bad_version = emu.violations  # a wrong token is not the bot breaking rules
        assert refused_op == "gateway: closed with 4001: op 99 refused"
        assert bad_version.startswith("gateway: unsupported connection parameters")


async def test_guilds_and_members_added_while_connected(h: Harness) -> None:
    other = h.emu.add_guild("Elsewhere", channels=("lobby",))
    joined = await event(h.bot, "guild_join")
    assert joined.id == other.id and [c.name for c in joined.text_channels] == ["lobby"]
    assert joined.me is not None
    result = await h.emu.run_command(other, "pledge show", options={"pledge": "x"}, user=h.alice)
    assert result.message is not None and result.message["channel_id"] == str(
        other.channels["lobby"].id
    )

    manage = discord.Permissions(manage_guild=True).value
    mods = h.emu.add_role(h.guild, "Mods", permissions=manage)
    bob = h.emu.add_user("bob")
    with pytest.raises(CommandUsageError):
        await h.emu.run_command(h.guild, "reset", user=bob)
    h.emu.add_member(h.guild, bob, roles=[mods])
    allowed = await h.emu.run_command(h.guild, "reset", user=bob)
    assert allowed.message is not None and allowed.message["content"] == "reset done"
