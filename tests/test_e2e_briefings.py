"""Scheduled briefings end to end: the real bot, the emulator, real sockets, real SQLite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.briefings.engine import marker_for, nonce_for
from bot.client.app import PledgeBot
from bot.local.models import MENTION_EVERYONE
from tests.e2e import World, embed_text, running_bot, with_config, world

pytestmark = pytest.mark.e2e

SEND_MESSAGES = 1 << 11


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


async def schedule(w: World, **options: object) -> int:
    """Schedule a briefing in #briefings as the moderator; return its id."""
    result = await w.emu.run_command(
        w.guild,
        "briefing schedule",
        options={"channel": w.briefings, "time": "09:00", **options},
        user=w.moderator,
    )
    text = embed_text(result.message)
    assert result.ephemeral
    assert "scheduled" in text, text
    return int(text.split("#", 1)[1].split(" ", 1)[0])


def engine(bot: PledgeBot):  # type: ignore[no-untyped-def]
    assert bot.engine is not None
    return bot.engine


async def test_a_scheduled_briefing_arrives_at_its_slot(w: World) -> None:
    now = datetime.now(UTC)
    slot = (now + timedelta(minutes=2 if now.second > 50 else 1)).replace(second=0, microsecond=0)
    async with running_bot(w):
        briefing_id = await schedule(w, time=slot.strftime("%H:%M"), timezone="UTC")
        wait = (slot - datetime.now(UTC)).total_seconds() + 15
        (posted,) = await w.emu.wait_for_messages(w.briefings, 1, timeout=wait)
        arrived = datetime.now(UTC)
    assert "Pledge digest" in embed_text(posted)
    assert slot <= arrived < slot + timedelta(seconds=10)
    assert w.emu.allowed_mentions(posted) == {"parse": []}
    assert briefing_id == 1


async def test_the_reply_shows_the_next_three_posting_times(w: World) -> None:
    async with running_bot(w):
        result = await w.emu.run_command(
            w.guild,
            "briefing schedule",
            options={"channel": w.briefings, "time": "07:30", "days": "mon-fri"},
            user=w.moderator,
        )
    fields = {f["name"]: f["value"] for f in result.message["embeds"][0]["fields"]}  # type: ignore[index]
    assert fields["Next posts"].count("<t:") == 6  # absolute and relative, three times


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time": "25:00"}, "time"),
        ({"time": "09:00", "days": "someday"}, "day"),
        ({"time": "09:00", "timezone": "Mars/Olympus"}, "time zone"),
        ({"cron": "* * * * *"}, "once an hour"),
        ({"time": "09:00", "date": "2020-01-01"}, "past"),
        ({"time": "09:00", "content": "nonsense-that-matches-nothing"}, "not a briefing content"),
    ],
)
async def test_bad_input_gets_a_clear_private_answer(
    w: World, options: dict[str, str], message: str
) -> None:
    async with running_bot(w) as bot:
        result = await w.emu.run_command(
            w.guild,
            "briefing schedule",
            options={"channel": w.briefings, **options},
            user=w.moderator,
        )
        assert await engine(bot).schedules.in_guild(w.guild.id) == []
    assert result.ephemeral
    assert message in embed_text(result.message).lower()


