"""Who may moderate briefings, and moderators always get an answer: the real bot, the
emulator, real SQLite.

Covers: acknowledgement in time while the database is busy (the permission check and
/briefing preview included), who may change the moderator role and to what, role pings a
delegated moderator may not borrow from the bot, autocomplete for moderators only, and
/briefing list with more finished one-offs than one page holds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.briefings.schedules import Schedules
from bot.client.app import PledgeBot
from bot.local import GuildState, RoleState, UserState, interactions
from bot.local.interactions import InteractionResult
from bot.local.models import DEFAULT_BOT_PERMISSIONS, MANAGE_GUILD, MENTION_EVERYONE
from tests.e2e import World, embed_text, running_bot, world
from tests.test_robustness_database import exclusive_lock, private, visible

pytestmark = pytest.mark.e2e

DEFERRED = 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


@pytest.fixture
def shown_to_everyone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server lets every member see /briefing (Server Settings → Integrations can).

    The emulator's client refuses hidden commands, as Discord's does; with the override
    every member can type into /briefing's options, so only the bot's own check is left.
    """
    monkeypatch.setattr(interactions, "check_invocable", lambda *args: None)
    yield


def schedules(bot: PledgeBot) -> Schedules:
    assert bot.engine is not None
    return bot.engine.schedules


def briefing_id(result: InteractionResult) -> int:
    text = visible(result)
    assert "scheduled" in text, text
    return int(text.split("#", 1)[1].split(" ", 1)[0])


async def schedule(
    w: World, user: UserState, guild: GuildState | None = None, **options: Any
) -> InteractionResult:
    guild = guild or w.guild
    return await w.emu.run_command(
        guild,
        "briefing schedule",
        options={"channel": guild.channels["briefings"], "time": "09:00", **options},
        user=user,
        unchecked=True,
    )


async def moderator_role(w: World, role: RoleState | None, user: UserState) -> InteractionResult:
    options = {} if role is None else {"role": role}
    return await w.emu.run_command(
        w.guild, "briefing moderator-role", options=options, user=user, unchecked=True
    )


def delegate(w: World, guild: GuildState, name: str = "helper") -> tuple[RoleState, UserState]:
    """A member without Manage Server who holds the role that will be the moderator role."""
    role = w.emu.add_role(guild, f"Mods {name}")
    helper = w.emu.add_user(name)
    w.emu.add_member(guild, helper, roles=[role])
    return role, helper


# -- 12: every interaction is acknowledged in time, whatever the database is doing ----------


