"""`pledgebot db backup` and `db restore`: safe while the bot runs, and a restore round trip.

The CLI runs as a subprocess (`python -m bot db ...`), the bot in-process against the
emulator, so the backup really reads the database while another process writes it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from bot.briefings.engine import BriefingEngine
from bot.client.app import PledgeBot
from bot.client.runner import make_bot
from bot.config import Config
from bot.storage.files import lock_path
from bot.storage.schema import SCHEMA_VERSION
from tests.e2e import World, running_bot, with_config, world
from tests.test_robustness_support import (
    assert_one_line_error,
    integrity,
    rows,
    run_cli,
    snapshot,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

SERVERS = 200
RATE = 40.0  # the emulator's global limit and the bot's pacing: ~5 s for the fan-out
SLOT = "2099-01-01T09:00Z"  # `deliver` takes any slot: no waiting for a real minute


def engine_of(bot: PledgeBot) -> BriefingEngine:
    assert bot.engine is not None
    return bot.engine


def delivered(database: Path) -> set[tuple[int, str, str]]:
    """(schedule, slot, state) of every finished delivery, read by another connection."""
    found = rows(database, "SELECT schedule_id, slot, state FROM deliveries WHERE state = 'sent'")
    return {(r[0], r[1], r[2]) for r in found}


async def test_a_backup_during_a_200_server_fan_out_holds_every_earlier_delivery(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, rate_limit_per_second=RATE) as w:
        channels = [
            w.emu.add_guild(f"Server {i}", channels=("briefings",)).channels["briefings"]
            for i in range(SERVERS)
        ]
        config = with_config(w, global_rate_limit=RATE)
        cli_config = write_config(
            tmp_path / "cli.toml", database=config.database_path, emulator=w.emu
        )
        async with running_bot(w, config) as bot:
            engine = engine_of(bot)
            schedules = [
                await engine.schedules.create(
                    guild_id=c.guild.id,
                    created_by=w.moderator.id,
                    limit=10,
                    fields={"channel_id": c.id, "timezone": "UTC", "time_of_day": "09:00"}
                    | {"content": "digest"},
                )
                for c in channels
            ]
            fan_out = asyncio.gather(*(engine.deliver(s, SLOT, late=False) for s in schedules))
            database = config.database_path
            await wait_for(lambda: len(delivered(database)) >= 40, 30, "the fan-out to begin")
            before = delivered(database)
            copy = tmp_path / "backups" / "during-fan-out.db"
            done = await asyncio.to_thread(run_cli, "db", "backup", str(copy), config=cli_config)
            posted_when_copied = len(delivered(database))
            outcomes = await fan_out
        assert done.returncode == 0, done.stderr
        assert "integrity_check ok" in done.stdout
        assert outcomes == ["sent"] * SERVERS
        assert posted_when_copied < SERVERS, "the backup finished after the fan-out: no overlap"
        assert integrity(copy) == "ok"
        in_copy = {
            (r[0], r[1], r[2])
            for r in rows(copy, "SELECT schedule_id, slot, state FROM deliveries")
        }
        assert before <= in_copy  # every delivery recorded before the backup began
        assert rows(copy, "PRAGMA journal_mode") == [("delete",)]  # one file, no -wal
        assert not copy.with_name(copy.name + "-wal").exists()
        assert list(copy.parent.glob(".*partial")) == []  # the temporary name is gone
        assert rows(copy, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert w.emu.violations == []


def replaced_files(directory: Path) -> list[Path]:
    """Databases a restore set aside."""
    return sorted(directory.glob("*.replaced-*"))


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


async def cli(*args: str, config: Path):  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(run_cli, *args, config=config)


async def test_restore_round_trip_keeps_the_replaced_file(w: World, tmp_path: Path) -> None:
    database = w.config.database_path
    config = write_config(tmp_path / "cli.toml", database=database, emulator=w.emu)
    backup = tmp_path / "nightly.db"
    async with running_bot(w) as bot:
        await engine_of(bot).schedules.create(
            guild_id=w.guild.id,
            created_by=w.moderator.id,
            limit=10,
            fields={"channel_id": w.briefings.id, "timezone": "UTC", "time_of_day": "09:00"}
            | {"content": "digest"},
        )
        made = await cli("db", "backup", str(backup), config=config)
        assert made.returncode == 0, made.stderr
        refused = await cli("db", "restore", str(backup), config=config)
        assert not bot.is_closed()
    assert_one_line_error(refused, "refusing to restore", str(database))
    saved = snapshot(backup)

    changed = await cli(
        "status",
        "set",
        "europol-partnership",
        "stalled",
        "--note",
        "after the backup",
        "--evidence",
        "https://example.org/news",
        config=config,
    )
    assert changed.returncode == 0, changed.stderr
    current = snapshot(database)
    assert current != saved

    restored = await cli("db", "restore", str(backup), config=config)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(database) == saved
    assert integrity(database) == "ok"
    (kept,) = replaced_files(tmp_path)
    assert f"kept as {kept}" in restored.stdout
    assert snapshot(kept) == current  # the replaced file, its WAL folded in
    assert integrity(kept) == "ok"
    assert not database.with_name(database.name + "-wal").exists()  # no stale WAL replayed
    assert lock_path(database).exists()

    async with running_bot(w) as bot:  # the bot runs on the restored file
        assert bot.services is not None
        statuses = await bot.services.store.rows(
            "SELECT status FROM pledges WHERE slug = 'europol-partnership'"
        )
        assert [r[0] for r in statuses] == ["not-yet-rated"]
        assert len(await engine_of(bot).schedules.in_guild(w.guild.id)) == 1


async def test_restore_refuses_what_is_not_a_usable_backup(tmp_path: Path) -> None:
    database = tmp_path / "live.db"
    config = write_config(tmp_path / "cli.toml", database=database)
    assert (await cli("db", "init", config=config)).returncode == 0
    before = snapshot(database)

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, " * 100, encoding="utf-8")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE things (x)")
    newer = tmp_path / "newer.db"
    assert (await cli("db", "backup", str(newer), config=config)).returncode == 0
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    for source, problem in (
        (tmp_path / "missing.db", "there is no backup file"),
        (text, "cannot open"),
        (foreign, "is not a pledgebot database"),
        (newer, "newer than this pledgebot understands"),
        (database, "is the database itself"),
    ):
        assert_one_line_error(await cli("db", "restore", str(source), config=config), problem)
    assert snapshot(database) == before
    assert replaced_files(tmp_path) == []


async def test_backup_refuses_a_missing_database_and_itself(tmp_path: Path) -> None:
    database = tmp_path / "live.db"
    config = write_config(tmp_path / "cli.toml", database=database)
    missing = await cli("db", "backup", str(tmp_path / "copy.db"), config=config)
    assert_one_line_error(missing, "there is no database")
    assert not database.exists()  # a backup never creates the database it copies
    assert (await cli("db", "init", config=config)).returncode == 0
    onto_itself = await cli("db", "backup", str(database), config=config)
    assert_one_line_error(onto_itself, "onto itself")
    assert integrity(database) == "ok"


async def test_only_a_sqlite_bot_holds_the_in_use_lock(tmp_path: Path) -> None:
    """The lock file guards a SQLite file against `db restore`; a bot on PostgreSQL must not
    lock (and create beside the working directory) the default SQLite path it never uses."""
    on_sqlite = make_bot(replace(Config(), database_path=tmp_path / "bot.db"))
    on_postgres = make_bot(
        replace(Config(), database_path=tmp_path / "unused.db", database_url="postgresql://u@h/db")
    )
    try:
        assert on_sqlite._database_hold is not None
        assert on_postgres._database_hold is None
    finally:
        await on_sqlite.close()
        await on_postgres.close()
    assert not lock_path(tmp_path / "unused.db").exists()
