"""Suggestions, end to end: a member suggests a status with evidence (each limit and bad
input answered privately), operators review by the CLI (a real process) and by buttons
(Accept; Reject with its modal; a non-operator refused; the buttons outliving a restart),
the member is told by DM, or after their next command when DMs are closed, and the public
record (/pledge history, /about) names the suggestion, never the member. The real bot, the
emulator, real sockets, on both backends (`[sqlite]`, `[postgresql]`)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.client.app import PledgeBot
from bot.config import Config
from bot.local import CommandUsageError, UserState
from bot.local.interactions import InteractionResult
from bot.pledges.suggestions import DAILY_LIMIT, Suggestions
from tests.conftest import REPO
from tests.e2e import World, embed_text, running_bot, with_config, world_on_both_backends

__all__ = ["world_on_both_backends"]  # the `w` fixture, on both backends

pytestmark = pytest.mark.e2e

PLEDGE = "europol-partnership"
OTHER = "europe-security-agreement"
LINK = "https://example.org/talks"
ARRIVES_WITHIN = 30.0  # the outcome loop looks every 2 s; room for a loaded machine
ADMINISTRATOR = 1 << 3
EPHEMERAL = 1 << 6


def operated(w: World) -> tuple[UserState, Config]:
    operator = w.emu.add_user("operator", permissions=ADMINISTRATOR)
    return operator, with_config(w, operator_ids=frozenset({operator.id}))


async def suggest(
    w: World,
    user: UserState,
    *,
    pledge: str = PLEDGE,
    status: str = "in-progress",
    evidence: str = LINK,
    note: str | None = None,
) -> InteractionResult:
    options = {"pledge": pledge, "status": status, "evidence": evidence}
    if note is not None:
        options["note"] = note
    return await w.emu.run_command(w.guild, "pledge suggest", options=options, user=user)


def page(result: InteractionResult) -> dict[str, Any]:
    """The message an interaction answered with (or the one its click updated)."""
    assert result.message is not None
    return result.message


def said(result: InteractionResult) -> str:
    return embed_text(result.message)


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + ARRIVES_WITHIN
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def suggestions_of(bot: PledgeBot) -> Suggestions:
    assert bot.suggestions is not None
    return bot.suggestions


async def count(bot: PledgeBot, table: str) -> int:
    assert bot.services is not None
    return int(await bot.services.store.scalar(f"SELECT count(*) FROM {table}"))


async def notice_state(bot: PledgeBot, suggestion_id: int, user: UserState) -> str | None:
    states = await suggestions_of(bot).notice_states(suggestion_id)
    return next((n.state for n in states if n.user_id == user.id), None)


async def cli(w: World, *argv: str) -> tuple[int, str, str]:
    """`pledgebot ...` as an operator runs it: its own process, on the bot's database."""
    config = w.config
    database = (
        f'url = "{config.database_url}"'
        if config.database_url is not None
        else f'path = "{config.database_path}"'
    )
    path = config.database_path.parent / "cli.toml"
    path.write_text(f"[database]\n{database}\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(path),
        *argv,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_member_suggests_privately_and_bad_input_is_answered_privately(
    w: World,
) -> None:
    async with running_bot(w) as bot:
        done = await suggest(w, w.member, note="Talks opened @everyone")
        assert done.ephemeral
        assert "Suggestion #1 received" in said(done)
        assert "1 of 3 suggestions waiting for review" in said(done)
        assert "1 of 10 handed in within 24 hours" in said(done)
        assert "@\u200beveryone" in said(done)  # the member's words, never a mention
        assert (w.emu.allowed_mentions(page(done)) or {}).get("parse") == []
        refusals = [
            ({"evidence": "ftp://example.org/x"}, "only http:// and https://"),
            ({"evidence": "javascript:alert(1)"}, "only http:// and https://"),
            ({"evidence": "see the news"}, "cannot contain spaces"),
            ({"pledge": "zzzz"}, "No pledge called"),
            ({"evidence": "https://"}, "names no web site"),
            ({"status": "not-yet-rated", "evidence": f"{LINK}/2"}, "already rated"),
        ]
        # (lengths and choices Discord itself enforces: the unit tests cover them)
        for options, reason in refusals:
            answer = await suggest(w, w.member, **options)
            assert answer.ephemeral, options
            assert reason in said(answer), (options, said(answer))
            assert "something went wrong" not in said(answer)
        assert await count(bot, "suggestions") == 1
    assert w.emu.violations == []


async def test_each_limit_is_said_plainly(w: World) -> None:
    backer = w.emu.add_user("backer")
    blocked = w.emu.add_user("blocked")
    async with running_bot(w) as bot:
        for n in range(3):
            assert "received" in said(await suggest(w, w.member, evidence=f"{LINK}/{n}"))
        fourth = await suggest(w, w.member, evidence=f"{LINK}/3")
        assert fourth.ephemeral
        assert "3 suggestions waiting for review (#1, #2, #3)" in said(fourth)
        # the same pledge and link from another member backs the waiting suggestion
        backed = await suggest(w, backer, evidence=f"{LINK}/0", note="Seen it too")
        assert backed.ephemeral and "Added to suggestion #1" in said(backed)
        assert "2 members point to it" in said(backed)
        again = await suggest(w, backer, evidence=f"{LINK}/0")
        assert "already handed in this link" in said(again)
        assert await count(bot, "suggestions") == 3
        # ten a day: other members' suggestions for the backer to back
        suggestions = suggestions_of(bot)
        for n in range(DAILY_LIMIT):
            await suggestions.suggest((900 + n) << 22, None, OTHER, "stalled", f"{LINK}/o{n}")
        for n in range(DAILY_LIMIT - 1):
            backing = await suggest(w, backer, pledge=OTHER, evidence=f"{LINK}/o{n}")
            assert "Added to" in said(backing)
        eleventh = await suggest(w, backer, pledge=OTHER, evidence=f"{LINK}/o{DAILY_LIMIT - 1}")
        assert eleventh.ephemeral
        assert "handed in 10 suggestions within 24 hours" in said(eleventh)
        assert "You can suggest again <t:" in said(eleventh)
        # a blocked user is told plainly
        assert await suggestions.block(blocked.id, by="operator:test")
        refused = await suggest(w, blocked, evidence=f"{LINK}/blocked")
        assert refused.ephemeral and "stopped taking suggestions from you" in said(refused)
        assert await count(bot, "suggestion_backers") == DAILY_LIMIT
    assert w.emu.violations == []


async def test_review_by_cli_tells_the_member_by_dm_and_the_record_is_public(
    w: World,
) -> None:
    witness = w.emu.add_user("witness")
    async with running_bot(w) as bot:
        await suggest(w, w.member, note="Talks opened")
        await suggest(w, w.member, pledge=OTHER, status="stalled")
        code, out, err = await cli(w, "suggestions", "list")
        assert code == 0, err
        assert f"user {w.member.id}" in out and "2 suggestion(s) waiting" in out
        code, out, err = await cli(w, "suggestions", "accept", "1", "--by", "ann")
        assert code == 0, err
        assert "accepted #1: europol-partnership not-yet-rated -> in-progress" in out
        [dm] = await w.emu.wait_for_dms(w.member, 1, timeout=ARRIVES_WITHIN)
        assert "Your suggestion #1: accepted" in embed_text(dm)
        assert w.emu.allowed_mentions(dm) == {"parse": []}
        code, _, err = await cli(w, "suggestions", "reject", "2", "--reason", "Not stalled")
        assert code == 0, err
        [_, second] = await w.emu.wait_for_dms(w.member, 2, timeout=ARRIVES_WITHIN)
        assert "Your suggestion #2: not accepted" in embed_text(second)
        assert "The operator's reason: Not stalled" in embed_text(second)

        async def told() -> bool:
            return await notice_state(bot, 2, w.member) == "dm"

        await wait_until(told, "the second notice recorded sent by DM")
        assert await notice_state(bot, 1, w.member) == "dm"
        # the public record: which change came from a suggestion, never who
        history = await w.emu.run_command(
            w.guild, "pledge history", options={"pledge": PLEDGE}, user=witness
        )
        text = said(history)
        assert not history.ephemeral
        assert "from a member's suggestion (#1)" in text and "Talks opened" in text
        assert str(w.member.id) not in text and "member" in text
        about = await w.emu.run_command(w.guild, "about", user=witness)
        assert "Received 2 · accepted 1 · rejected 1 · waiting for review 0" in said(about)
        assert str(w.member.id) not in said(about)
        # told once: nothing more reaches the member
        await w.emu.run_command(w.guild, "about", user=w.member)
        assert len(w.emu.dms(w.member)) == 2
    assert w.emu.violations == []


async def test_review_by_buttons_accept_and_reject_with_the_reason_in_a_modal(
    w: World,
) -> None:
    operator, config = operated(w)
    async with running_bot(w, config) as bot:
        await suggest(w, w.member, note="Talks @here")
        await suggest(w, w.member, pledge=OTHER, status="stalled")
        listing = await w.emu.run_command(w.guild, "operator suggestions", user=operator)
        assert listing.ephemeral
        text = said(listing)
        assert "Suggestion #1" in text and f"<@{w.member.id}>" in text  # operators see who
        assert "1 of 2 waiting, oldest first" in text
        labels = [b["label"] for row in page(listing)["components"] for b in row["components"]]
        assert labels == ["Accept", "Reject", "◀ Previous", "1/2", "Next ▶"]
        turned = await w.emu.click_button(page(listing), label="Next ▶", user=operator)
        assert "Suggestion #2" in said(turned)
        back = await w.emu.click_button(page(turned), label="◀ Previous", user=operator)
        assert "Suggestion #1" in said(back)
        accepted = await w.emu.click_button(page(back), label="Accept", user=operator)
        assert "✅ Accepted #1" in said(accepted)
        assert "Suggestion #2" in said(accepted)  # the next one waiting, in its place
        opened = await w.emu.click_button(page(accepted), label="Reject", user=operator)
        assert opened.modal is not None and opened.modal["title"] == "Reject suggestion #2"
        with pytest.raises(CommandUsageError):  # Discord's client needs a reason
            await w.emu.submit_modal(opened, {"reason": ""})
        submitted = await w.emu.submit_modal(opened, {"reason": "It has moved since"})
        assert "❌ Rejected #2" in said(submitted)
        assert "Nothing waits for review" in said(submitted)
        assert submitted.message is not None and submitted.message["components"] == []
        dms = await w.emu.wait_for_dms(w.member, 2, timeout=ARRIVES_WITHIN)
        assert "accepted" in embed_text(dms[0])
        assert "The operator's reason: It has moved since" in embed_text(dms[1])
        assert bot.services is not None
        [change] = await bot.services.store.status_history(PLEDGE)
        assert (change.changed_by, change.suggestion_id) == (f"discord:{operator.id}", 1)
        assert change.note == "Talks @\u200bhere"
        rejected = await suggestions_of(bot).get(2)
        assert rejected is not None
        assert (rejected.state, rejected.reason) == ("rejected", "It has moved since")
        # the pledge card shows the operator as who rated it
        shown = await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": PLEDGE}, user=w.member
        )
        assert f"<@{operator.id}>" in said(shown) and "In progress" in said(shown)
    assert w.emu.violations == []


