"""Charts end to end: the real bot sends each chart as an attachment its embed shows, on
the emulator (which keeps uploads as Discord does), on both backends."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from typing import Any

import pytest
from PIL import Image

from bot.charts.render import PNG_MAGIC, ChartRenderer
from bot.charts.spec import BARS_FILENAME, TIMELINE_FILENAME, ChartSpec
from bot.client.app import PledgeBot
from bot.local import StoredFile
from bot.pledges.services import Services
from commands import ui
from tests.e2e import World, embed_text, running_bot, world_on_both_backends

__all__ = ["world_on_both_backends"]  # the `w` fixture, on both backends

pytestmark = pytest.mark.e2e

STATEMENT = "smuggling-gangs"
PLEDGE = "europol-partnership"
EVIDENCE = "https://example.org/evidence"
# Discord's: an attachment of at most 10 MiB for any bot's upload, a description (alt text)
# of at most 1,024 characters. Our charts are a few KB, and sized for an embed.
MAX_BYTES = 10 * 1024 * 1024
MAX_ALT = 1024


def services_of(bot: PledgeBot) -> Services:
    assert bot.services is not None
    return bot.services


def composer_charts(bot: PledgeBot) -> ChartRenderer:
    assert bot.engine is not None
    return bot.engine._composer.charts


def the_chart(w: World, message: dict[str, Any] | None, filename: str) -> StoredFile:
    """The one file on `message`, checked: shown by the first embed, a real PNG within
    Discord's limits, with alt text."""
    assert message is not None
    (stored,) = w.emu.files(message)
    assert stored.filename == filename
    assert "image" in message["embeds"][0], "the embed must show the attachment"
    image_url = message["embeds"][0]["image"]["url"]
    assert filename in image_url and not image_url.startswith("attachment://")
    assert all("image" not in embed for embed in message["embeds"][1:])
    assert stored.data.startswith(PNG_MAGIC)
    assert 0 < len(stored.data) <= MAX_BYTES
    picture = Image.open(io.BytesIO(stored.data))
    picture.load()
    assert picture.format == "PNG"
    assert 400 <= picture.width <= 2000 and 150 <= picture.height <= 2000
    assert (stored.width, stored.height) == picture.size
    assert stored.description and len(stored.description) <= MAX_ALT
    return stored


def has_no_chart(w: World, message: dict[str, Any] | None) -> None:
    assert message is not None
    assert w.emu.files(message) == []
    assert all("image" not in embed for embed in message["embeds"])


async def rate(bot: PledgeBot, *statuses: str) -> None:
    services = services_of(bot)
    for status in statuses:
        await services.store.set_status(
            PLEDGE, status, note=f"now {status}", evidence_url=EVIDENCE, changed_by="operator:t"
        )
    services.changed()


async def test_about_a_statement_attaches_its_chart_with_alt_text(w: World) -> None:
    async with running_bot(w) as bot:
        await rate(bot, "in-progress")
        for private in (False, True):
            result = await w.emu.run_command(
                w.guild,
                "about",
                options={"statement": STATEMENT, "private": private},
                user=w.member,
            )
            assert result.ephemeral is private
            stored = the_chart(w, result.message, BARS_FILENAME)
            title = services_of(bot).statements[STATEMENT].title
            assert stored.description == (
                f"Pledges in {title} by status: 5 Not yet rated, 1 In progress (6 pledges)."
            )
        assert services_of(bot).charts.draws == 1
    assert w.emu.violations == []


async def test_paging_away_removes_the_chart_and_paging_back_brings_it(w: World) -> None:
    async with running_bot(w):
        result = await w.emu.run_command(
            w.guild, "about", options={"statement": STATEMENT}, user=w.member
        )
        first = the_chart(w, result.message, BARS_FILENAME)
        assert result.message is not None and result.message["components"], "a paged answer"
        turned = await w.emu.click_button(result.message, label="Next ▶", user=w.member)
        has_no_chart(w, turned.message)
        back = await w.emu.click_button(turned.message or {}, label="◀ Previous", user=w.member)
        again = the_chart(w, back.message, BARS_FILENAME)
    assert again.data == first.data
    assert again.description == first.description
    assert w.emu.violations == []


async def test_the_pledge_list_shows_the_chart_on_its_first_page(w: World) -> None:
    async with running_bot(w) as bot:
        for options in (
            {},
            {"statement": STATEMENT},
            {"statement": STATEMENT, "status": "delivered"},
        ):
            result = await w.emu.run_command(w.guild, "pledge list", options=options, user=w.member)
            the_chart(w, result.message, BARS_FILENAME)
        about = await w.emu.run_command(
            w.guild, "about", options={"statement": STATEMENT}, user=w.member
        )
        the_chart(w, about.message, BARS_FILENAME)
        # one picture for the statement: every list, filtered or not, and /about share it
        assert services_of(bot).charts.draws == 1
    assert w.emu.violations == []


