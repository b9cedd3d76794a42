"""Direct messages on the local Discord: the real discord.py client opens DMs, posts to them,
reads them back and answers button clicks from them, over real HTTP and a real websocket.

What Discord refuses, the emulator refuses: a DM to a user who closed DMs or shares no guild
with the bot is 403 50007, opening one with a bot is 400 50007, with an unknown id 400 50033.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bot.client.runner import console_bot
from bot.config import Config
from bot.local import CommandUsageError, Emulator, UserState
from bot.local.console import Console
from tests.conftest import DATA_DIR
from tests.test_emulator import GUILDS_ONLY, Harness, build_bot, harness, running

# What Discord reports as app_permissions in the DM with the bot (Receiving and Responding):
# ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS.
DM_APP_PERMISSIONS = discord.Permissions(
    attach_files=True, embed_links=True, mention_everyone=True, use_external_emojis=True
).value


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as value:
        yield value


def take_violations(emu: Emulator) -> list[str]:
    found = list(emu.violations)
    emu.violations.clear()
    return found


class FollowView(discord.ui.View):
    """The buttons a "you follow this pledge" DM might carry; `seen` gets each interaction."""

    def __init__(self, seen: dict[str, Any]) -> None:
        super().__init__(timeout=None)
        self.seen = seen
        self.snoozed = asyncio.Event()

    @discord.ui.button(label="Why?", custom_id="dm:why")
    async def why(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.seen["why"] = interaction
        await interaction.response.send_message("because you follow it", ephemeral=True)

    @discord.ui.button(label="Stop", custom_id="dm:stop")
    async def stop_following(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        self.seen["stop"] = interaction
        await interaction.response.edit_message(content="You no longer follow it.", view=None)

    @discord.ui.button(label="Later", custom_id="dm:later")
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.defer()  # type 6, then edit the DM itself
        await interaction.edit_original_response(content="Snoozed.")
        await interaction.followup.send("I'll remind you tomorrow.", ephemeral=True)
        self.snoozed.set()


async def dm_channel_of(h: Harness, user: UserState) -> discord.DMChannel:
    return await h.bot.create_dm(discord.Object(user.id))


async def test_create_dm_returns_the_same_channel_every_time(h: Harness) -> None:
    first = await h.bot.http.start_private_message(h.alice.id)
    second = await h.bot.http.start_private_message(h.alice.id)
    assert first == second
    assert (first["type"], first["last_message_id"], first["flags"]) == (1, None, 0)
    assert [u["id"] for u in first["recipients"]] == [str(h.alice.id)]
    assert "guild_id" not in first

    state = h.emu.dm_channel(h.alice)
    assert state is not None and str(state.id) == first["id"]
    assert state.guild is None and state.recipient is h.alice
    assert h.emu.dm_channel(h.mod) is None
    assert h.emu.dms(h.alice) == []

    channel = await dm_channel_of(h, h.alice)  # discord.py's own path (and cache)
    assert isinstance(channel, discord.DMChannel) and channel.id == state.id
    assert channel.recipient is not None and channel.recipient.id == h.alice.id
    fetched = await h.bot.fetch_channel(state.id)  # GET /channels/{dm}
    assert isinstance(fetched, discord.DMChannel) and fetched.id == state.id
    opened = [r for r in h.emu.requests if (r.method, r.path) == ("POST", "/users/@me/channels")]
    assert [(r.json, r.status) for r in opened] == [({"recipient_id": h.alice.id}, 200)] * 3


async def test_create_dm_is_refused_where_discord_refuses_it(h: Harness) -> None:
    with pytest.raises(discord.HTTPException) as unknown:
        await h.bot.http.start_private_message(424242)
    assert (unknown.value.status, unknown.value.code) == (400, 50033)
    assert unknown.value.text == "Invalid Recipient(s)"
    with pytest.raises(discord.HTTPException) as itself:  # a bot, itself included
        await h.bot.http.start_private_message(h.emu.bot_user.id)
    assert (itself.value.status, itself.value.code) == (400, 50007)

    url = f"{h.emu.base_url}/users/@me/channels"
    auth = {"Authorization": f"Bot {h.emu.token}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        for body, field_code in (({}, "BASE_TYPE_REQUIRED"), ({"recipient_id": "x"}, "NUMBER")):
            async with session.post(url, json=body) as response:
                assert response.status == 400
                error = await response.json()
                assert error["code"] == 50035
                assert error["errors"]["recipient_id"]["_errors"][0]["code"].startswith(field_code)
        async with session.post(url, json={"recipient_id": str(h.alice.id)}) as response:
            assert response.status == 200
    body = {"recipient_id": str(h.alice.id)}
    async with aiohttp.ClientSession() as anonymous, anonymous.post(url, json=body) as response:
        assert response.status == 401
    assert h.emu.dm_channel(h.mod) is None
    take_violations(h.emu)  # the malformed bodies are recorded as Discord-rule violations


async def test_opening_a_dm_counts_against_the_global_rate_limit() -> None:
    async with Emulator(rate_limit_per_second=2) as emu:
        emu.add_guild("Demo")
        alice = emu.add_user("alice")
        url = f"{emu.base_url}/users/@me/channels"
        auth = {"Authorization": f"Bot {emu.token}"}
        async with aiohttp.ClientSession(headers=auth) as session:
            statuses = []
            for _ in range(3):
                async with session.post(url, json={"recipient_id": str(alice.id)}) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        assert response.headers["X-RateLimit-Global"] == "true"
        assert statuses == [200, 200, 429]
        assert emu.rate_limited_count == 1


async def test_a_dm_arrives_and_reads_back_like_a_channel_message(h: Harness) -> None:
    delivered: list[tuple[int | None, str]] = []
    h.emu.on_message(
        lambda where, data: delivered.append(
            (where.recipient.id if where.recipient else None, data["content"])
        )
    )
    waiting = asyncio.ensure_future(h.emu.wait_for_dms(h.alice, 2))
    user = await h.bot.fetch_user(h.alice.id)
    first = await user.send(
        f"Hello <@{h.alice.id}> @everyone",
        embed=discord.Embed(title="Pledge update", description="Now in progress"),
    )
    second = await user.send("second")
    assert isinstance(first.channel, discord.DMChannel) and first.guild is None
    arrived = await waiting
    assert [m["content"] for m in arrived] == [first.content, "second"]
    assert arrived[0]["embeds"][0]["title"] == "Pledge update"
    assert "guild_id" not in arrived[0]
    # a user mention resolves; @everyone reaches no one in a DM
    assert [u["id"] for u in arrived[0]["mentions"]] == [str(h.alice.id)]
    assert arrived[0]["mention_everyone"] is False
    assert delivered == [(h.alice.id, first.content), (h.alice.id, "second")]
    assert h.emu.dms(h.mod) == []

    dm = first.channel
    assert (await dm.fetch_message(first.id)).content == first.content
    newest = [m.id async for m in dm.history(limit=1)]
    assert newest == [second.id]
    assert [m.id async for m in dm.history(after=first)] == [second.id]
    assert [m.id async for m in dm.history(around=first, limit=3)] == [second.id, first.id]
    state = h.emu.dm_channel(h.alice)
    assert state is not None
    assert (await h.bot.http.get_channel(state.id))["last_message_id"] == str(second.id)

    await second.edit(content="second (edited)")
    await first.delete()
    assert [m["content"] for m in h.emu.dms(h.alice)] == ["second (edited)"]


async def test_closed_dms_are_refused_with_50007_and_nothing_is_stored(h: Harness) -> None:
    user = await h.bot.fetch_user(h.alice.id)
    await user.send("before")
    stored_before = len(h.emu.dms(h.alice))
    h.emu.close_dms(h.alice)
    await dm_channel_of(h, h.alice)  # opening still works: sending is what fails
    with pytest.raises(discord.Forbidden) as refused:
        await user.send("while closed", nonce="n-1")
    assert (refused.value.status, refused.value.code) == (403, 50007)
    assert refused.value.text == "Cannot send messages to this user"
    assert len(h.emu.dms(h.alice)) == stored_before
    posts = [r.status for r in h.emu.requests if r.path.endswith("/messages")]
    assert posts == [200, 403]

    h.emu.open_dms(h.alice)
    again = await user.send("while closed", nonce="n-1")  # the refused post left no nonce
    assert [m["content"] for m in h.emu.dms(h.alice)] == ["before", again.content]
    assert h.emu.violations == []  # a closed DM is the user's choice, not a bot bug


async def test_a_user_sharing_no_guild_cannot_be_messaged(h: Harness) -> None:
    stranger = h.emu.add_user("stranger", in_guilds=False)
    channel = await dm_channel_of(h, stranger)
    with pytest.raises(discord.Forbidden) as refused:
        await channel.send("hello?")
    assert refused.value.code == 50007
    assert h.emu.dms(stranger) == []
    h.emu.add_member(h.guild, stranger)
    await channel.send("hello!")
    assert [m["content"] for m in await h.emu.wait_for_dms(stranger)] == ["hello!"]


async def test_enforce_nonce_deduplicates_in_dms(h: Harness) -> None:
    channel = await dm_channel_of(h, h.alice)
    first = await channel.send("briefing", nonce=1234)
    second = await channel.send("briefing", nonce=1234)
    third = await channel.send("briefing", nonce=5678)
    assert first.id == second.id != third.id
    assert len(h.emu.dms(h.alice)) == 2
    sent = [r.json for r in h.emu.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert all(body["enforce_nonce"] is True for body in sent)


async def test_limits_apply_to_dms(h: Harness) -> None:
    channel = await dm_channel_of(h, h.alice)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    with pytest.raises(discord.HTTPException) as long_title:
        await channel.send(embed=discord.Embed(title="t" * 257))
    assert long_title.value.code == 50035 and "embeds.0.title" in long_title.value.text
    assert h.emu.dms(h.alice) == []
    assert len(take_violations(h.emu)) == 2


async def test_buttons_on_a_dm_answer_like_discord(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_events: list[tuple[str, Any]] = []
    dispatch = h.emu._gateway.dispatch

    def recording(event: str, data: Any, **kwargs: Any) -> None:
        sent_events.append((event, data))
        dispatch(event, data, **kwargs)

    monkeypatch.setattr(h.emu._gateway, "dispatch", recording)
    seen: dict[str, Any] = {}
    user = await h.bot.fetch_user(h.alice.id)
    view = FollowView(seen)
    message = await user.send("You follow europol-partnership.", view=view)
    [dm] = await h.emu.wait_for_dms(h.alice)

    why = await h.emu.click_button(dm, "dm:why", user=h.alice)
    assert (why.callback_type, why.ephemeral) == (4, True)
    assert why.message is not None and why.message["content"] == "because you follow it"
    metadata = why.message["interaction_metadata"]
    assert metadata["authorizing_integration_owners"] == {"0": "0"}
    assert metadata["interacted_message_id"] == str(message.id)

    interaction: discord.Interaction = seen["why"]
    assert type(interaction.user) is discord.User and interaction.user.id == h.alice.id
    assert interaction.guild is None and interaction.guild_id is None
    assert isinstance(interaction.channel, discord.DMChannel)
    assert interaction.channel.id == message.channel.id
    assert interaction.message is not None and interaction.message.id == message.id
    assert interaction.context.dm_channel and not interaction.context.guild
    assert interaction.app_permissions.value == DM_APP_PERMISSIONS
    assert interaction.permissions.value == 0

    [raw] = [d for e, d in sent_events if e == "INTERACTION_CREATE"]
    assert "member" not in raw and "guild_id" not in raw and "guild" not in raw
    assert raw["user"]["id"] == str(h.alice.id)
    assert (raw["context"], raw["channel_id"]) == (1, str(message.channel.id))
    assert raw["channel"]["type"] == 1 and "permissions" not in raw["channel"]
    assert raw["authorizing_integration_owners"] == {"0": "0"}
    assert raw["app_permissions"] == str(DM_APP_PERMISSIONS)

    later = await h.emu.click_button(dm, label="Later", user=h.alice)  # defer, edit, followup
    await asyncio.wait_for(view.snoozed.wait(), 2)  # the click settles with the edit
    assert later.callback_type == 6
    assert later.message is not None and later.message["content"] == "Snoozed."
    assert [(f["content"], f["flags"] & 64) for f in later.followups] == [
        ("I'll remind you tomorrow.", 64)
    ]

    with pytest.raises(CommandUsageError, match="cannot see it"):
        await h.emu.click_button(dm, "dm:stop", user=h.mod)  # not the recipient
    with pytest.raises(CommandUsageError, match="not in 'Demo'"):
        await h.emu.click_button(dm, "dm:stop", user=h.alice, guild=h.guild)
    stop = await h.emu.click_button(dm, "dm:stop", user=h.alice)
    assert stop.callback_type == 7
    assert [(m["content"], m["components"]) for m in h.emu.dms(h.alice)] == [
        ("You no longer follow it.", [])
    ]
    assert type(seen["stop"].user) is discord.User
    # interaction responses stay out of dms(), as they stay out of messages() in channels
    assert len(h.emu.dms(h.alice)) == 1


async def test_a_user_can_write_to_the_bot_in_its_dm() -> None:
    intents = GUILDS_ONLY | discord.Intents(dm_messages=True)
    async with Emulator() as emu:
        emu.add_guild("Demo")
        alice, bob = emu.add_user("alice"), emu.add_user("bob")
        async with running(emu, build_bot({}, intents=intents)) as bot:
            await bot.create_dm(discord.Object(alice.id))
            channel = emu.dm_channel(alice)
            assert channel is not None
            with pytest.raises(CommandUsageError, match="not in the DM"):
                emu.add_user_message(channel, bob, "let me in")
            received = asyncio.ensure_future(bot.wait_for("message", timeout=2))
            emu.add_user_message(channel, alice, "stop sending me these")
            message = await received
            assert message.guild is None and isinstance(message.channel, discord.DMChannel)
            assert (message.author.id, message.content) == (alice.id, "stop sending me these")
            assert emu.dms(alice) == []  # only the bot's own messages are DMs *to* alice
        assert emu.violations == [] and emu.unhandled == []


async def _send_follow_dm(console: Console, user: UserState) -> discord.Message:
    """On the console's loop, as the bot: DM `user` a message with one button."""
    target = await console.bot.fetch_user(user.id)
    view = discord.ui.View(timeout=None)
    button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
        label="Got it", custom_id="console:ack"
    )

    async def acknowledge(interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content="Thanks, noted.", view=None)

    button.callback = acknowledge  # type: ignore[method-assign]
    view.add_item(button)
    message: discord.Message = await target.send("You follow europol-partnership.", view=view)
    return message