async def test_buttons_outlive_a_restart_and_refuse_whoever_is_no_operator(
    w: World,
) -> None:
    operator, config = operated(w)
    admin = w.emu.add_user("admin", permissions=ADMINISTRATOR)  # a server admin, no operator
    async with running_bot(w, config):
        await suggest(w, w.member)
        await suggest(w, w.member, pledge=OTHER, status="stalled")
        refused = await w.emu.run_command(w.guild, "operator suggestions", user=admin)
        assert refused.ephemeral and "Only pledgebot's operators" in said(refused)
        listing = await w.emu.run_command(w.guild, "operator suggestions", user=operator)
        stale = await w.emu.run_command(w.guild, "operator suggestions", user=operator)
    # a restart: the same buttons still work
    async with running_bot(w, config):
        accepted = await w.emu.click_button(page(listing), label="Accept", user=operator)
        assert "✅ Accepted #1" in said(accepted) and "Suggestion #2" in said(accepted)
        # another page still showing #1: deciding it again is refused, privately
        again = await w.emu.click_button(page(stale), label="Accept", user=operator)
        assert again.ephemeral and "already accepted" in said(again)
    # the operator is removed from operator_ids: every click is checked again
    async with running_bot(w, with_config(w, operator_ids=frozenset())) as bot:
        for label in ("Accept", "Reject"):
            clicked = await w.emu.click_button(page(listing), label=label, user=operator)
            assert clicked.ephemeral and clicked.modal is None
            assert "Only pledgebot's operators can review suggestions" in said(clicked)
        waiting = await suggestions_of(bot).get(2)
        assert waiting is not None and waiting.state == "open"
    assert w.emu.violations == []


