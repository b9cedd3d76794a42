"""Following pledges, end to end: /follow for members, /briefing alerts for moderators, and
the buttons on alert DMs. The real bot, the emulator, real sockets.

Tests that read or write the store directly run on both backends (`wb`: `[sqlite]` and
`[postgresql]`); the others on SQLite (`w`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.client.app import PledgeBot
from bot.follows.compose import show_id, stop_id
from bot.follows.follows import FOLLOW_LIMIT, Follows
from bot.local import ChannelState, GuildState, UserState
from bot.local.interactions import InteractionResult
from bot.local.models import SEND_MESSAGES
from bot.pledges.lookup import Catalog
from tests.e2e import World, embed_text, running_bot, with_config, world
from tests.test_robustness_database import private, visible

pytestmark = pytest.mark.e2e

PLEDGE = "europol-partnership"
PLEDGE_TITLE = "New partnership with Europol on migrant smuggling"
OTHER_PLEDGE = "europe-security-agreement"
POWER = "serious-crime-prevention-orders"
STATEMENT = "smuggling-gangs"
STATEMENT_TITLE = "Labour statement on criminal smuggling gangs"
CLOSED_DMS = "Discord refused the post (Cannot send messages to this user)"


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as value:
        yield value


@pytest.fixture
async def wb(tmp_path: Path, store_location: Path | str) -> AsyncIterator[World]:
    """The world, its store on each backend in turn (tests/conftest.py's `store_location`)."""
    async with world(tmp_path) as value:
        if isinstance(store_location, str):
            value.config = with_config(value, database_url=store_location)
        yield value


def follows(bot: PledgeBot) -> Follows:
    assert bot.services is not None
    return Follows(bot.services.store.db)


async def follow(w: World, item: str, user: UserState | None = None) -> InteractionResult:
    return await w.emu.run_command(
        w.guild, "follow add", options={"item": item}, user=user or w.member
    )


async def command(
    w: World,
    name: str,
    user: UserState | None = None,
    guild: GuildState | None = None,
    **options: Any,
) -> InteractionResult:
    return await w.emu.run_command(
        guild or w.guild, name, options=options, user=user or w.member, unchecked=True
    )


async def offered(w: World, name: str, typed: str, user: UserState | None = None) -> list[Any]:
    return await w.emu.autocomplete(
        w.guild, name, focused="item", value=typed, user=user or w.member
    )


def answered(result: InteractionResult) -> str:
    """The answer's text, checked to be private."""
    assert private(result), result
    return visible(result)


def rendered(text: str) -> str:
    """Text as Discord shows it: a backslash-escaped character shows as itself."""
    return re.sub(r"\\(.)", r"\1", text)


def followed(found: list[Any]) -> list[tuple[str, str]]:
    return [(f.kind, f.slug) for f in found]


# -- /follow add -------------------------------------------------------------------------


async def test_add_offers_pledges_powers_and_statements_each_labelled_with_its_kind(
    w: World,
) -> None:
    async with running_bot(w):
        everything = await offered(w, "follow add", "")
        europol = await offered(w, "follow add", "europol")
        added = {
            value: await follow(w, value)
            for value in (f"pledge:{PLEDGE}", f"power:{POWER}", f"statement:{STATEMENT}")
        }
        again = await follow(w, f"pledge:{PLEDGE}")
        typed_name = await follow(w, PLEDGE_TITLE.upper(), user=w.moderator)
        listed = await command(w, "follow list")
    names = {c["value"]: c["name"] for c in everything}
    assert names[f"pledge:{PLEDGE}"] == f"Pledge · {PLEDGE_TITLE}"
    assert names[f"power:{POWER}"] == "Power · Serious Crime Prevention Orders (SCPO)"
    assert names[f"statement:{STATEMENT}"] == f"Statement · {STATEMENT_TITLE}"
    assert all(re.match(r"(Pledge|Power|Statement) · ", c["name"]) for c in everything)
    assert [c["value"] for c in europol] == [
        f"pledge:{PLEDGE}",
        "pledge:police-officers-to-europol",
    ]
    assert "You now follow **Pledge · New partnership" in answered(added[f"pledge:{PLEDGE}"])
    assert "when its status changes" in answered(added[f"pledge:{PLEDGE}"])
    assert "a pledge it serves" in answered(added[f"power:{POWER}"])
    assert "adds a pledge" in answered(added[f"statement:{STATEMENT}"])
    assert "You follow 3 of at most 50" in answered(added[f"statement:{STATEMENT}"])
    assert f"You already follow **Pledge · {PLEDGE_TITLE}**" in answered(again)
    assert "You now follow **Pledge · New partnership" in answered(typed_name)
    assert answered(listed).count("• ") == 3
    assert w.emu.violations == [] and w.emu.unhandled == []


async def test_choices_stay_within_discords_limits_and_share_out_the_kinds(w: World) -> None:
    long = "A very long title that goes on and on about what was pledged and by whom " * 3
    async with running_bot(w) as bot:
        assert bot.services is not None
        for kind, attribute in (
            ("pledge", "pledges"),
            ("power", "powers"),
            ("statement", "statement_names"),
        ):
            records = [(f"{kind}-{i}", f"{long}{i}") for i in range(40)]
            setattr(bot.services, attribute, Catalog(kind, records))
        everything = await offered(w, "follow add", "")
        one = await offered(w, "follow add", "on and on 17")
        added = await follow(w, everything[-1]["value"])
    assert len(everything) == 25
    assert all(len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in everything + one)
    kinds = [c["value"].split(":")[0] for c in everything]
    assert (kinds.count("pledge"), kinds.count("power"), kinds.count("statement")) == (9, 8, 8)
    assert kinds == sorted(kinds, key=["pledge", "power", "statement"].index)  # grouped
    assert {c["value"] for c in one} == {
        "pledge:pledge-17",
        "power:power-17",
        "statement:statement-17",
    }
    assert "You now follow **Statement · A very long title" in answered(added)
    assert w.emu.violations == []


async def test_at_the_limit_a_member_is_told_so_and_nothing_is_added(wb: World) -> None:
    async with running_bot(wb) as bot:
        for i in range(FOLLOW_LIMIT):
            assert await follows(bot).add(wb.member.id, "pledge", f"gone-{i:02d}") == "added"
        refused = await follow(wb, f"pledge:{PLEDGE}")
        stored = await follows(bot).of(wb.member.id)
        shown = await command(wb, "follow list")
        pages = [embed_text(shown.message)]
        message = shown.message
        while len(pages) < 5 and not next_button(message).get("disabled"):
            assert message is not None
            turned = await wb.emu.click_button(message, label="Next ▶", user=wb.member)
            message = turned.message
            pages.append(embed_text(message))
    text = answered(refused)
    assert "You already follow 50 items, the most one member can" in text
    assert "/follow remove" in text and PLEDGE_TITLE in text
    assert len(stored) == FOLLOW_LIMIT and (("pledge", PLEDGE) not in followed(stored))
    assert private(shown)
    assert [p.splitlines()[0] for p in pages] == [
        f"What you follow: 50 of 50 ({n}/3)" for n in (1, 2, 3)
    ]
    lines = [line for page in pages for line in page.splitlines() if line.startswith("• ")]
    assert lines == [f"• Pledge · gone-{i:02d} (no longer carried)" for i in range(50)]
    assert wb.emu.violations == []


def next_button(message: dict[str, Any] | None) -> dict[str, Any]:
    assert message is not None
    buttons = [c for row in message["components"] for c in row["components"]]
    return next(b for b in buttons if b.get("label") == "Next ▶")


async def test_text_that_is_no_item_gets_a_private_answer_naming_it(w: World) -> None:
    async with running_bot(w):
        unknown = await follow(w, "no such thing")
        bad_slug = await follow(w, "pledge:no-such-pledge")
        markdown = await follow(w, "**loud** [link](http://x)")
        not_followed = await command(w, "follow remove", item="no such thing")
        listed = await command(w, "follow list")
    assert "Unknown item" in answered(unknown) and "“no such thing”" in answered(unknown)
    assert "“pledge:no-such-pledge”" in rendered(answered(bad_slug))
    assert r"“\*\*loud\*\* \[link\]\(http\:" in answered(markdown)  # shown, not formatted
    assert "“**loud** [link](http://x)”" in rendered(answered(markdown))
    assert "You don't follow “no such thing”" in answered(not_followed)
    assert "You follow nothing yet" in answered(listed)


# -- /follow list, resume, remove, clear -------------------------------------------------------


async def test_list_shows_a_pause_with_its_reason_until_resumed(wb: World) -> None:
    async with running_bot(wb) as bot:
        empty = await command(wb, "follow list")
        await follow(wb, f"pledge:{PLEDGE}")
        await follow(wb, f"statement:{STATEMENT}")
        await follows(bot).pause(wb.member.id, CLOSED_DMS)
        paused = await command(wb, "follow list")
        added_while_paused = await follow(wb, f"power:{POWER}")
        resumed = await command(wb, "follow resume")
        after = await command(wb, "follow list")
        again = await command(wb, "follow resume")
        pause = await follows(bot).pause_of(wb.member.id)
    assert "You follow nothing yet" in answered(empty)
    text = answered(paused)
    assert "Your alerts are paused" in text and "Cannot send messages to this user" in text
    assert "Open your direct messages" in text and "/follow resume" in text
    assert f"• Pledge · {PLEDGE_TITLE}" in text and f"• Statement · {STATEMENT_TITLE}" in text
    assert "What you follow: 2 of 50" in text
    assert "Your alerts are paused" in answered(added_while_paused)
    assert "Alerts resumed" in answered(resumed)
    assert "paused" not in answered(after) and "What you follow: 3 of 50" in answered(after)
    assert "aren't paused" in answered(again)
    assert pause is None


async def test_remove_offers_only_the_members_own_follows(wb: World) -> None:
    async with running_bot(wb) as bot:
        await follow(wb, f"pledge:{PLEDGE}")
        await follow(wb, f"statement:{STATEMENT}")
        await follow(wb, f"pledge:{OTHER_PLEDGE}", user=wb.moderator)
        mine = await offered(wb, "follow remove", "")
        narrowed = await offered(wb, "follow remove", "statement")
        theirs = await offered(wb, "follow remove", "", user=wb.moderator)
        removed = await command(wb, "follow remove", item=mine[0]["value"])
        again = await command(wb, "follow remove", item=mine[0]["value"])
        by_name = await command(wb, "follow remove", item=STATEMENT_TITLE)
        left = await follows(bot).of(wb.member.id)
        kept = await follows(bot).of(wb.moderator.id)
    assert [(c["name"], c["value"]) for c in mine] == [
        (f"Pledge · {PLEDGE_TITLE}", f"pledge:{PLEDGE}"),
        (f"Statement · {STATEMENT_TITLE}", f"statement:{STATEMENT}"),
    ]
    assert [c["value"] for c in narrowed] == [f"statement:{STATEMENT}"]
    assert [c["value"] for c in theirs] == [f"pledge:{OTHER_PLEDGE}"]
    assert f"You no longer follow **Pledge · {PLEDGE_TITLE}**" in answered(removed)
    assert "You don't follow" in answered(again)
    assert f"You no longer follow **Statement · {STATEMENT_TITLE}**" in answered(by_name)
    assert left == []
    assert followed(kept) == [("pledge", OTHER_PLEDGE)]


async def test_clear_deletes_everything_kept_about_the_members_follows(wb: World) -> None:
    async with running_bot(wb) as bot:
        assert bot.services is not None
        store = bot.services.store
        await follow(wb, f"pledge:{PLEDGE}")
        await follow(wb, f"power:{POWER}")
        await follow(wb, f"pledge:{PLEDGE}", user=wb.moderator)
        for user in (wb.member, wb.moderator):
            await follows(bot).remember_dm_channel(user.id, 1000 + user.id % 1000)
            await follows(bot).pause(user.id, CLOSED_DMS)
        await store.set_status(
            PLEDGE,
            "in-progress",
            note="Talks began",
            changed_by="operator:test",
            evidence_url="https://example.org/talks",
        )
        event = await store.db.scalar("SELECT max(id) FROM pledge_events")
        async with store.db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO alert_deliveries(recipient, recipient_id, event_id, batch, state, "
                "claimed_at) VALUES ('member', ?, ?, ?, 'skipped', '2026-01-01T00:00:00+00:00') "
                "ON CONFLICT(recipient, recipient_id, event_id) DO NOTHING",
                [(user.id, event, f"batch-{user.id}") for user in (wb.member, wb.moderator)],
            )
        cleared = await command(wb, "follow clear")
        again = await command(wb, "follow clear")
        counts = {
            user.username: [
                await store.db.scalar(
                    f"SELECT count(*) FROM {table} WHERE {column} = ?", (user.id,)
                )
                for table, column in (
                    ("follows", "user_id"),
                    ("followers", "user_id"),
                    ("alert_deliveries", "recipient_id"),
                )
            ]
            for user in (wb.member, wb.moderator)
        }
    assert "you had your 2 follows" in answered(cleared)
    assert "Nothing about your follows is kept now" in answered(cleared)
    assert "you had no follows" in answered(again)
    assert [int(n) for n in counts["member"]] == [0, 0, 0]
    assert [int(n) for n in counts["moderator"]] == [1, 1, 1]  # someone else's: untouched


# -- the buttons on alert DMs --------------------------------------------------------------


def alert_view(*custom_ids: tuple[str, str]) -> discord.ui.View:
    """Plain buttons with an alert's custom ids, as an alert DM carries them. The view is
    stopped before it is sent, so only the bot's dynamic items can answer a click."""
    view = discord.ui.View(timeout=None)
    for label, custom_id in custom_ids:
        view.add_item(discord.ui.Button(label=label, custom_id=custom_id))
    view.stop()
    return view


BUTTONS = (
    ("Show pledge", show_id(PLEDGE)),
    ("Stop alerts for this", stop_id("pledge", PLEDGE)),
    ("Stop: statement", stop_id("statement", STATEMENT)),
    ("Show: gone", show_id("no-longer-carried")),
)


async def test_alert_buttons_work_after_a_restart(wb: World) -> None:
    async with running_bot(wb) as bot:
        await follow(wb, f"pledge:{PLEDGE}")
        channel = bot.get_channel(wb.general.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("🔔 A pledge you follow changed.", view=alert_view(*BUTTONS))
    async with running_bot(wb) as bot:  # a new process: nothing but the custom ids is left
        shown = await wb.emu.click_button(sent.id, show_id(PLEDGE), user=wb.member)
        stopped = await wb.emu.click_button(sent.id, stop_id("pledge", PLEDGE), user=wb.member)
        again = await wb.emu.click_button(sent.id, stop_id("pledge", PLEDGE), user=wb.member)
        statement = await wb.emu.click_button(
            sent.id, stop_id("statement", STATEMENT), user=wb.member
        )
        gone = await wb.emu.click_button(sent.id, show_id("no-longer-carried"), user=wb.member)
        left = await follows(bot).of(wb.member.id)
    assert PLEDGE_TITLE in answered(shown) and "Status" in answered(shown)
    assert f"You no longer follow **Pledge · {PLEDGE_TITLE}**" in answered(stopped)
    assert f"You weren't following **Pledge · {PLEDGE_TITLE}** any more" in answered(again)
    assert f"You weren't following **Statement · {STATEMENT_TITLE}**" in answered(statement)
    assert "No pledge called “no-longer-carried”" in answered(gone)
    assert left == []
    assert wb.emu.violations == [] and wb.emu.unhandled == []


async def test_alert_buttons_answer_in_a_dm(w: World) -> None:
    async with running_bot(w) as bot:
        await follow(w, f"statement:{STATEMENT}")
        dm = await bot.create_dm(discord.Object(w.member.id))
        await dm.send("🔔 2 changes to what you follow.", view=alert_view(*BUTTONS))
        (posted,) = w.emu.dms(w.member)
        shown = await w.emu.click_button(posted, show_id(PLEDGE), user=w.member)
        stopped = await w.emu.click_button(posted, stop_id("statement", STATEMENT), user=w.member)
        left = await follows(bot).of(w.member.id)
    assert PLEDGE_TITLE in answered(shown)
    assert f"You no longer follow **Statement · {STATEMENT_TITLE}**" in answered(stopped)
    assert left == []
    assert w.emu.violations == [] and w.emu.unhandled == []


# -- /briefing alerts ------------------------------------------------------------------------


async def alerts(
    w: World,
    channel: ChannelState | None = None,
    user: UserState | None = None,
    guild: GuildState | None = None,
    **options: Any,
) -> InteractionResult:
    if channel is not None:
        options["channel"] = channel
    return await command(w, "briefing alerts", user or w.moderator, guild, **options)


async def test_moderators_set_show_and_stop_the_servers_alert_channel(wb: World) -> None:
    role = wb.emu.add_role(wb.guild, "Watchers", mentionable=True)
    quiet = wb.emu.add_role(wb.guild, "Quiet", mentionable=False)
    async with running_bot(wb) as bot:
        off_at_first = await alerts(wb)
        offered_statements = await wb.emu.autocomplete(
            wb.guild,
            "briefing alerts",
            focused="statement",
            value="smug",
            user=wb.moderator,
            options={"channel": wb.briefings},
        )
        unknown = await alerts(wb, wb.briefings, statement="no such statement")
        no_channel = await alerts(wb, role=role)
        loud = await alerts(wb, wb.briefings, role=quiet)
        refused_before = await follows(bot).alert_channel(wb.guild.id)
        made = await alerts(wb, wb.briefings, role=role, statement=STATEMENT)
        stored = await follows(bot).alert_channel(wb.guild.id)
        shown = await alerts(wb)
        await follows(bot).pause_alert_channel(wb.guild.id, wb.briefings.id, "channel deleted")
        paused = await alerts(wb)
        off = await command(wb, "briefing alerts-off", wb.moderator)
        after = await follows(bot).alert_channel(wb.guild.id)
        off_again = await command(wb, "briefing alerts-off", wb.moderator)
        shown_off = await alerts(wb)
    assert "Pledge alerts are off in this server" in answered(off_at_first)
    assert [c["value"] for c in offered_statements] == [STATEMENT]
    assert "No statement called “no such statement”" in answered(unknown)
    assert "Choose a channel" in answered(no_channel)
    assert "You can't have me ping" in answered(loud)
    assert refused_before is None
    text = answered(made)
    assert "Pledge alerts on" in text and f"<#{wb.briefings.id}>" in text
    assert f"<@&{role.id}>" in text and STATEMENT_TITLE in text and "as it happens" in text
    assert stored is not None
    assert (stored.channel_id, stored.role_id, stored.statement_slug, stored.set_by) == (
        wb.briefings.id,
        role.id,
        STATEMENT,
        wb.moderator.id,
    )
    assert f"<#{wb.briefings.id}>" in answered(shown) and STATEMENT_TITLE in answered(shown)
    assert "paused: channel deleted" in answered(paused)
    assert f"Pledge alerts stopped: nothing more will be posted in <#{wb.briefings.id}>" in (
        answered(off)
    )
    assert after is None
    assert "were not on" in answered(off_again)
    assert "Pledge alerts are off" in answered(shown_off)
    assert wb.emu.violations == []


async def test_alerts_need_a_channel_the_bot_can_post_in(w: World) -> None:
    w.emu.set_bot_channel_permissions(w.briefings, deny=SEND_MESSAGES)
    async with running_bot(w) as bot:
        refused = await alerts(w, w.briefings)
        stored = await follows(bot).alert_channel(w.guild.id)
    assert "I can't post pledge alerts there" in answered(refused)
    assert "Send Messages" in answered(refused)
    assert stored is None


async def test_members_cannot_set_or_stop_alerts(w: World) -> None:
    async with running_bot(w) as bot:
        await alerts(w, w.briefings)
        for result in (
            await alerts(w, w.general, user=w.member),
            await alerts(w, user=w.member),
            await command(w, "briefing alerts-off", w.member),
        ):
            assert "Manage Server" in answered(result)
        stored = await follows(bot).alert_channel(w.guild.id)
    assert stored is not None and stored.channel_id == w.briefings.id


async def test_a_server_never_touches_another_servers_alerts(wb: World) -> None:
    elsewhere = wb.other_guild
    async with running_bot(wb) as bot:
        await alerts(wb, elsewhere.channels["briefings"], guild=elsewhere)
        theirs = await follows(bot).alert_channel(elsewhere.id)
        across = await alerts(wb, elsewhere.channels["general"])
        shown_here = await alerts(wb)
        await alerts(wb, wb.briefings)
        off_here = await command(wb, "briefing alerts-off", wb.moderator)
        still = await follows(bot).alert_channel(elsewhere.id)
        here = await follows(bot).alert_channel(wb.guild.id)
        shown_there = await alerts(wb, guild=elsewhere)
    assert theirs is not None and theirs.channel_id == elsewhere.channels["briefings"].id
    refused = answered(across)
    assert "another server" in refused or "not in this server" in refused
    assert "off in this server" in answered(shown_here)
    assert "stopped" in answered(off_here)
    assert still == theirs and here is None
    assert f"<#{elsewhere.channels['briefings'].id}>" in answered(shown_there)