def test_console_prints_dms_and_dms_off_closes_them(tmp_path: Path) -> None:
    out = io.StringIO()
    config = Config(database_path=tmp_path / "c.db", content_dir=DATA_DIR)
    console = Console(config, console_bot, out)
    console.start()
    try:
        member = console.users["member"]
        console.call(_send_follow_dm(console, member))
        shown = out.getvalue()
        assert "── ✉ DM from pledgebot to member ──" in shown
        assert "You follow europol-partnership." in shown
        assert "[1] Got it   (:click N)" in shown

        assert console.run_line(":as moderator")
        assert console.run_line(":click 1")  # the DM is member's: moderator cannot see it
        assert "cannot see it" in out.getvalue()
        assert console.run_line(":as member")
        assert console.run_line(":click 1")
        assert out.getvalue().rstrip().endswith("Thanks, noted.")

        assert console.run_line(":dms off")
        assert "Your DMs (member) are closed" in out.getvalue()
        with pytest.raises(discord.Forbidden) as refused:
            console.call(_send_follow_dm(console, member))
        assert refused.value.code == 50007
        assert console.run_line(":help")
        assert ":dms off | :dms on" in out.getvalue() and "(now: closed)" in out.getvalue()
        assert console.run_line(":dms on")
        console.call(_send_follow_dm(console, member))
        assert out.getvalue().count("── ✉ DM from pledgebot to member ──") == 2
        assert console.emulator.violations == []
    finally:
        console.stop()
