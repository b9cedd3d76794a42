"""One list of migration steps for both backends (bot.storage.schema), checked against
databases that the code before it made (commit c194732, with its two parallel lists).

tests/data holds what that code left: a SQLite file and a `pg_dump --inserts` of a
PostgreSQL database, both at version 8 with a few rows (a statement, a pledge with a
status change, a schedule and its sent delivery). Today's runner must read each as
version 8, apply only the steps after it, and leave the same schema as a database it
builds from nothing.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from bot.briefings.schedules import Schedules
from bot.storage.schema import DIALECT_TOKENS, SCHEMA_VERSION, STEPS, Only, resolved
from bot.store import Store
from tests.pg_server import drop_database, new_database

DATA = Path(__file__).resolve().parent / "data"
OLD_SQLITE = DATA / "schema_v8_made_by_c194732.sqlite"
OLD_POSTGRESQL = DATA / "schema_v8_made_by_c194732.postgresql.sql"
GUILD = 81_000_000_000_000_000
OLD_VERSION = 8


def _words(sql: str) -> str:
    """SQL with its layout (indentation, line breaks) folded away."""
    return re.sub(r"\s+", " ", sql).replace("( ", "(").replace(" )", ")").strip()


def sqlite_schema(path: Path) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {(kind, name): _words(sql) for kind, name, sql in rows}


async def reads_the_old_rows(store: Store) -> None:
    """The rows the old code wrote, read through today's code."""
    assert await store.get_meta("made_by") == "c194732"
    history = await store.status_history("p")
    assert [(c.from_status, c.to_status) for c in history] == [("not-yet-rated", "in-progress")]
    schedules = Schedules(store)
    (schedule,) = await schedules.in_guild(GUILD)
    delivery = await schedules.last_delivery(schedule.id)
    assert delivery is not None and (delivery.state, delivery.message_id) == ("sent", 42)


def test_every_step_is_written_once() -> None:
    """No statement repeated per backend: a part is shared unless it is an `Only`."""
    assert SCHEMA_VERSION == len(STEPS) > OLD_VERSION
    for step in STEPS:
        for part in step:
            if isinstance(part, Only):
                assert part.sqlite != part.postgresql
    shared = [p for step in STEPS for p in step if isinstance(p, str)]
    only = [p for step in STEPS for p in step if isinstance(p, Only)]
    assert len(shared) > len(only)  # the differences are the exception
    # each dialect's tokens are all replaced
    for dialect in DIALECT_TOKENS:
        for step in STEPS:
            for sql in resolved(step, dialect):
                assert not isinstance(sql, str) or "{" not in sql


def sqlite_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def test_a_sqlite_file_made_before_reads_as_the_same_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(OLD_SQLITE, path)
    assert sqlite_version(path) == OLD_VERSION
    before = sqlite_schema(path)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        await reads_the_old_rows(store)
    finally:
        await store.close()
    after = sqlite_schema(path)
    # nothing before version 8 was applied again: what it made is as it was, but for the
    # columns later steps add (SQLite appends `ADD COLUMN` to the table's SQL; step 10's
    # status_history.suggestion_id)
    for key, sql in before.items():
        assert after[key] == sql or after[key].startswith(f"{sql[:-1]} , "), key
    assert after[("table", "status_history")] != before[("table", "status_history")]


async def test_a_new_sqlite_file_has_the_schema_an_old_one_migrates_to(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "new.db")
    await store.close()
    shutil.copy(OLD_SQLITE, tmp_path / "old.db")
    store = await Store.open(tmp_path / "old.db")
    await store.close()
    assert sqlite_schema(tmp_path / "new.db") == sqlite_schema(tmp_path / "old.db")


# -- PostgreSQL --------------------------------------------------------------------------


async def restore_dump(dsn: str) -> None:
    """Load the old code's dump into an empty database (psql's meta-commands left out)."""
    script = "\n".join(
        line for line in OLD_POSTGRESQL.read_text().splitlines() if not line.startswith("\\")
    )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


async def pg_schema(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
            "column_default, is_identity, is_generated, generation_expression "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        )
        indexes = await conn.fetch(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' ORDER BY indexname"
        )
        constraints = await conn.fetch(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conname"
        )
        triggers = await conn.fetch(
            "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY tgname"
        )
        functions = await conn.fetch(
            "SELECT proname, prosrc FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace ORDER BY proname"
        )
        versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    finally:
        await conn.close()
    return {
        name: [tuple(r) for r in rows]
        for name, rows in (
            ("columns", columns),
            ("indexes", indexes),
            ("constraints", constraints),
            ("triggers", triggers),
            ("functions", functions),
            ("versions", versions),
        )
    }


@pytest.fixture
async def old_pg_dsn(pg_server: str):  # type: ignore[no-untyped-def]
    dsn = await new_database(pg_server)
    await restore_dump(dsn)
    yield dsn
    await drop_database(pg_server, dsn)


async def test_a_postgresql_database_made_before_reads_as_the_same_version(
    old_pg_dsn: str,
) -> None:
    before = await pg_schema(old_pg_dsn)
    conn = await asyncpg.connect(old_pg_dsn)
    applied = await conn.fetch("SELECT version, applied_at FROM schema_version ORDER BY version")
    await conn.close()
    store = await Store.open(old_pg_dsn)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        await reads_the_old_rows(store)
    finally:
        await store.close()
    after = await pg_schema(old_pg_dsn)
    for part, rows in before.items():  # what the old code made is as it was
        assert set(rows) <= set(after[part]), part
    conn = await asyncpg.connect(old_pg_dsn)
    try:  # no step up to 8 was applied again
        again = await conn.fetch("SELECT version, applied_at FROM schema_version ORDER BY version")
    finally:
        await conn.close()
    assert [v for v, _ in applied] == list(range(1, OLD_VERSION + 1))
    assert again[:OLD_VERSION] == applied
    assert [v for v, _ in again] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_new_postgresql_database_has_the_schema_an_old_one_migrates_to(
    old_pg_dsn: str, pg_dsn: str
) -> None:
    for dsn in (pg_dsn, old_pg_dsn):
        store = await Store.open(dsn)
        await store.close()
    assert await pg_schema(pg_dsn) == await pg_schema(old_pg_dsn)