async def test_history_shows_a_timeline_once_a_pledge_has_two_changes(w: World) -> None:
    async with running_bot(w) as bot:
        history = {"pledge": PLEDGE}
        none = await w.emu.run_command(w.guild, "pledge history", options=history, user=w.member)
        has_no_chart(w, none.message)
        await rate(bot, "in-progress")
        one = await w.emu.run_command(w.guild, "pledge history", options=history, user=w.member)
        has_no_chart(w, one.message)
        await rate(bot, "stalled")
        two = await w.emu.run_command(w.guild, "pledge history", options=history, user=w.member)
        stored = the_chart(w, two.message, TIMELINE_FILENAME)
    assert stored.description is not None
    assert stored.description.startswith("Status timeline of ")
    assert "2 changes: Not yet rated; In progress from " in stored.description
    assert "; Stalled from " in stored.description
    assert "now stalled" in embed_text(two.message)
    assert w.emu.violations == []


async def test_charts_are_drawn_once_per_status_state_and_reused(w: World) -> None:
    async with running_bot(w) as bot:
        charts = services_of(bot).charts
        pictures = []
        asked: list[tuple[str, dict[str, Any]]] = [
            ("about", {"statement": STATEMENT}),
            ("pledge list", {"statement": STATEMENT}),
            ("about", {"statement": STATEMENT, "private": True}),
            ("pledge list", {}),
        ]
        for command, options in asked:
            result = await w.emu.run_command(w.guild, command, options=options, user=w.member)
            pictures.append(the_chart(w, result.message, BARS_FILENAME).data)
        assert charts.draws == 1
        assert all(p == pictures[0] for p in pictures)
        await rate(bot, "delivered")
        result = await w.emu.run_command(
            w.guild, "about", options={"statement": STATEMENT}, user=w.member
        )
        changed = the_chart(w, result.message, BARS_FILENAME)
        assert charts.draws == 2
        assert changed.data != pictures[0]
        assert "1 Delivered" in (changed.description or "")


async def test_a_digest_posts_its_chart_and_draws_it_once(w: World) -> None:
    async with running_bot(w) as bot:
        scheduled = await w.emu.run_command(
            w.guild,
            "briefing schedule",
            options={"channel": w.briefings, "time": "09:00", "content": "digest"},
            user=w.moderator,
        )
        briefing_id = int(embed_text(scheduled.message).split("#", 1)[1].split(" ", 1)[0])
        sent = await w.emu.run_command(
            w.guild, "briefing send-now", options={"id": briefing_id}, user=w.moderator
        )
        assert "posted" in embed_text(sent.message) + " ".join(
            f.get("content", "") for f in sent.followups
        )
        (posted,) = await w.emu.wait_for_messages(w.briefings, 1)
        # composed again (a preview is never kept), its chart found drawn
        preview = await w.emu.run_command(
            w.guild, "briefing preview", options={"id": briefing_id}, user=w.moderator
        )
        assert "Pledge digest" in embed_text(preview.message)
        the_chart(w, preview.message, BARS_FILENAME)  # the preview shows it too
        assert composer_charts(bot).draws == 1
        assert composer_charts(bot) is services_of(bot).charts  # answers and digests: one cache
    stored = the_chart(w, posted, BARS_FILENAME)
    assert (stored.description or "").startswith("Pledges in ")
    assert "Pledge digest" in embed_text(posted)
    assert f"Briefing #{briefing_id}" in embed_text(posted)  # the marker is kept
    assert w.emu.allowed_mentions(posted) == {"parse": []}
    assert w.emu.violations == []


async def test_when_drawing_fails_the_answer_goes_out_without_the_chart(
    w: World, caplog: pytest.LogCaptureFixture
) -> None:
    broken = (sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit('no fonts today')")
    async with running_bot(w) as bot:
        services_of(bot).charts.command = broken
        composer_charts(bot).command = broken
        with caplog.at_level(logging.WARNING, "bot.charts.render"):
            result = await w.emu.run_command(
                w.guild, "about", options={"statement": STATEMENT}, user=w.member
            )
            listing = await w.emu.run_command(w.guild, "pledge list", user=w.member)
    has_no_chart(w, result.message)
    has_no_chart(w, listing.message)
    assert result.ephemeral is False  # the answer itself, not an error
    text = embed_text(result.message) + embed_text(listing.message)
    assert "went wrong" not in text and "Pledges" in text
    assert "no fonts today" in caplog.text
    assert w.emu.violations == []
    assert w.emu.unhandled == []


async def test_a_slow_chart_is_sent_with_the_deferred_answer(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "DEFER_AFTER", 0.05)
    async with running_bot(w) as bot:
        charts = services_of(bot).charts
        draw = charts.draw

        async def slow(spec: ChartSpec) -> bytes | None:
            await asyncio.sleep(0.5)  # past DEFER_AFTER: the answer is deferred first
            return await draw(spec)

        monkeypatch.setattr(charts, "draw", slow)
        result = await w.emu.run_command(
            w.guild, "about", options={"statement": STATEMENT}, user=w.member
        )
    assert result.callback_type == 5
    message = result.message or (result.followups[0] if result.followups else None)
    the_chart(w, message, BARS_FILENAME)
    assert w.emu.violations == []
