"""`pledgebot doctor` against the emulator: every check passing, then each failing on
purpose, and never a write (no POST/PUT/PATCH/DELETE, the SQLite file untouched).

The database checks run on both backends; the Discord checks on SQLite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.briefings.schedules import GuildSettings, Schedules
from bot.client import doctor
from bot.client.doctor import Check, command_differences, exit_code
from bot.client.endpoints import apply_endpoints
from bot.client.runner import make_bot
from bot.config import Config
from bot.follows.follows import Follows
from bot.local import ChannelState, GuildState, RoleState
from bot.local.models import (
    ATTACH_FILES,
    EMBED_LINKS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
)
from bot.storage.schema import SCHEMA_VERSION
from bot.store import Store
from tests.conftest import REPO
from tests.e2e import World, world

pytestmark = pytest.mark.e2e


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    """The emulator (Demo: #general, #briefings; Elsewhere), the token in the config."""
    async with world(tmp_path) as value:
        value.config = dataclasses.replace(value.config, token=value.emu.token)
        yield value


async def prepare(config: Config, *, sync: bool = True, guild_id: int | None = None) -> None:
    """What `pledgebot sync` does (and a first start): the database made, the content
    loaded, the commands registered (unless `sync=False`)."""
    bot = make_bot(
        config, sync_mode="force" if sync else "off", sync_guild_id=guild_id, run_engine=False
    )
    async with bot:
        await bot.login(config.token or "")


async def add_briefing(
    config: Config, guild: GuildState, channel: ChannelState, content: str = "digest", **more: Any
) -> int:
    store = await Store.open(config.database)
    try:
        created = await Schedules(store).create(
            guild_id=guild.id,
            created_by=1,
            limit=25,
            fields={
                "channel_id": channel.id,
                "timezone": "UTC",
                "time_of_day": "09:00",
                "days": "daily",
                "content": content,
                **more,
            },
        )
    finally:
        await store.close()
    return created.id


async def set_alerts(
    config: Config, guild: GuildState, channel: ChannelState, role: RoleState
) -> None:
    store = await Store.open(config.database)
    try:
        await Follows(store.db).set_alert_channel(
            guild.id, channel.id, role_id=role.id, statement_slug=None, by=1
        )
    finally:
        await store.close()


async def set_moderator_role(config: Config, guild: GuildState, role: RoleState) -> None:
    store = await Store.open(config.database)
    try:
        await Schedules(store).save_settings(GuildSettings(guild.id, None, role.id))
    finally:
        await store.close()


def sqlite_files(config: Config, *, shm: bool = True) -> dict[str, tuple[str, int]] | None:
    """Each of the database's files (with -wal, -shm, .lock): its hash and mtime. A reader
    may mark where it reads in the -shm (shared memory) of a file in use: `shm=False`."""
    if config.database_url is None:
        path = config.database_path
        return {
            p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(path.parent.glob(f"{path.name}*"))
            if shm or not p.name.endswith("-shm")
        }
    return None


async def diagnose(
    w: World, config: Config | None = None, guild_id: int | None = None, *, shm: bool = True
) -> list[Check]:
    """Run every check in process, and make sure it changed nothing."""
    config = config or w.config
    seen = len(w.emu.requests)
    before = sqlite_files(config, shm=shm)
    checks = await doctor.examine(config, guild_id)
    assert {r.method for r in w.emu.requests[seen:]} <= {"GET"}
    assert sqlite_files(config, shm=shm) == before
    return checks


def row(checks: Sequence[Check], name: str) -> Check:
    found = [c for c in checks if c.name == name]
    assert len(found) == 1, f"{name!r} not in {checks}"
    return found[0]


def only_failure(checks: Sequence[Check]) -> Check:
    problems = [c for c in checks if c.verdict != "ok"]
    assert len(problems) == 1, problems
    return problems[0]


# -- everything in order -------------------------------------------------------------------


async def test_every_check_passes_after_sync(w: World, store_location: Path | str) -> None:
    if isinstance(store_location, str):
        w.config = dataclasses.replace(w.config, database_url=store_location)
    await prepare(w.config)
    thread = w.emu.add_thread(w.general, "pledge-news")
    watchers = w.emu.add_role(w.guild, "Watchers", mentionable=True)
    mods = w.emu.add_role(w.guild, "Mods")
    await add_briefing(w.config, w.guild, w.briefings, "digest", role_id=watchers.id)
    await add_briefing(w.config, w.guild, thread, "spotlight")
    await add_briefing(w.config, w.other_guild, w.other_guild.channels["general"], "changes")
    await set_alerts(w.config, w.guild, w.general, watchers)
    await set_moderator_role(w.config, w.guild, mods)

    checks = await diagnose(w)

    assert [c.name for c in checks] == [
        "token",
        "commands",
        "database",
        "content",
        "channels",
        "roles",
    ]
    assert all(c.verdict == "ok" for c in checks), checks
    assert exit_code(checks) == 0
    assert f"application pledgebot (id {w.emu.application_id})" in row(checks, "token").detail
    assert "/pledge" in row(checks, "commands").detail
    assert f"schema version {SCHEMA_VERSION}" in row(checks, "database").detail
    channels = row(checks, "channels").detail
    assert "#briefings (Demo)" in channels and "#pledge-news (Demo)" in channels
    assert "#general (Elsewhere)" in channels and "#general (Demo)" in channels
    assert "@Watchers (Demo)" in row(checks, "roles").detail
    assert "@Mods (Demo)" in row(checks, "roles").detail


async def test_the_command_prints_one_table_and_exits_by_its_verdicts(w: World) -> None:
    await prepare(w.config)
    config = w.config.database_path.parent / "doctor.toml"
    config.write_text(
        f'[database]\npath = "{w.config.database_path}"\n[content]\n'
        f'directory = "{w.config.content_dir}"\n[discord]\napi_base_url = "{w.emu.base_url}"\n'
        f'gateway_url = "{w.emu.gateway_url}"\n',
        "utf-8",
    )
    code, out, err = await run_doctor(config, w.emu.token)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].split() == ["check", "verdict", "detail"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["token", "ok"],
        ["commands", "ok"],
        ["database", "ok"],
        ["content", "ok"],
        ["channels", "ok"],
        ["roles", "ok"],
    ]
    # aligned: every detail starts in the same column
    assert len({line.index(line.split()[2]) for line in lines}) == 1
    assert w.emu.identify_count == 0  # HTTP only: no gateway session

    code, out, err = await run_doctor(config, "not-the-token")
    assert code == 78, out + err  # EX_CONFIG, as `run`, `sync` and `invite` exit
    assert "Traceback" not in err
    assert "token     fail" in out and "Discord refused the token" in out