async def test_moderators_manage_their_briefings(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        assert engine(bot).planned_at(briefing_id) is not None
        for action, expected in [
            ("pause", "paused"),
            ("resume", "resumed"),
            ("list", f"Briefing #{briefing_id}"),
            ("show", "Changes"),
            ("preview", "Pledge digest"),
        ]:
            options = {} if action == "list" else {"id": briefing_id}
            result = await w.emu.run_command(
                w.guild, f"briefing {action}", options=options, user=w.moderator
            )
            assert result.ephemeral
            assert expected in embed_text(result.message), action
        edited = await w.emu.run_command(
            w.guild,
            "briefing edit",
            options={"id": briefing_id, "time": "18:45", "content": "spotlight"},
            user=w.moderator,
        )
        assert "18:45" in embed_text(edited.message)
        assert "spotlight" in embed_text(edited.message)
        cancelled = await w.emu.run_command(
            w.guild, "briefing cancel", options={"id": briefing_id}, user=w.moderator
        )
        assert "cancelled" in embed_text(cancelled.message)
        assert engine(bot).planned_at(briefing_id) is None
        changes = await engine(bot).schedules.changes(briefing_id)
        assert [c.action for c in changes] == [
            "created",
            "paused",
            "resumed",
            "edited",
            "cancelled",
        ]
    assert w.emu.messages(w.briefings) == []  # preview posts nothing
    assert w.emu.violations == []


async def test_send_now_posts_once_and_counts_as_a_delivery(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w, content="europol-partnership")
        result = await w.emu.run_command(
            w.guild, "briefing send-now", options={"id": briefing_id}, user=w.moderator
        )
        assert "posted" in embed_text(result.message) + " ".join(
            f.get("content", "") for f in result.followups
        )
        deliveries = await engine(bot).schedules.deliveries(briefing_id)
    (posted,) = w.emu.messages(w.briefings)
    assert "New partnership with Europol" in embed_text(posted)
    assert [d.state for d in deliveries] == ["sent"]
    assert deliveries[0].message_id == int(posted["id"])


async def test_another_servers_schedule_cannot_be_touched(w: World) -> None:
    async with running_bot(w):
        briefing_id = await schedule(w)
        for action in ("show", "pause", "cancel", "send-now", "preview"):
            result = await w.emu.run_command(
                w.other_guild, f"briefing {action}", options={"id": briefing_id}, user=w.moderator
            )
            assert result.ephemeral or result.followups
            text = embed_text(result.message) + " ".join(
                f.get("content", "") for f in result.followups
            )
            assert f"no briefing #{briefing_id} in this server" in text, action
    assert w.emu.messages(w.briefings) == []


async def test_restart_between_claim_and_send_gives_one_message(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        slot = "2099-01-01T09:00Z"  # claimed "just now" by a process that then died
        assert await engine(bot).schedules.claim(briefing_id, slot, late=False)
    async with running_bot(w) as bot:
        await w.emu.wait_for_messages(w.briefings, 1)
        delivery = await engine(bot).schedules.delivery(briefing_id, slot)
    assert delivery is not None
    assert delivery.state == "sent"
    assert len(w.emu.messages(w.briefings)) == 1


async def test_restart_after_send_before_record_gives_one_message(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        slot = "2099-01-01T09:00Z"
        the_engine = engine(bot)
        current = await the_engine.schedules.by_id(briefing_id)
        assert current is not None
        assert await the_engine.schedules.claim(briefing_id, slot, late=False)
        briefing = await the_engine.compose(current, slot)
        assert briefing is not None
        await the_engine.sender.post(
            w.briefings.id,
            briefing,
            nonce=nonce_for(briefing_id, slot),
            role_id=None,
            marker=marker_for(briefing_id, slot),
        )  # posted, then the process died before recording it
    async with running_bot(w) as bot:
        delivery = await engine(bot).schedules.delivery(briefing_id, slot)
    assert delivery is not None
    assert delivery.state == "sent"
    assert len(w.emu.messages(w.briefings)) == 1


async def test_403_pauses_with_one_notice_and_keeps_the_schedule(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        w.emu.fail_next(status=403, path_regex=rf"/channels/{w.briefings.id}/messages")
        current = await engine(bot).schedules.by_id(briefing_id)
        assert current is not None
        assert await engine(bot).deliver(current, "2099-01-01T09:00Z", late=False) == "paused"
        await engine(bot).fire(briefing_id)  # a paused briefing's firing posts nothing
        paused = await engine(bot).schedules.by_id(briefing_id)
        notices = await w.emu.wait_for_messages(w.general, 1)
    assert paused is not None
    assert paused.state == "paused"
    assert "Discord refused the post" in (paused.pause_reason or "")
    assert len(notices) == 1
    assert f"Briefing #{briefing_id}" in notices[0]["content"]
    assert w.emu.messages(w.briefings) == []


async def test_lost_permission_pauses_before_posting(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        w.emu.set_bot_channel_permissions(w.briefings, deny=SEND_MESSAGES)
        await asyncio.sleep(0.2)  # the CHANNEL_UPDATE reaches the bot
        current = await engine(bot).schedules.by_id(briefing_id)
        assert current is not None
        assert await engine(bot).deliver(current, "2099-01-01T09:00Z", late=False) == "paused"
        resumed = await w.emu.run_command(
            w.guild, "briefing resume", options={"id": briefing_id}, user=w.moderator
        )
    assert "missing Send Messages" in embed_text(resumed.message)  # resume re-checks
    assert len(w.emu.messages(w.general)) == 1


async def test_404_pauses(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        w.emu.fail_next(status=404, path_regex=rf"/channels/{w.briefings.id}/messages")
        current = await engine(bot).schedules.by_id(briefing_id)
        assert current is not None
        assert await engine(bot).deliver(current, "2099-01-01T09:00Z", late=False) == "paused"
        paused = await engine(bot).schedules.by_id(briefing_id)
    assert paused is not None
    assert paused.state == "paused"
    assert paused.pause_reason == "the channel no longer exists"


async def test_429_is_retried_and_delivered_once(w: World) -> None:
    async with running_bot(w) as bot:
        briefing_id = await schedule(w)
        w.emu.fail_next(
            status=429, path_regex=rf"/channels/{w.briefings.id}/messages", retry_after=0.3
        )
        current = await engine(bot).schedules.by_id(briefing_id)
        assert current is not None
        assert await engine(bot).deliver(current, "2099-01-01T09:00Z", late=False) == "sent"
    assert len(w.emu.messages(w.briefings)) == 1
    statuses = [r.status for r in w.emu.requests if r.path.endswith(f"{w.briefings.id}/messages")]
    assert statuses == [429, 200]


async def test_two_bots_on_one_database_post_each_slot_once(w: World, tmp_path: Path) -> None:
    async with running_bot(w) as first, running_bot(w) as second:
        briefing_id = await schedule(w)
        for day in range(1, 4):
            slot = f"2099-01-0{day}T09:00Z"  # what both firings at that slot would post
            current = await engine(first).schedules.by_id(briefing_id)
            assert current is not None
            await asyncio.gather(
                engine(first).deliver(current, slot, late=False),
                engine(second).deliver(current, slot, late=False),
            )
    assert len(w.emu.messages(w.briefings)) == 3


async def test_mentions_in_content_ping_nobody_but_the_chosen_role(w: World) -> None:
    role = w.emu.add_role(w.guild, "Briefed", mentionable=True)
    async with running_bot(w) as bot:
        assert bot.services is not None
        plain = await schedule(w, content="changes")
        pinged = await schedule(w, content="digest", role=role, time="10:00")
        await bot.services.store.set_status(
            "europol-partnership", "stalled", note="@everyone look <@&1> @here", changed_by="t"
        )
        for briefing_id in (plain, pinged):
            await w.emu.run_command(
                w.guild, "briefing send-now", options={"id": briefing_id}, user=w.moderator
            )
    first, second = w.emu.messages(w.briefings)
    assert "@everyone" in embed_text(first)
    assert w.emu.allowed_mentions(first) == {"parse": []}
    assert w.emu.allowed_mentions(second) == {"parse": [], "roles": [role.id]}
    assert f"<@&{role.id}>" in second["content"]


async def test_schedules_survive_a_restart(w: World, tmp_path: Path) -> None:
    async with running_bot(w):
        briefing_id = await schedule(w)
    async with running_bot(w, with_config(w)) as bot:
        assert engine(bot).planned_at(briefing_id) is not None


async def test_a_member_is_refused_even_where_the_server_shows_the_command(w: World) -> None:
    async with running_bot(w) as bot:
        for action, options in [
            ("schedule", {"channel": w.briefings, "time": "09:00"}),
            ("list", {}),
        ]:
            result = await w.emu.run_command(
                w.guild, f"briefing {action}", options=options, user=w.member, unchecked=True
            )
            assert result.ephemeral
            assert "Manage Server" in embed_text(result.message)
        assert await engine(bot).schedules.in_guild(w.guild.id) == []


async def test_the_moderator_role_may_manage_briefings(w: World) -> None:
    role = w.emu.add_role(w.guild, "Mods")
    helper = w.emu.add_user("helper")
    w.emu.add_member(w.guild, helper, roles=[role])
    async with running_bot(w):
        await w.emu.run_command(
            w.guild, "briefing moderator-role", options={"role": role}, user=w.moderator
        )
        result = await w.emu.run_command(w.guild, "briefing list", user=helper, unchecked=True)
    assert "No briefings yet" in embed_text(result.message)


async def test_a_channel_from_another_server_is_refused(w: World) -> None:
    async with running_bot(w) as bot:
        result = await w.emu.run_command(
            w.guild,
            "briefing schedule",
            options={"channel": w.other_guild.channels["briefings"], "time": "09:00"},
            user=w.moderator,
            unchecked=True,
        )
        assert await engine(bot).schedules.in_guild(w.guild.id) == []
    assert result.ephemeral
    assert "not in this server" in embed_text(result.message)


async def test_a_sharded_process_schedules_only_its_servers(w: World) -> None:
    from bot.client.runner import shard_options

    guilds = [w.guild, w.other_guild]
    while len({g.id >> 22 & 1 for g in guilds}) < 2:
        guilds.append(w.emu.add_guild(f"Extra {len(guilds)}", channels=("general", "briefings")))
    async with running_bot(w):
        ids = {}
        for guild in guilds:
            result = await w.emu.run_command(
                guild,
                "briefing schedule",
                options={"channel": guild.channels["briefings"], "time": "09:00"},
                user=w.moderator,
            )
            ids[guild.id] = int(embed_text(result.message).split("#", 1)[1].split(" ", 1)[0])
    async with running_bot(w, **shard_options(2, [0])) as sharded:
        for guild_id, briefing_id in ids.items():
            planned = engine(sharded).planned_at(briefing_id) is not None
            assert planned is ((guild_id >> 22) % 2 == 0)


async def test_an_unpingable_role_gets_a_warning(w: World) -> None:
    quiet = w.emu.add_role(w.guild, "Quiet", mentionable=False)
    loud = w.emu.add_role(w.guild, "Loud", mentionable=True)
    # a moderator who may ping any role on Discord; only the bot lacks the permission
    w.moderator = w.emu.add_user("pinger", manage_guild=True, permissions=MENTION_EVERYONE)
    async with running_bot(w):
        warned = await w.emu.run_command(
            w.guild,
            "briefing schedule",
            options={"channel": w.briefings, "time": "09:00", "role": quiet},
            user=w.moderator,
        )
        fine = await w.emu.run_command(
            w.guild,
            "briefing schedule",
            options={"channel": w.briefings, "time": "10:00", "role": loud},
            user=w.moderator,
        )
    assert "I can't ping" in embed_text(warned.message)
    assert "I can't ping" not in embed_text(fine.message)
