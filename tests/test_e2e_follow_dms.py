"""Alerts, end to end: a member follows, an operator rates, the member's DM arrives once;
changes in a row travel together; the DM's buttons work in the DM; closed DMs pause the
member's alerts and the next command says so; /follow clear stops everything; a server's
alert channel gets one post per change. The real bot, the emulator, real sockets, on both
backends (`[sqlite]`, `[postgresql]`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.client.app import PledgeBot
from bot.local import UserState
from bot.local.interactions import InteractionResult
from tests.e2e import World, embed_text, running_bot, with_config, world_on_both_backends
from tests.test_robustness_support import wait_for

__all__ = ["world_on_both_backends"]  # the `w` fixture, on both backends

pytestmark = pytest.mark.e2e

PLEDGE = "europol-partnership"
OTHER = "europe-security-agreement"
STATEMENT = "smuggling-gangs"
EVIDENCE = "https://example.org/evidence"
# poll (2 s) + the quiet wait for more changes (3 s), with room for a loaded machine
ARRIVES_WITHIN = 30.0
ADMINISTRATOR = 1 << 3


class Operator:
    """An operator rating pledges from Discord (`/operator status`)."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.user = w.emu.add_user("operator", permissions=ADMINISTRATOR)

    async def rate(self, pledge: str, status: str, note: str = "Noted") -> None:
        options = {"pledge": pledge, "status": status, "note": note, "evidence": EVIDENCE}
        done = await self.w.emu.run_command(
            self.w.guild, "operator status", options=options, user=self.user
        )
        assert "error" not in embed_text(done.message).lower(), embed_text(done.message)


def operated(w: World) -> tuple[Operator, Any]:
    operator = Operator(w)
    return operator, with_config(w, operator_ids=frozenset({operator.user.id}))


async def follow(w: World, item: str, user: UserState | None = None) -> InteractionResult:
    return await w.emu.run_command(
        w.guild, "follow add", options={"item": item}, user=user or w.member
    )


async def dms(w: World, user: UserState, count: int = 1) -> list[dict[str, Any]]:
    return await w.emu.wait_for_dms(user, count, timeout=ARRIVES_WITHIN)


async def delivery_states(bot: PledgeBot, user: UserState) -> list[str]:
    assert bot.services is not None
    rows = await bot.services.store.rows(
        "SELECT state FROM alert_deliveries WHERE recipient = 'member' AND recipient_id = ? "
        "ORDER BY event_id",
        (user.id,),
    )
    return [r[0] for r in rows]


async def test_a_status_change_reaches_its_follower_once_by_dm(w: World) -> None:
    operator, config = operated(w)
    witness = w.emu.add_user("witness")
    async with running_bot(w, config) as bot:
        assert (await follow(w, f"pledge:{PLEDGE}")).ephemeral
        await follow(w, f"pledge:{OTHER}", user=witness)
        await operator.rate(PLEDGE, "in-progress", "Talks opened")
        [dm] = await dms(w, w.member)
        text = embed_text(dm)
        assert "Not yet rated" in text and "In progress" in text  # from, to
        assert "Talks opened" in text and EVIDENCE in text
        assert f"<@{operator.user.id}>" in text  # who rated it (an embed never pings)
        assert "Alert " in dm["embeds"][-1]["footer"]["text"]  # the marker for re-sends
        assert w.emu.allowed_mentions(dm) == {"parse": []}
        labels = [b["label"] for row in dm["components"] for b in row["components"]]
        assert labels == ["Show pledge", "Stop alerts for this"]
        # a later change the member does not follow: the witness hears of it, not the member
        await operator.rate(OTHER, "stalled")
        await dms(w, witness)
        assert len(w.emu.dms(w.member)) == 1

        async def recorded() -> bool:
            return await delivery_states(bot, w.member) == ["sent"]

        await wait_until(recorded, "the change recorded sent, once")
    opened = [r for r in w.emu.requests if r.path.endswith("/users/@me/channels")]
    assert len(opened) == 2  # one for each member, once


async def test_changes_in_a_row_travel_together_in_one_dm(w: World) -> None:
    operator, config = operated(w)
    async with running_bot(w, config) as bot:
        await follow(w, f"pledge:{PLEDGE}")
        await follow(w, f"statement:{STATEMENT}")  # both: still one DM a change
        for status in ("in-progress", "stalled", "broken"):
            await operator.rate(PLEDGE, status)
        [dm] = await dms(w, w.member)
        assert dm["content"].startswith("🔔 3 changes")
        assert len(dm["embeds"]) == 3

        async def recorded() -> bool:  # the send is recorded just after the DM arrives
            return await delivery_states(bot, w.member) == ["sent"] * 3

        await wait_until(recorded, "the three changes recorded sent")


