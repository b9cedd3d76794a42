"""Files on the local Discord, sent by the real discord.py client over real HTTP: multipart
uploads with alt text, `attachment://` in embeds and components, interaction responses and
followups with files, Discord's size and count limits, the bytes served back at each signed
url, MESSAGE_CREATE carrying attachments, and the console saving each image it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands
from discord.http import handle_message_parameters

from bot.client.runner import console_bot
from bot.config import Config
from bot.local import ChannelState, Emulator, GuildState, InteractionResult, UserState
from bot.local.console import Console
from tests.conftest import DATA_DIR
from tests.test_emulator import GUILDS_ONLY, QuickBot, running, take_violations

MIB = 1024 * 1024
ALT = "Pledges by status: 3 not yet rated, 1 in progress"


def png(width: int, height: int) -> bytes:
    """A real, minimal RGB PNG of the given size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    rows = b"".join(b"\x00" + b"\x20\x60\xa0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


CHART = png(64, 48)
TIMELINE = png(120, 30)


def chart_file(name: str = "chart.png", data: bytes = CHART, alt: str | None = ALT) -> discord.File:
    return discord.File(io.BytesIO(data), name, description=alt)


def chart_embed(reference: str = "chart.png") -> discord.Embed:
    embed = discord.Embed(title="Status at a glance")
    return embed.set_image(url=f"attachment://{reference}")


class PickView(discord.ui.View):
    """A button whose answer replaces the message with a chart (callback type 7 with a file)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Show chart", custom_id="pick:chart")
    async def show(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(
            content=None, embed=chart_embed(), attachments=[chart_file()], view=None
        )


def chart_bot(seen: dict[str, Any], intents: discord.Intents) -> commands.Bot:
    """A bare bot answering with files every way pledgebot may: reply, defer + followups, edit
    of @original, component update; `seen` gets what the handlers saw."""
    bot = QuickBot(
        command_prefix=commands.when_mentioned, intents=intents, guild_ready_timeout=0.05
    )

    @bot.tree.command(name="chart", description="A chart in an embed")
    async def chart(interaction: discord.Interaction, private: bool = False) -> None:
        seen["filesize_limit"] = interaction.filesize_limit
        await interaction.response.send_message(
            embed=chart_embed(), file=chart_file(), ephemeral=private
        )

    @bot.tree.command(name="slowchart", description="Thinking, then a chart and its data")
    async def slowchart(interaction: discord.Interaction, private: bool = False) -> None:
        await interaction.response.defer(thinking=True, ephemeral=private)
        await interaction.followup.send(embed=chart_embed(), file=chart_file())
        data = discord.File(io.BytesIO(b"status,count\nnot-rated,3\n"), "data.csv")
        await interaction.followup.send("The numbers", file=data, ephemeral=private)

    @bot.tree.command(name="redraw", description="Answers, then edits a timeline in")
    async def redraw(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Drawing…")
        await interaction.edit_original_response(
            content="Drawn",
            embed=chart_embed("timeline.png"),
            attachments=[chart_file("timeline.png", TIMELINE, "Status over time")],
        )

    @bot.tree.command(name="pick", description="Offers a chart behind a button")
    async def pick(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Which chart?", view=PickView())

    @bot.tree.command(name="huge", description="Tries a file over the upload limit")
    async def huge(interaction: discord.Interaction) -> None:
        too_big = discord.File(io.BytesIO(b"\0" * (20 * MIB + 1)), "huge.png")
        try:
            await interaction.response.send_message(file=too_big)
        except discord.HTTPException as error:
            seen["huge_error"] = error
            await interaction.response.send_message("That chart is too large to send.")

    return bot


@dataclass
class Rig:
    emu: Emulator
    bot: commands.Bot
    guild: GuildState
    alice: UserState
    seen: dict[str, Any] = field(default_factory=dict)

    @property
    def general(self) -> ChannelState:
        return self.guild.channels["general"]

    def channel(self, state: ChannelState | None = None) -> discord.TextChannel:
        channel = self.bot.get_channel((state or self.general).id)
        assert isinstance(channel, discord.TextChannel)
        return channel


@contextlib.asynccontextmanager
async def rig(intents: discord.Intents = GUILDS_ONLY) -> AsyncIterator[Rig]:
    async with Emulator() as emu:
        guild = emu.add_guild("Demo", channels=("general", "briefings"))
        alice = emu.add_user("alice")
        seen: dict[str, Any] = {}
        async with running(emu, chart_bot(seen, intents)) as bot:
            await bot.tree.sync()
            yield Rig(emu, bot, guild, alice, seen)
        assert emu.violations == [], "unexpected Discord-limit violations"
        assert emu.unhandled == [], "the bot used routes the emulator does not implement"


@pytest.fixture
async def r() -> AsyncIterator[Rig]:
    async with rig() as value:
        yield value


async def run_to_completion(r: Rig, name: str, **options: Any) -> InteractionResult:
    """Run a command and wait until its handler finished (followups and edits included)."""
    completed = asyncio.ensure_future(r.bot.wait_for("app_command_completion", timeout=5))
    result = await r.emu.run_command(r.guild, name, options=options, user=r.alice)
    await completed
    return result


async def http_get(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


def cdn_url(r: Rig, channel: ChannelState, attachment_id: str, name: str) -> re.Pattern[str]:
    base = re.escape(r.emu.base_url.removesuffix("/api/v10"))
    path = re.escape(f"/attachments/{channel.id}/{attachment_id}/{name}")
    return re.compile(rf"{base}{path}\?ex=[0-9a-f]+&is=[0-9a-f]+&hm=[0-9a-f]{{64}}&")


# -- channel messages -----------------------------------------------------------------------


async def test_a_file_with_alt_text_is_stored_and_served_as_discord_does(r: Rig) -> None:
    sent = await r.channel().send("Where the pledges stand", file=chart_file())
    [stored] = r.emu.messages(r.general)
    [attachment] = stored["attachments"]
    assert {k: v for k, v in attachment.items() if k not in ("id", "url", "proxy_url")} == {
        "filename": "chart.png",
        "size": len(CHART),
        "description": ALT,
        "content_type": "image/png",
        "width": 64,
        "height": 48,
    }
    assert cdn_url(r, r.general, attachment["id"], "chart.png").fullmatch(attachment["url"])
    # discord.py read the same record from the response, and GET returns it too
    assert [(a.filename, a.description, a.width) for a in sent.attachments] == [
        ("chart.png", ALT, 64)
    ]
    fetched = await r.channel().fetch_message(sent.id)
    assert fetched.attachments[0].to_dict() == sent.attachments[0].to_dict()
    assert await fetched.attachments[0].read() == CHART  # the bytes really arrived
    assert r.emu.attachment_bytes(stored, "chart.png") == CHART
    status, body, kind = await http_get(attachment["proxy_url"])
    assert (status, body, kind) == (200, CHART, "image/png")
    [kept] = r.emu.files(sent.id)
    assert (kept.filename, kept.description, kept.size) == ("chart.png", ALT, len(CHART))


async def test_attachment_scheme_in_an_embed_shows_the_upload_inside_it(r: Rig) -> None:
    sent = await r.channel().send(embed=chart_embed(), file=chart_file())
    [stored] = r.emu.messages(r.general)
    # Discord lists only files that no embed shows: the chart lives in the embed
    assert stored["attachments"] == []
    image = stored["embeds"][0]["image"]
    [chart] = r.emu.files(stored)
    assert cdn_url(r, r.general, str(chart.id), "chart.png").fullmatch(image["url"])
    assert (image["width"], image["height"], image["content_type"]) == (64, 48, "image/png")
    assert chart.description == ALT
    assert sent.embeds[0].image.url == image["url"] and sent.attachments == []
    status, body, _ = await http_get(image["url"])
    assert (status, body) == (200, CHART)
    history = [m async for m in r.channel().history(limit=5)]
    assert [m.embeds[0].image.width for m in history] == [64]


async def test_an_attachment_reference_naming_no_upload_is_dropped_as_discord_drops_it(
    r: Rig,
) -> None:
    await r.channel().send(embed=chart_embed("missing.png"), file=chart_file())
    [stored] = r.emu.messages(r.general)
    assert "image" not in stored["embeds"][0]
    assert stored["embeds"][0]["title"] == "Status at a glance"
    assert [a["filename"] for a in stored["attachments"]] == ["chart.png"]  # shown outside
    # a file that is not an image cannot be an embed's image either
    csv = discord.File(io.BytesIO(b"a,b\n"), "chart.csv")
    await r.channel().send(embed=chart_embed("chart.csv"), file=csv)
    assert "image" not in r.emu.messages(r.general)[1]["embeds"][0]


async def test_file_names_are_cleansed_and_references_must_use_the_stored_name(r: Rig) -> None:
    await r.channel().send(
        embed=chart_embed("my chart (v2).png"), file=chart_file("my chart (v2).png")
    )
    await r.channel().send(
        embed=chart_embed("my_chart_v2.png"), file=chart_file("my chart (v2).png")
    )
    first, second = r.emu.messages(r.general)
    assert [(a["filename"], a["title"]) for a in first["attachments"]] == [
        ("my_chart_v2.png", "my chart (v2).png")
    ]
    assert "image" not in first["embeds"][0]
    assert (
        second["attachments"] == [] and "/my_chart_v2.png?" in second["embeds"][0]["image"]["url"]
    )
    await r.channel().send(file=chart_file("_leading.png"))
    assert r.emu.messages(r.general)[2]["attachments"][0]["filename"] == "leading.png"


async def test_an_edit_keeps_the_listed_files_and_appends_new_ones(r: Rig) -> None:
    notes = discord.File(io.BytesIO(b"first"), "notes.txt", description="Notes")
    sent = await r.channel().send("Files", file=notes)
    first_url = sent.attachments[0].url
    edited = await sent.edit(
        attachments=[sent.attachments[0], discord.File(io.BytesIO(b"second"), "more.txt")]
    )
    assert [(a.filename, a.description) for a in edited.attachments] == [
        ("notes.txt", "Notes"),
        ("more.txt", None),
    ]
    assert [f.data for f in r.emu.files(sent.id)] == [b"first", b"second"]
    assert edited.attachments[1].content_type == "text/plain; charset=utf-8"
    cleared = await edited.edit(attachments=[])
    assert cleared.attachments == [] and r.emu.files(sent.id) == []
    status, _, _ = await http_get(first_url)
    assert status == 404  # a removed file is gone from the CDN too


async def test_the_cdn_refuses_unsigned_tampered_and_deleted_urls(r: Rig) -> None:
    sent = await r.channel().send(file=discord.File(io.BytesIO(b"x,y\n"), "data.csv"))
    url = sent.attachments[0].url
    assert (await http_get(url))[:2] == (200, b"x,y\n")
    assert (await http_get(url.split("?")[0]))[0] == 404
    tampered = re.sub(r"hm=[0-9a-f]", "hm=g", url)
    assert (await http_get(tampered))[0] == 404
    assert (await http_get(sent.attachments[0].proxy_url))[0] == 415  # the proxy is for media
    await sent.delete()
    status, body, _ = await http_get(url)
    assert (status, body) == (404, b"This content is no longer available.")


async def test_components_may_show_uploads_but_a_missing_one_is_refused(r: Rig) -> None:
    gallery = discord.ui.LayoutView()
    gallery.add_item(discord.ui.MediaGallery(discord.MediaGalleryItem("attachment://chart.png")))
    sent = await r.channel().send(view=gallery, file=chart_file())
    [stored] = r.emu.messages(r.general)
    media = stored["components"][0]["items"][0]["media"]
    assert stored["attachments"] == [] and media["attachment_id"] == str(r.emu.files(sent.id)[0].id)
    assert (await http_get(media["url"]))[1] == CHART

    broken = discord.ui.LayoutView()
    broken.add_item(discord.ui.MediaGallery(discord.MediaGalleryItem("attachment://gone.png")))
    with pytest.raises(discord.HTTPException) as refused:
        await r.channel().send(view=broken, file=chart_file())
    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert 'The referenced attachment ("attachment://gone.png") was not found' in (
        refused.value.text
    )
    assert len(r.emu.messages(r.general)) == 1  # nothing stored
    assert "components.0.items.0.media.url" in "\n".join(take_violations(r.emu))


async def test_a_dm_carries_a_chart_like_a_channel_does(r: Rig) -> None:
    dm = await r.bot.create_dm(discord.Object(r.alice.id))
    await dm.send(embed=chart_embed(), file=chart_file())
    [sent] = r.emu.dms(r.alice)
    assert sent["attachments"] == [] and sent["embeds"][0]["image"]["width"] == 64
    assert r.emu.attachment_bytes(sent, "chart.png") == CHART
    fetched = await dm.fetch_message(int(sent["id"]))
    assert fetched.embeds[0].image.url == sent["embeds"][0]["image"]["url"]


# -- limits ---------------------------------------------------------------------------------


async def test_more_than_ten_files_are_refused(r: Rig) -> None:
    files = [discord.File(io.BytesIO(b"x"), f"f{i}.txt") for i in range(11)]
    params = handle_message_parameters(content="too many", files=files)
    with pytest.raises(discord.HTTPException) as refused:
        await r.bot.http.send_message(r.general.id, params=params)
    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert "attachments: Must be 10 or fewer in length." in take_violations(r.emu)[0]
    assert r.emu.messages(r.general) == []
    ten = [discord.File(io.BytesIO(b"x"), f"f{i}.txt") for i in range(10)]
    sent = await r.channel().send(files=ten)
    assert len(sent.attachments) == 10


async def test_a_file_over_the_upload_limit_is_413_request_entity_too_large(r: Rig) -> None:
    at_limit = discord.File(io.BytesIO(b"\0" * (20 * MIB)), "limit.bin")
    sent = await r.channel().send(file=at_limit)
    assert sent.attachments[0].size == 20 * MIB
    over = discord.File(io.BytesIO(b"\0" * (20 * MIB + 1)), "over.bin")
    with pytest.raises(discord.HTTPException) as refused:
        await r.channel().send(file=over)
    assert (refused.value.status, refused.value.code) == (413, 40005)
    assert refused.value.text == "Request entity too large"
    assert "over.bin is 20971521 bytes" in take_violations(r.emu)[0]
    assert len(r.emu.messages(r.general)) == 1


async def test_a_request_over_25_mib_is_413_even_when_each_file_fits(r: Rig) -> None:
    halves = [discord.File(io.BytesIO(b"\0" * (13 * MIB)), f"half{i}.bin") for i in range(2)]
    with pytest.raises(discord.HTTPException) as refused:
        await r.channel().send(files=halves)
    assert (refused.value.status, refused.value.code) == (413, 40005)
    assert "25 MiB" in take_violations(r.emu)[0]
    assert r.emu.messages(r.general) == []


async def test_alt_text_over_1024_characters_is_refused(r: Rig) -> None:
    sent = await r.channel().send(file=chart_file(alt="a" * 1024))
    assert sent.attachments[0].description == "a" * 1024
    with pytest.raises(discord.HTTPException) as refused:
        await r.channel().send(file=chart_file(alt="a" * 1025))
    assert (refused.value.status, refused.value.code) == (400, 50035)
    found = take_violations(r.emu)
    assert found == [
        f"POST /channels/{r.general.id}/messages: "
        "attachments.0.description: Must be 1024 or fewer in length."
    ]


async def test_files_need_attach_files_permission(r: Rig) -> None:
    r.emu.set_bot_channel_permissions(r.general, deny=discord.Permissions(attach_files=True).value)
    with pytest.raises(discord.Forbidden) as refused:
        await r.channel().send(file=chart_file())
    assert refused.value.code == 50013
    await r.channel().send("text still goes")  # only the file needed the permission


# -- interactions -----------------------------------------------------------------------------


@pytest.mark.parametrize("private", [False, True])
async def test_a_command_answers_with_a_chart(r: Rig, private: bool) -> None:
    result = await r.emu.run_command(r.guild, "chart", options={"private": private}, user=r.alice)
    assert result.callback_type == 4 and result.ephemeral is private
    message = result.message
    assert message is not None and message["attachments"] == []
    [chart] = r.emu.files(message)
    assert (chart.filename, chart.description, chart.ephemeral) == ("chart.png", ALT, private)
    url = message["embeds"][0]["image"]["url"]
    assert cdn_url(r, r.general, str(chart.id), "chart.png").fullmatch(url)
    assert (await http_get(url))[1] == CHART
    assert r.seen["filesize_limit"] == 20 * MIB  # the interaction's attachment_size_limit


async def test_followups_carry_files_after_thinking(r: Rig) -> None:
    for private in (False, True):
        result = await run_to_completion(r, "slowchart", private=private)
        original, data = result.followups
        assert original["id"] == (result.message or {})["id"]  # it replaced "thinking…"
        assert original["embeds"][0]["image"]["width"] == 64 and original["attachments"] == []
        [csv] = data["attachments"]
        assert (csv["filename"], csv["content_type"]) == ("data.csv", "text/csv; charset=utf-8")
        assert csv.get("ephemeral", False) is private
        assert (await http_get(csv["url"]))[1] == b"status,count\nnot-rated,3\n"


async def test_editing_the_original_response_attaches_a_file(r: Rig) -> None:
    result = await run_to_completion(r, "redraw")
    message = result.message
    assert message is not None and message["edited_timestamp"] is not None
    assert [f.filename for f in r.emu.files(message)] == ["timeline.png"]
    image = message["embeds"][0]["image"]
    assert (image["width"], image["height"]) == (120, 30)
    assert r.emu.attachment_bytes(message, "timeline.png") == TIMELINE


async def test_a_button_can_replace_its_message_with_a_chart(r: Rig) -> None:
    offered = await r.emu.run_command(r.guild, "pick", user=r.alice)
    assert offered.message is not None
    clicked = await r.emu.click_button(offered.message, "pick:chart", user=r.alice)
    assert clicked.callback_type == 7
    message = clicked.message
    assert message is not None and message["components"] == []
    assert message["embeds"][0]["image"]["height"] == 48
    assert [(f.filename, f.description) for f in r.emu.files(message)] == [("chart.png", ALT)]


async def test_an_oversized_file_in_a_response_is_refused_and_the_bot_can_recover(r: Rig) -> None:
    result = await run_to_completion(r, "huge")
    error = r.seen["huge_error"]
    assert (error.status, error.code) == (413, 40005)
    assert result.message is not None
    assert result.message["content"] == "That chart is too large to send."
    assert "huge.png is 20971521 bytes" in take_violations(r.emu)[0]


# -- the gateway and the console ---------------------------------------------------------------


async def test_message_create_carries_the_attachments() -> None:
    async with rig(GUILDS_ONLY | discord.Intents(guild_messages=True)) as r:
        received = asyncio.ensure_future(r.bot.wait_for("message", timeout=2))
        sent = await r.channel().send("Chart", file=chart_file())
        message = await received
        assert message.id == sent.id
        assert [(a.filename, a.description, a.size) for a in message.attachments] == [
            ("chart.png", ALT, len(CHART))
        ]
        # a public answer is a channel message; an ephemeral one is not, and sends no event
        public = asyncio.ensure_future(r.bot.wait_for("message", timeout=2))
        answer = await r.emu.run_command(r.guild, "chart", user=r.alice)
        assert (await public).id == int((answer.message or {})["id"])
        following = asyncio.ensure_future(r.bot.wait_for("message", timeout=2))
        await r.emu.run_command(r.guild, "chart", options={"private": True}, user=r.alice)
        marker = await r.channel().send("after the private answer")
        assert (await following).id == marker.id


def test_the_console_saves_each_image_and_says_where(tmp_path: Path) -> None:
    out = io.StringIO()
    config = Config(database_path=tmp_path / "c.db", content_dir=DATA_DIR)
    console = Console(config, console_bot, out)
    console.start()
    try:

        async def post() -> discord.Message:
            channel = console.bot.get_channel(console.channel.id)
            assert isinstance(channel, discord.TextChannel)
            return await channel.send(embed=chart_embed(), file=chart_file())

        sent = console.call(post())
        folder = (tmp_path / "console-images").resolve()
        assert console.images_dir == folder  # beside the console's database file
        saved = folder / f"{sent.id}-chart.png"
        assert saved.read_bytes() == CHART
        assert f"🖼 chart.png saved to {saved} (alt: {ALT})" in out.getvalue()
        assert console.run_line(":help")
        assert f"Images and files the bot attaches are saved to {folder}" in out.getvalue()
        assert console.emulator.violations == []
    finally:
        console.stop()