async def run_doctor(config: Path, token: str) -> tuple[int, str, str]:
    env = {**os.environ, "PLEDGEBOT_CONFIG": str(config), "DISCORD_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "doctor",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- the token -----------------------------------------------------------------------------


async def test_a_refused_token_fails_with_invites_exit_code(w: World) -> None:
    await prepare(w.config)
    checks = await diagnose(w, dataclasses.replace(w.config, token="not-the-token"))
    assert row(checks, "token").verdict == "fail"
    assert "Discord refused the token" in row(checks, "token").detail
    assert [row(checks, n).verdict for n in ("commands", "channels", "roles")] == ["skip"] * 3
    assert row(checks, "database").verdict == "ok"  # what needs no Discord is still checked
    assert exit_code(checks) == 78


async def test_no_token_fails(w: World) -> None:
    await prepare(w.config)
    checks = await diagnose(w, dataclasses.replace(w.config, token=None))
    assert row(checks, "token").verdict == "fail"
    assert "DISCORD_TOKEN is not set" in row(checks, "token").detail
    assert exit_code(checks) == 1


async def test_discord_out_of_reach_exits_69(w: World) -> None:
    await prepare(w.config)
    closed = dataclasses.replace(w.config, api_base_url="http://127.0.0.1:1/api/v10")
    try:
        checks = await doctor.examine(closed)
    finally:
        apply_endpoints(w.config.api_base_url, w.config.gateway_url)
    assert "cannot reach Discord at http://127.0.0.1:1/api/v10" in row(checks, "token").detail
    assert exit_code(checks) == 69


# -- the commands --------------------------------------------------------------------------


async def test_commands_never_synced_fail(w: World) -> None:
    await prepare(w.config, sync=False)
    checks = await diagnose(w)
    commands = only_failure(checks)
    assert commands.name == "commands" and commands.verdict == "fail"
    assert "/pledge missing" in commands.detail and "run `pledgebot sync`" in commands.detail
    assert exit_code(checks) == 1


async def test_stale_commands_fail(w: World) -> None:
    await prepare(w.config)
    old = [dict(c) for c in w.emu.commands() if c["name"] != "follow"]
    old[0]["options"][0]["description"] = "What an older pledgebot said"
    old.append({"name": "retired", "description": "A command this bot no longer has", "type": 1})
    url = f"{w.emu.base_url}/applications/{w.emu.application_id}/commands"
    headers = {"Authorization": f"Bot {w.emu.token}"}
    async with aiohttp.ClientSession() as session, session.put(url, json=old, headers=headers):
        pass

    commands = only_failure(await diagnose(w))
    assert commands.name == "commands" and commands.verdict == "fail"
    first = old[0]["name"]
    assert f"/{first} changed" in commands.detail
    assert "/follow missing" in commands.detail
    assert "/retired not the bot's" in commands.detail


async def test_commands_synced_to_one_server_are_checked_there(w: World) -> None:
    await prepare(w.config, guild_id=w.guild.id)
    checks = await diagnose(w, guild_id=w.guild.id)
    assert row(checks, "commands").verdict == "ok"
    assert f"the bot's commands in server {w.guild.id}:" in row(checks, "commands").detail

    globally = row(await diagnose(w), "commands")  # nothing was synced everywhere
    assert globally.verdict == "fail" and "/pledge missing" in globally.detail

    elsewhere = row(await diagnose(w, guild_id=w.other_guild.id), "commands")
    assert elsewhere.verdict == "fail"
    assert f"run `pledgebot sync --guild {w.other_guild.id}`" in elsewhere.detail


def test_commands_compare_on_what_the_bot_sends_not_what_discord_adds() -> None:
    sent = [
        {
            "name": "pledge",
            "description": "Pledges",
            "type": 1,
            "options": [
                {
                    "name": "show",
                    "description": "One pledge",
                    "type": 1,
                    "options": [
                        {"type": 3, "name": "pledge", "description": "Name", "required": True},
                        {
                            "type": 5,
                            "name": "private",
                            "description": "Only you",
                            "required": False,
                        },
                    ],
                }
            ],
            "nsfw": False,
            "dm_permission": True,
            "default_member_permissions": 32,
            "contexts": None,
            "integration_types": None,
        }
    ]
    # As Discord echoes it: ids and a version, the bitfield as a string, `required: false`
    # and empty lists left out, its own defaults for what the bot left unset.
    echoed = [
        {
            "id": "1",
            "application_id": "2",
            "version": "3",
            "type": 1,
            "name": "pledge",
            "name_localizations": None,
            "description": "Pledges",
            "description_localizations": None,
            "default_member_permissions": "32",
            "dm_permission": True,
            "contexts": [0, 1, 2],
            "integration_types": [0],
            "nsfw": False,
            "options": [
                {
                    "type": 1,
                    "name": "show",
                    "description": "One pledge",
                    "options": [
                        {"type": 3, "name": "pledge", "description": "Name", "required": True},
                        {"type": 5, "name": "private", "description": "Only you"},
                    ],
                }
            ],
        }
    ]
    assert command_differences(sent, echoed) == []
    with_contexts = [{**sent[0], "contexts": [0], "dm_permission": False}]
    assert command_differences(with_contexts, [{**echoed[0], "contexts": [0]}]) == []
    assert command_differences(with_contexts, echoed) == ["/pledge changed"]
    unprivileged = [{**echoed[0], "default_member_permissions": None}]
    assert command_differences(sent, unprivileged) == ["/pledge changed"]
    optional = dict(echoed[0])
    optional["options"] = [
        {**echoed[0]["options"][0], "options": echoed[0]["options"][0]["options"][:1]}
    ]
    assert command_differences(sent, [optional]) == ["/pledge changed"]


# -- the database and content --------------------------------------------------------------


async def test_a_missing_database_fails_and_is_not_created(w: World) -> None:
    checks = await diagnose(w)
    database = row(checks, "database")
    assert database.verdict == "fail"
    assert "there is no database file" in database.detail
    assert "`pledgebot db init`" in database.detail
    assert [row(checks, n).verdict for n in ("content", "channels", "roles")] == ["skip"] * 3
    assert not w.config.database_path.exists()
    assert list(w.config.database_path.parent.glob("pledgebot.db*")) == []
    assert exit_code(checks) == 1


async def test_a_database_in_use_is_read_through_its_wal(w: World) -> None:
    """While a bot has the file open, what it wrote may still be in the `-wal` file."""
    await prepare(w.config)
    holder = await Store.open(w.config.database)  # as a running bot holds it
    try:
        await add_briefing(w.config, w.guild, w.briefings)
        assert w.config.database_path.with_name("pledgebot.db-wal").exists()
        checks = await diagnose(w, shm=False)
    finally:
        await holder.close()
    assert all(c.verdict == "ok" for c in checks), checks
    assert "#briefings (Demo)" in row(checks, "channels").detail


async def test_a_database_without_content_fails(w: World) -> None:
    store = await Store.open(w.config.database)  # `pledgebot db init`, no `db load`
    await store.close()
    empty = row(await diagnose(w), "content")
    assert empty.verdict == "fail" and "run `pledgebot db load`" in empty.detail


async def test_a_database_behind_the_schema_fails(w: World, store_location: Path | str) -> None:
    if isinstance(store_location, str):
        w.config = dataclasses.replace(w.config, database_url=store_location)
    await prepare(w.config)
    await set_schema_version(w.config, SCHEMA_VERSION - 1)
    checks = await diagnose(w)
    database = row(checks, "database")
    assert database.verdict == "fail"
    assert f"schema version {SCHEMA_VERSION - 1}" in database.detail
    assert "run `pledgebot db init`" in database.detail
    assert row(checks, "content").verdict == "skip"
    assert exit_code(checks) == 1
    assert await schema_version(w.config) == SCHEMA_VERSION - 1  # not migrated

    await set_schema_version(w.config, SCHEMA_VERSION + 1)
    database = row(await diagnose(w), "database")
    assert database.verdict == "fail" and "upgrade pledgebot" in database.detail


async def set_schema_version(config: Config, version: int) -> None:
    if config.database_url is None:
        with sqlite3.connect(config.database_path) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        conn.close()
        return
    conn = await asyncpg.connect(config.database_url)
    try:
        await conn.execute("DELETE FROM schema_version WHERE version > $1", version)
        for missing in range(
            await conn.fetchval("SELECT max(version) FROM schema_version"), version
        ):
            await conn.execute("INSERT INTO schema_version(version) VALUES ($1)", missing + 1)
    finally:
        await conn.close()


async def schema_version(config: Config) -> int:
    store = await Store.open_as_is(config.database)
    try:
        return await store.schema_version()
    finally:
        await store.close()


async def test_content_changed_on_disk_fails(
    w: World, store_location: Path | str, content_dir: Path
) -> None:
    w.config = dataclasses.replace(w.config, content_dir=content_dir)
    if isinstance(store_location, str):
        w.config = dataclasses.replace(w.config, database_url=store_location)
    await prepare(w.config)
    assert row(await diagnose(w), "content").verdict == "ok"

    content = content_dir / "smuggling-gangs.toml"
    content.write_text(content.read_text("utf-8").replace("Labour", "Labour Party", 1), "utf-8")
    changed = only_failure(await diagnose(w))
    assert changed.name == "content" and changed.verdict == "fail"
    assert "run `pledgebot db load`" in changed.detail

    content.write_text("this is not TOML", "utf-8")
    broken = only_failure(await diagnose(w))
    assert broken.name == "content" and broken.verdict == "fail"
    assert content.name in broken.detail


# -- channels ------------------------------------------------------------------------------


async def test_a_deleted_briefing_channel_fails(w: World) -> None:
    await prepare(w.config)
    channel = w.briefings
    briefing = await add_briefing(w.config, w.guild, channel)
    w.emu.delete_channel(channel)
    checks = await diagnose(w)
    gone = only_failure(checks)
    assert gone.name == f"channel {channel.id} (Demo)" and gone.verdict == "fail"
    assert "no longer exists" in gone.detail
    assert f"`/briefing edit id:{briefing} channel:`" in gone.detail
    assert exit_code(checks) == 1


async def test_a_channel_the_bot_cannot_see_fails(w: World) -> None:
    await prepare(w.config)
    await add_briefing(w.config, w.guild, w.briefings)
    w.emu.set_bot_channel_permissions(w.briefings, deny=VIEW_CHANNEL)
    hidden = only_failure(await diagnose(w))
    assert hidden.name == f"channel {w.briefings.id} (Demo)"
    assert "cannot see it" in hidden.detail and "View Channels" in hidden.detail


async def test_send_messages_denied_by_an_overwrite_fails(w: World) -> None:
    await prepare(w.config)
    await add_briefing(w.config, w.guild, w.briefings, "spotlight")
    await add_briefing(w.config, w.guild, w.general, "spotlight")
    # A read-only channel: @everyone may not send, which the bot's role does not override.
    w.emu.set_role_channel_permissions(w.briefings, w.guild.everyone, deny=SEND_MESSAGES)
    checks = await diagnose(w)
    refused = only_failure(checks)
    assert refused.name == "#briefings (Demo)" and refused.verdict == "fail"
    assert "missing Send Messages" in refused.detail
    assert "#general (Demo)" in row(checks, "channels").detail  # the other one is fine
    assert exit_code(checks) == 1


async def test_missing_embed_links_fails(w: World) -> None:
    await prepare(w.config)
    await add_briefing(w.config, w.guild, w.briefings, "changes")
    w.emu.set_bot_channel_permissions(w.briefings, deny=EMBED_LINKS)
    refused = only_failure(await diagnose(w))
    assert refused.name == "#briefings (Demo)" and refused.verdict == "fail"
    assert "missing Embed Links there (briefing #1)" in refused.detail


async def test_a_thread_briefing_without_send_messages_in_threads_fails(w: World) -> None:
    await prepare(w.config)
    thread = w.emu.add_thread(w.general, "pledge-news")
    await add_briefing(w.config, w.guild, thread, "spotlight")
    await add_briefing(w.config, w.guild, w.general, "spotlight")  # the channel itself is fine
    w.emu.set_bot_channel_permissions(w.general, deny=SEND_MESSAGES_IN_THREADS)
    checks = await diagnose(w)
    refused = only_failure(checks)
    assert refused.name == "#pledge-news (Demo)" and refused.verdict == "fail"
    assert "missing Send Messages in Threads" in refused.detail
    assert "#general (Demo)" in row(checks, "channels").detail


async def test_a_locked_thread_fails(w: World) -> None:
    await prepare(w.config)
    thread = w.emu.add_thread(w.general, "pledge-news")
    await add_briefing(w.config, w.guild, thread, "spotlight")
    w.emu.lock_thread(thread)
    locked = only_failure(await diagnose(w))
    assert locked.name == "#pledge-news (Demo)" and "locked" in locked.detail


async def test_a_digest_without_attach_files_fails(w: World) -> None:
    await prepare(w.config)
    await add_briefing(w.config, w.guild, w.briefings, "digest")
    await add_briefing(w.config, w.guild, w.general, "spotlight")  # no chart: no files
    for channel in (w.briefings, w.general):
        w.emu.set_bot_channel_permissions(channel, deny=ATTACH_FILES)
    checks = await diagnose(w)
    refused = only_failure(checks)
    assert refused.name == "#briefings (Demo)" and refused.verdict == "fail"
    assert "missing Attach Files" in refused.detail
    assert "#general (Demo)" in row(checks, "channels").detail


async def test_missing_read_message_history_is_a_warning(w: World) -> None:
    await prepare(w.config)
    await add_briefing(w.config, w.guild, w.briefings, "spotlight")
    w.emu.set_bot_channel_permissions(w.briefings, deny=READ_MESSAGE_HISTORY)
    checks = await diagnose(w)
    warned = only_failure(checks)
    assert warned.name == "#briefings (Demo)" and warned.verdict == "warn"
    assert "Read Message History" in warned.detail
    assert exit_code(checks) == 0  # warnings alone


async def test_a_server_the_bot_left_fails(w: World) -> None:
    await prepare(w.config)
    gone = GuildState(w.other_guild.id + 1000, "Gone", w.guild.owner_id)
    gone.channels["general"] = ChannelState(gone.id + 1, gone, "general", 0)
    await add_briefing(w.config, gone, gone.channels["general"])
    left = only_failure(await diagnose(w))
    assert left.name == f"server {gone.id}" and left.verdict == "fail"
    assert "pledgebot is not in this server" in left.detail and "briefing #1" in left.detail


# -- roles ---------------------------------------------------------------------------------


async def test_a_deleted_moderator_role_fails(w: World) -> None:
    await prepare(w.config)
    mods = w.emu.add_role(w.guild, "Mods")
    await set_moderator_role(w.config, w.guild, mods)
    assert row(await diagnose(w), "roles").verdict == "ok"
    w.emu.delete_role(w.guild, mods)
    checks = await diagnose(w)
    gone = only_failure(checks)
    assert gone.name == f"role {mods.id} (Demo)" and gone.verdict == "fail"
    assert "the moderator role no longer exists" in gone.detail
    assert "`/briefing moderator-role`" in gone.detail
    assert exit_code(checks) == 1


async def test_deleted_ping_roles_fail(w: World) -> None:
    await prepare(w.config)
    watchers = w.emu.add_role(w.guild, "Watchers", mentionable=True)
    briefing = await add_briefing(w.config, w.guild, w.briefings, role_id=watchers.id)
    await set_alerts(w.config, w.guild, w.general, watchers)
    w.emu.delete_role(w.guild, watchers)
    checks = await diagnose(w)
    gone = [c.detail for c in checks if c.name == f"role {watchers.id} (Demo)"]
    assert len(gone) == 2 and all(
        c.verdict == "ok" for c in checks if c.name != f"role {watchers.id} (Demo)"
    )
    assert any(f"`/briefing edit id:{briefing} role:`" in detail for detail in gone)
    assert any("the alerts' ping" in detail for detail in gone)