async def test_closed_dms_the_member_is_told_after_their_next_command_once(
    w: World,
) -> None:
    operator, config = operated(w)
    async with running_bot(w, config) as bot:
        await suggest(w, w.member)
        w.emu.close_dms(w.member)
        listing = await w.emu.run_command(w.guild, "operator suggestions", user=operator)
        await w.emu.click_button(page(listing), label="Accept", user=operator)

        async def refused() -> bool:
            return await notice_state(bot, 1, w.member) == "waiting"

        await wait_until(refused, "the refused DM recorded")
        states = await suggestions_of(bot).notice_states(1)
        assert "50007" in (states[0].error or "")
        assert w.emu.dms(w.member) == []
        answered = await w.emu.run_command(w.guild, "about", user=w.member)
        deadline = time.monotonic() + 10
        while not answered.followups:
            assert time.monotonic() < deadline, "no notice after the command"
            await asyncio.sleep(0.05)
        [notice] = answered.followups
        assert notice["flags"] & EPHEMERAL
        assert "Your suggestion #1: accepted" in embed_text(notice)
        again = await w.emu.run_command(w.guild, "about", user=w.member)
        await asyncio.sleep(0.5)  # a second notice would follow the answer at once
        assert again.followups == []
        assert await notice_state(bot, 1, w.member) == "command"
        assert w.emu.dms(w.member) == []
    assert w.emu.violations == []