async def test_both_buttons_work_in_the_dm(w: World) -> None:
    operator, config = operated(w)
    witness = w.emu.add_user("witness")
    async with running_bot(w, config) as bot:
        await follow(w, f"pledge:{PLEDGE}")
        await follow(w, f"pledge:{OTHER}")
        await follow(w, f"pledge:{PLEDGE}", user=witness)
        await operator.rate(PLEDGE, "in-progress")
        [dm] = await dms(w, w.member)
        shown = await w.emu.click_button(dm, label="Show pledge", user=w.member)
        assert "Europol" in embed_text(shown.message)
        stopped = await w.emu.click_button(dm, label="Stop alerts for this", user=w.member)
        assert stopped.ephemeral
        assert "europol" in embed_text(stopped.message).lower()
        assert bot.alerts is not None
        kept = await bot.alerts.follows.of(w.member.id)
        assert [(f.kind, f.slug) for f in kept] == [("pledge", OTHER)]
        # the next changes: the stopped pledge no longer alerts, the other one does
        await operator.rate(PLEDGE, "stalled")
        await operator.rate(OTHER, "in-progress")
        await dms(w, witness, 2)
        [_, second] = await dms(w, w.member, 2)
        assert "Europol" not in embed_text(second)


async def test_closed_dms_pause_alerts_and_the_next_command_says_so(w: World) -> None:
    operator, config = operated(w)
    async with running_bot(w, config) as bot:
        await follow(w, f"pledge:{PLEDGE}")
        w.emu.close_dms(w.member)
        await operator.rate(PLEDGE, "in-progress")

        async def paused() -> bool:
            return await delivery_states(bot, w.member) == ["failed"]

        await wait_until(paused, "the refused DM recorded")
        assert w.emu.dms(w.member) == []
        # the next command, whichever, ends with a private notice, once
        answered = await w.emu.run_command(w.guild, "about", user=w.member)
        await wait_for(lambda: len(answered.followups) == 1, 10, "the pause notice")
        [notice] = answered.followups
        assert notice["flags"] & (1 << 6)  # ephemeral
        assert "paused" in notice["content"] and "/follow resume" in notice["content"]
        again = await w.emu.run_command(w.guild, "about", user=w.member)
        listed = await w.emu.run_command(w.guild, "follow list", user=w.member)
        assert "50007" in embed_text(listed.message)
        assert again.followups == []
        # open again, resume: the next change arrives
        w.emu.open_dms(w.member)
        await w.emu.run_command(w.guild, "follow resume", user=w.member)
        await operator.rate(PLEDGE, "stalled")
        [dm] = await dms(w, w.member)
        assert "Stalled" in embed_text(dm)


async def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + ARRIVES_WITHIN
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_clear_stops_every_alert_and_forgets_the_member(w: World) -> None:
    operator, config = operated(w)
    witness = w.emu.add_user("witness")
    async with running_bot(w, config) as bot:
        await follow(w, f"pledge:{PLEDGE}")
        await follow(w, f"pledge:{PLEDGE}", user=witness)
        await operator.rate(PLEDGE, "in-progress")
        await dms(w, w.member)
        cleared = await w.emu.run_command(w.guild, "follow clear", user=w.member)
        assert cleared.ephemeral
        assert bot.services is not None
        store = bot.services.store
        for table in ("follows", "followers"):
            count = await store.scalar(
                f"SELECT count(*) FROM {table} WHERE user_id = ?", (w.member.id,)
            )
            assert count == 0, table
        await operator.rate(PLEDGE, "stalled")
        await dms(w, witness, 2)  # the change went out
        assert len(w.emu.dms(w.member)) == 1


async def test_a_server_alert_channel_gets_one_post_per_change(w: World) -> None:
    operator, config = operated(w)
    role = w.emu.add_role(w.guild, "Watchers", mentionable=True)
    async with running_bot(w, config):
        done = await w.emu.run_command(
            w.guild,
            "briefing alerts",
            options={"channel": w.briefings, "role": role},
            user=w.moderator,
        )
        assert done.ephemeral, embed_text(done.message)
        await operator.rate(PLEDGE, "in-progress", "Talks opened")
        await operator.rate(OTHER, "stalled")
        posts = await w.emu.wait_for_messages(w.briefings, 2, timeout=ARRIVES_WITHIN)
        assert [p["content"].startswith(f"<@&{role.id}>") for p in posts] == [True, True]
        allowed = w.emu.allowed_mentions(posts[0])
        assert allowed is not None
        assert allowed.get("parse") == []
        assert [str(r) for r in allowed.get("roles", [])] == [str(role.id)]
        assert "Talks opened" in embed_text(posts[0])
        assert w.emu.messages(w.other_guild.channels["briefings"]) == []
