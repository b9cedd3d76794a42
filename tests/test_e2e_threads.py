"""The real bot's DiscordSender against the emulator: threads, nonces and post markers.

Item 10 (threads): an archived thread leaves discord.py's cache yet is a fine target, since a
post re-opens it; a locked or deleted thread is a problem. Item 11 (nonce window / marker
lookup): Discord forgets a nonce after a few minutes, so every post carries a marker in its
last embed's footer that `find_post` looks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bot.client.delivery as delivery
from bot.briefings.compose import Briefing
from bot.briefings.sender import DeliveryFailure
from bot.client.delivery import DiscordSender
from bot.local import ChannelState
from bot.pledges.cards import Card
from tests.e2e import World, running_bot, world

pytestmark = pytest.mark.e2e

MARKER = "Briefing #7 · 2026-03-02T09:00"


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as value:
        yield value
        assert value.emu.violations == []
        assert value.emu.unhandled == []


def digest(footer: str = "Source: pledge tracker") -> Briefing:
    return Briefing(
        "📰 **Pledge digest**",
        (Card("Energy price cap", "on track"), Card("Housing target", "behind", footer=footer)),
    )


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def footers(message: dict[str, object]) -> list[str]:
    embeds = message["embeds"]
    assert isinstance(embeds, list)
    return [e.get("footer", {}).get("text", "") for e in embeds]


async def archived(w: World, thread: ChannelState, sender: DiscordSender) -> None:
    w.emu.archive_thread(thread)
    await until(lambda: sender.client.get_channel(thread.id) is None, "discord.py to drop it")


# -- item 10: threads -----------------------------------------------------------------------


async def test_item10_archived_unlocked_thread_is_no_problem_and_a_post_reopens_it(
    w: World,
) -> None:
    thread = w.emu.add_thread(w.briefings, "daily")
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        assert await sender.channel_problem(w.guild.id, thread.id) is None
        await archived(w, thread, sender)
        assert await sender.channel_problem(w.guild.id, thread.id) is None
        message_id = await sender.post(
            thread.id, digest(), nonce="n-archived", role_id=None, marker=MARKER
        )
        assert not thread.archived
        await until(lambda: bot.get_channel(thread.id) is not None, "the re-opened thread")
    (posted,) = w.emu.messages(thread)
    assert int(posted["id"]) == message_id


async def test_item10_locked_thread_is_a_problem_archived_or_not(w: World) -> None:
    thread = w.emu.add_thread(w.briefings, "daily")
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        w.emu.lock_thread(thread)
        await until(lambda: bot.get_channel(thread.id).locked, "the lock")  # type: ignore[union-attr]
        assert await sender.channel_problem(w.guild.id, thread.id) == "the thread #daily is locked"
        await archived(w, thread, sender)
        assert await sender.channel_problem(w.guild.id, thread.id) == "the thread #daily is locked"
        with pytest.raises(DeliveryFailure) as refused:
            await sender.post(thread.id, digest(), nonce="n-locked", role_id=None, marker=MARKER)
    assert refused.value.kind == "pause"
    assert w.emu.messages(thread) == []


async def test_item10_deleted_thread_and_other_servers_thread_are_problems(w: World) -> None:
    thread = w.emu.add_thread(w.briefings, "daily")
    foreign = w.emu.add_thread(w.other_guild.channels["briefings"], "theirs")
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        await archived(w, foreign, sender)
        assert (
            await sender.channel_problem(w.guild.id, foreign.id)
            == "that channel belongs to another server"
        )
        w.emu.delete_channel(thread)
        await until(lambda: bot.get_channel(thread.id) is None, "the deletion")
        assert await sender.channel_problem(w.guild.id, thread.id) == "the channel no longer exists"
        with pytest.raises(DeliveryFailure) as gone:
            await sender.post(thread.id, digest(), nonce="n-gone", role_id=None, marker=MARKER)
    assert gone.value.kind == "pause"


# -- item 11: nonce window / marker lookup ---------------------------------------------------


async def test_item11_marker_goes_in_the_last_embeds_footer(w: World) -> None:
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        await sender.post(w.briefings.id, digest(), nonce="n-1", role_id=None, marker=MARKER)
        await sender.post(
            w.briefings.id, Briefing("just text", ()), nonce="n-2", role_id=None, marker=MARKER
        )
        long_footer = digest(footer="x" * 2048)
        await sender.post(w.briefings.id, long_footer, nonce="n-3", role_id=None, marker=MARKER)
    with_footer, text_only, shortened = w.emu.messages(w.briefings)
    assert footers(with_footer) == ["", f"Source: pledge tracker · {MARKER}"]
    assert text_only["content"] == f"just text\n{MARKER}"
    last = footers(shortened)[-1]
    assert last.endswith(f"… · {MARKER}") and len(last) == 2048


async def test_item11_find_post_finds_the_bots_post_by_its_marker(w: World) -> None:
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        before = datetime.now(UTC) - timedelta(seconds=1)
        w.emu.add_user_message(w.briefings, w.member, f"quoting {MARKER}")
        message_id = await sender.post(
            w.briefings.id, digest(), nonce="n-find", role_id=None, marker=MARKER
        )
        for i in range(3):
            await sender.post(
                w.briefings.id, digest(), nonce=f"n-{i}", role_id=None, marker=f"other {i}"
            )
        assert await sender.find_post(w.briefings.id, MARKER, since=before) == message_id
        assert await sender.find_post(w.briefings.id, "Briefing #8", since=before) is None
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await sender.find_post(w.briefings.id, MARKER, since=later) is None


async def test_item11_find_post_in_an_archived_thread_and_its_failures(w: World) -> None:
    thread = w.emu.add_thread(w.briefings, "daily")
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        since = datetime.now(UTC) - timedelta(seconds=1)
        posted = await sender.post(thread.id, digest(), nonce="n-t", role_id=None, marker=MARKER)
        await archived(w, thread, sender)
        assert await sender.find_post(thread.id, MARKER, since=since) == posted
        w.emu.fail_next("GET", r"/channels/\d+/messages", status=403, code=50001)
        with pytest.raises(DeliveryFailure) as forbidden:
            await sender.find_post(thread.id, MARKER, since=since)
        w.emu.delete_channel(thread)
        with pytest.raises(DeliveryFailure) as gone:
            await sender.find_post(thread.id, MARKER, since=since)
    assert (forbidden.value.kind, gone.value.kind) == ("pause", "pause")


async def test_item11_a_repeated_nonce_posts_again_after_the_nonce_window(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, nonce_window=0.2) as w, running_bot(w) as bot:
        sender = DiscordSender(bot)
        since = datetime.now(UTC) - timedelta(seconds=1)
        first = await sender.post(w.briefings.id, digest(), nonce="n", role_id=None, marker=MARKER)
        again = await sender.post(w.briefings.id, digest(), nonce="n", role_id=None, marker=MARKER)
        await asyncio.sleep(0.3)
        later = await sender.post(w.briefings.id, digest(), nonce="n", role_id=None, marker=MARKER)
        assert first == again != later
        # why the engine looks for the marker before re-sending once the window has passed
        assert await sender.find_post(w.briefings.id, MARKER, since=since) == first
        assert w.emu.violations == []


async def test_item11_a_post_that_takes_too_long_is_retried_later(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "REQUEST_TIMEOUT", 0.2)
    async with running_bot(w) as bot:
        sender = DiscordSender(bot)
        w.emu.fail_next(status=429, retry_after=1.0)  # discord.py waits 1 s before retrying
        with pytest.raises(DeliveryFailure) as slow:
            await sender.post(w.briefings.id, digest(), nonce="n-s", role_id=None, marker=MARKER)
    assert slow.value.kind == "retry"
    assert "did not answer" in slow.value.reason
