"""The database interface (`bot.storage`) on SQLite: what the store relies on a backend for.

The SQL here is portable (`?` placeholders, ON CONFLICT, RETURNING), the kind the store
writes, on tables every backend has.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage import Database, sqlite
from bot.storage.sqlite import SQLiteDatabase
from tests.test_robustness_database import exclusive_lock


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    database = await SQLiteDatabase.open(tmp_path / "db" / "p.db")
    try:
        yield database
    finally:
        await database.close()


async def meta(db: Database) -> dict[str, str]:
    return {r["key"]: r["value"] for r in await db.rows("SELECT key, value FROM meta")}


async def test_it_is_sqlite(db: SQLiteDatabase) -> None:
    assert db.dialect == "sqlite"


async def test_a_failed_transaction_leaves_nothing(db: SQLiteDatabase) -> None:
    with pytest.raises(RuntimeError, match="half way"):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO meta(key, value) VALUES (?, ?)", ("a", "1"))
            await tx.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)", [("b", "2"), ("c", "3")]
            )
            assert await tx.scalar("SELECT count(*) FROM meta") == 3  # seen inside
            raise RuntimeError("half way")
    assert await meta(db) == {}
    async with db.transaction() as tx:  # the next transaction is not held up
        await tx.execute("INSERT INTO meta(key, value) VALUES (?, ?)", ("d", "4"))
    assert await meta(db) == {"d": "4"}


async def test_a_database_error_rolls_back_too(db: SQLiteDatabase) -> None:
    with pytest.raises(Exception, match="UNIQUE"):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO meta(key, value) VALUES ('a', '1')")
            await tx.execute("INSERT INTO meta(key, value) VALUES ('a', '2')")
    assert await meta(db) == {}


async def test_execute_returns_the_rows_changed(db: SQLiteDatabase) -> None:
    insert = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING"
    async with db.transaction() as tx:
        assert await tx.execute(insert, ("a", "1")) == 1
        assert await tx.execute(insert, ("a", "2")) == 0  # the conflict did nothing
        await tx.executemany(insert, [("b", "1"), ("c", "1")])
        assert await tx.execute("UPDATE meta SET value = ? WHERE value = ?", ("x", "1")) == 3
        assert await tx.execute("UPDATE meta SET value = 'y' WHERE key = 'nothing'") == 0
        assert await tx.execute("DELETE FROM meta WHERE key IN (?, ?)", ("a", "b")) == 2
    assert await meta(db) == {"c": "x"}


async def test_returning_gives_what_was_written(db: SQLiteDatabase) -> None:
    upsert = (
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value RETURNING key, value"
    )
    async with db.transaction() as tx:
        (row,) = await tx.rows(upsert, ("a", "1"))
        assert (row["key"], row["value"]) == ("a", "1")
        assert await tx.scalar(upsert, ("a", "2")) == "a"
    assert await meta(db) == {"a": "2"}


async def test_rows_are_read_by_position_and_by_name(db: SQLiteDatabase) -> None:
    async with db.transaction() as tx:
        await tx.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [("a", "1"), ("b", "2")])
        inside = await tx.rows("SELECT key, value FROM meta ORDER BY key")
    outside = await db.rows("SELECT key, value FROM meta ORDER BY key")
    for rows in (inside, outside):
        first = rows[0]
        assert first[0] == first["key"] == "a"
        assert first[1] == first["value"] == "1"
        assert list(first.keys()) == ["key", "value"]
        assert len(first) == 2
        key, value = rows[1]
        assert (key, value) == ("b", "2")


async def test_scalar_is_the_first_column_of_the_first_row_or_none(db: SQLiteDatabase) -> None:
    assert await db.scalar("SELECT value FROM meta WHERE key = ?", ("missing",)) is None
    async with db.transaction() as tx:
        assert await tx.scalar("SELECT value FROM meta") is None
        await tx.execute("INSERT INTO meta(key, value) VALUES ('a', '1')")
        assert await tx.scalar("SELECT value, key FROM meta") == "1"
    assert await db.scalar("SELECT count(*), 'x' FROM meta") == 1


async def test_transactions_in_one_process_take_turns(db: SQLiteDatabase) -> None:
    """Read-modify-write in many concurrent transactions loses no update."""

    async def bump() -> None:
        async with db.transaction() as tx:
            value = await tx.scalar("SELECT value FROM meta WHERE key = 'n'")
            await asyncio.sleep(0)  # let the others try to get in between
            await tx.execute(
                "INSERT INTO meta(key, value) VALUES ('n', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(int(value or 0) + 1),),
            )

    await asyncio.gather(*(bump() for _ in range(20)))
    assert await meta(db) == {"n": "20"}


async def test_reads_never_wait_behind_a_write(db: SQLiteDatabase, tmp_path: Path) -> None:
    """Another process holds the write lock, and this process's own write waits for it
    (SQLite's busy handler sleeping in the writer's thread): reads still answer at once.

    The bot-level version of this is test_robustness_database's locked-database tests.
    """
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO meta(key, value) VALUES ('a', '1')")
    with exclusive_lock(tmp_path / "db" / "p.db"):

        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute("UPDATE meta SET value = '2'")

        waiting = asyncio.create_task(write())
        await asyncio.sleep(0.2)
        assert not waiting.done()  # behind the other process's lock
        started = time.perf_counter()
        assert await meta(db) == {"a": "1"}
        assert time.perf_counter() - started < 1.0
    await waiting  # the lock is gone: the write goes through
    assert await meta(db) == {"a": "2"}


# a read of many steps of SQLite's engine (its time limit is looked at every 1,000)
COUNT_TO = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
    "SELECT count(*) AS n FROM c"
)


async def test_an_inline_read_that_runs_long_goes_to_aiosqlites_thread(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rows_inline` reads on the loop's thread, sees what was just written, and a read
    over its time is stopped there and read where every other read goes: the same rows."""
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO meta(key, value) VALUES ('a', '1')")
    threaded: list[str] = []
    rows = db.rows

    async def counted(sql: str, params: tuple[object, ...] = ()) -> list[sqlite.Row]:
        threaded.append(sql)
        return await rows(sql, params)

    monkeypatch.setattr(db, "rows", counted)
    monkeypatch.setattr(sqlite, "INLINE_READ_SECONDS", 60.0)  # however loaded the machine
    assert [tuple(r) for r in await db.rows_inline("SELECT key, value FROM meta")] == [("a", "1")]
    assert (await db.rows_inline(COUNT_TO, (2_000,)))[0]["n"] == 2_000  # within the time
    assert threaded == []
    monkeypatch.setattr(sqlite, "INLINE_READ_SECONDS", -1.0)  # every read over its time
    assert (await db.rows_inline(COUNT_TO, (2_000,)))[0]["n"] == 2_000
    assert threaded == [COUNT_TO]
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.rows_inline("SELECT * FROM no_such_table")  # an error is not a retry
    assert threaded == [COUNT_TO]