async def test_a_busy_database_still_gets_list_and_preview_acknowledged_in_time(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    role, helper = delegate(w, w.guild)
    async with running_bot(w) as bot:
        await moderator_role(w, role, w.moderator)
        first = briefing_id(await schedule(w, w.moderator))
        assert bot.services is not None
        store = bot.services.store
        read = store.rows

        async def slow_disk(*args: Any) -> Any:  # every read takes 2 s, the check's too
            await asyncio.sleep(2)
            return await read(*args)

        monkeypatch.setattr(store, "rows", slow_disk)
        listed, previewed = await asyncio.gather(
            w.emu.run_command(w.guild, "briefing list", user=helper, unchecked=True, timeout=15),
            w.emu.run_command(
                w.guild, "briefing preview", options={"id": first}, user=w.moderator, timeout=15
            ),
        )
        monkeypatch.setattr(store, "rows", read)
        with exclusive_lock(w.config.database_path):  # another process holds the write lock
            changed = await w.emu.run_command(
                w.guild,
                "briefing timezone",
                options={"tz": "Europe/London"},
                user=helper,
                unchecked=True,
                timeout=15,
            )
    for result in (listed, previewed, changed):
        assert result.callback_type == DEFERRED, result  # the database really was slow
        assert result.latency is not None and result.latency < 3, result.latency
        assert private(result)
    assert f"Briefing #{first}" in visible(listed)
    assert "Pledge digest" in visible(previewed)
    assert visible(changed)  # answered after the wait, whatever the outcome
    assert w.emu.violations == []


# -- 13a: only Manage Server chooses the moderator role, and never @everyone or a bot's -----


async def test_the_moderator_role_is_changed_only_with_manage_server(w: World) -> None:
    role, helper = delegate(w, w.guild)
    other = w.emu.add_role(w.guild, "Friends")
    async with running_bot(w) as bot:
        await moderator_role(w, role, w.moderator)
        for attempt in (other, w.guild.roles["@everyone"], None):
            refused = await moderator_role(w, attempt, helper)
            assert private(refused)
            assert "Only members with Manage Server" in visible(refused), attempt
        settings = await schedules(bot).settings(w.guild.id)
    assert settings.moderator_role_id == role.id


async def test_everyone_and_bot_roles_cannot_be_the_moderator_role(w: World) -> None:
    bot_role = w.guild.roles[w.emu.bot_user.username]
    async with running_bot(w) as bot:
        everyone = await moderator_role(w, w.guild.roles["@everyone"], w.moderator)
        managed = await moderator_role(w, bot_role, w.moderator)
        member_list = await w.emu.run_command(
            w.guild, "briefing list", user=w.member, unchecked=True
        )
        settings = await schedules(bot).settings(w.guild.id)
    assert private(everyone) and private(managed)
    assert "@everyone can't be the moderator role" in visible(everyone)
    assert "belongs to a bot or an integration" in visible(managed)
    assert settings.moderator_role_id is None
    assert "Manage Server" in visible(member_list)  # members are still refused


async def test_an_everyone_moderator_role_stored_earlier_grants_nothing(w: World) -> None:
    async with running_bot(w) as bot:
        settings = await schedules(bot).settings(w.guild.id)
        await schedules(bot).save_settings(replace(settings, moderator_role_id=w.guild.id))
        refused = await w.emu.run_command(w.guild, "briefing list", user=w.member, unchecked=True)
    assert "Manage Server" in visible(refused)


# -- 13b: a delegated moderator cannot borrow the bot's Mention Everyone --------------------


async def test_a_delegated_moderator_cannot_ping_an_unmentionable_role_through_the_bot(
    w: World,
) -> None:
    loud = w.emu.add_guild(
        "Loud", ("general", "briefings"), bot_permissions=DEFAULT_BOT_PERMISSIONS | MENTION_EVERYONE
    )
    announcer = w.emu.add_user("announcer", permissions=MANAGE_GUILD | MENTION_EVERYONE)
    role, helper = delegate(w, loud)
    quiet = w.emu.add_role(loud, "Quiet", mentionable=False)
    open_role = w.emu.add_role(loud, "Open", mentionable=True)
    async with running_bot(w) as bot:
        await w.emu.run_command(
            loud, "briefing moderator-role", options={"role": role}, user=w.moderator
        )
        refused = await schedule(w, helper, loud, role=quiet)
        plain = briefing_id(await schedule(w, helper, loud, role=open_role))
        edit_refused = await w.emu.run_command(
            loud,
            "briefing edit",
            options={"id": plain, "role": quiet},
            user=helper,
            unchecked=True,
        )
        allowed = await schedule(w, announcer, loud, role=quiet, time="10:00")
        stored = await schedules(bot).in_guild(loud.id)
    for result in (refused, edit_refused):
        assert private(result)
        assert "You can't have me ping" in visible(result)
        assert "Mention @everyone" in visible(result)
    assert "I can't ping" not in visible(allowed)  # the bot may ping it: no warning
    assert [(s.id, s.role_id) for s in stored] == [
        (plain, open_role.id),
        (briefing_id(allowed), quiet.id),
    ]


async def test_the_bot_lacking_mention_everyone_still_warns_a_member_who_has_it(
    w: World,
) -> None:
    announcer = w.emu.add_user("announcer", permissions=MANAGE_GUILD | MENTION_EVERYONE)
    quiet = w.emu.add_role(w.guild, "Quiet", mentionable=False)
    async with running_bot(w):
        warned = await schedule(w, announcer, role=quiet)
    briefing_id(warned)  # scheduled
    assert "I can't ping" in visible(warned)


# -- 14: autocomplete answers moderators only ----------------------------------------------


AUTOCOMPLETED = [
    ("briefing edit", "id", ""),
    ("briefing show", "id", ""),
    ("briefing schedule", "timezone", "Europe/Lon"),
    ("briefing schedule", "content", "dig"),
    ("briefing timezone", "tz", "Europe/Lon"),
]


async def autocomplete_all(w: World, user: UserState) -> dict[str, list[Any]]:
    found = {}
    for command, option, typed in AUTOCOMPLETED:
        options: dict[str, Any] = {}
        if command == "briefing schedule":
            options["channel"] = w.briefings
        choices = await w.emu.autocomplete(
            w.guild, command, focused=option, value=typed, user=user, options=options
        )
        found[f"{command} {option}"] = [c["value"] for c in choices]
    return found


async def test_briefing_autocomplete_is_empty_for_members_and_full_for_moderators(
    w: World, shown_to_everyone: None
) -> None:
    role, helper = delegate(w, w.guild)
    async with running_bot(w):
        await moderator_role(w, role, w.moderator)
        first = briefing_id(await schedule(w, w.moderator))
        for_member = await autocomplete_all(w, w.member)
        for_moderator = await autocomplete_all(w, w.moderator)
        for_helper = await autocomplete_all(w, helper)
    assert for_member == {name: [] for name in for_moderator}
    assert for_moderator == for_helper
    assert for_moderator["briefing edit id"] == [first]
    assert "Europe/London" in for_moderator["briefing schedule timezone"]
    assert "digest" in for_moderator["briefing schedule content"]


# -- 15: /briefing list pages everything, briefings that still post first -------------------


async def add_finished_one_offs(w: World, bot: PledgeBot, count: int) -> list[int]:
    ids = []
    for day in range(count):
        created = await schedules(bot).create(
            guild_id=w.guild.id,
            created_by=w.moderator.id,
            limit=5,
            fields={
                "channel_id": w.briefings.id,
                "timezone": "UTC",
                "time_of_day": "09:00",
                "run_date": f"2099-01-{day % 28 + 1:02d}",
                "content": "digest",
            },
        )
        await schedules(bot).update(
            w.guild.id, created.id, {"state": "finished"}, by=0, action="finished"
        )
        ids.append(created.id)
    return ids


def listed_ids(message: dict[str, Any] | None) -> list[int]:
    return [int(n) for n in re.findall(r"Briefing #(\d+)", embed_text(message))]


async def test_list_shows_active_briefings_first_beyond_fifty_finished_one_offs(
    w: World,
) -> None:
    async with running_bot(w) as bot:
        finished = await add_finished_one_offs(w, bot, 55)
        paused = briefing_id(await schedule(w, w.moderator, time="08:00"))
        await w.emu.run_command(w.guild, "briefing pause", options={"id": paused}, user=w.moderator)
        active = briefing_id(await schedule(w, w.moderator))
        shown = await w.emu.run_command(w.guild, "briefing list", user=w.moderator)
        pages = [listed_ids(shown.message)]
        message = shown.message
        while not next_button(message).get("disabled"):
            assert message is not None
            turned = await w.emu.click_button(message, label="Next ▶", user=w.moderator)
            message = turned.message
            pages.append(listed_ids(message))
        offered = await w.emu.autocomplete(
            w.guild, "briefing show", focused="id", value="", user=w.moderator
        )
    assert pages[0][:2] == [active, paused]
    assert [i for page in pages for i in page] == [active, paused, *finished]
    assert len(pages) > 1
    assert [c["value"] for c in offered] == [paused, active]  # no finished one-offs


def next_button(message: dict[str, Any] | None) -> dict[str, Any]:
    assert message is not None
    buttons = [c for row in message["components"] for c in row["components"]]
    return next(b for b in buttons if b.get("label") == "Next ▶")