async def test_no_inline_read_after_closing(tmp_path: Path) -> None:
    """Closed before any inline read or after one, the database reads nothing more."""
    for read_first in (False, True):
        db = await SQLiteDatabase.open(tmp_path / f"{read_first}.db")
        if read_first:
            assert await db.rows_inline("SELECT 1 AS one")
        await db.close()
        with pytest.raises(ValueError):  # aiosqlite's: its connection is closed
            await db.rows_inline("SELECT 1 AS one")


async def test_an_inline_read_cannot_write(db: SQLiteDatabase) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await db.rows_inline("INSERT INTO meta(key, value) VALUES ('b', '2') RETURNING key")
    assert await meta(db) == {}


async def test_processes_opening_a_new_file_together_all_open_it(tmp_path: Path) -> None:
    """Switching a new file to WAL fails one of two connections at once ("database is
    locked", the busy timeout notwithstanding) when both switch together; on an unlucky
    start one of two `pledgebot run` processes exited so. Each attempt races two opens."""
    for attempt in range(40):
        path = tmp_path / f"new-{attempt}.db"
        opened = await asyncio.gather(SQLiteDatabase.open(path), SQLiteDatabase.open(path))
        for database in opened:
            assert await database.scalar("PRAGMA journal_mode") == "wal"
            await database.close()
