"""The SQLite backend: `Database` over aiosqlite, one file, a writer and a reader.

What is SQLite's alone lives here: PRAGMAs, `BEGIN IMMEDIATE`, the schema version in the
file header (`user_version`). The file's lock, backup and restore are `bot.storage.files`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import StoreError
from bot.storage.base import BUSY_TIMEOUT_MS, Row, Transaction
from bot.storage.schema import migrate, split_sql

# Opening waits far longer than a write: another process starting on the same file holds
# it while it switches it to WAL (fsyncs under an exclusive lock) or migrates, and on a
# loaded disk each fsync can take seconds. Start-up waits for that rather than exiting.
OPEN_BUSY_TIMEOUT_MS = 60_000
WAL_SWITCH_RETRY_SECONDS = 0.05
# A read on the event loop's own thread (`rows_inline`) that runs longer than this is
# stopped and run again on aiosqlite's: no such read holds the loop longer. The clock is
# looked at every INLINE_CHECK_STEPS steps of SQLite's engine (a few microseconds).
INLINE_READ_SECONDS = 0.002
INLINE_CHECK_STEPS = 1_000
_GIVE_UP_INLINE = frozenset({sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class SQLiteTransaction:
    """A `Transaction` on the writer connection, inside `BEGIN IMMEDIATE`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, params)  # one trip to aiosqlite's thread
        return max(cursor.rowcount, 0)  # -1 for statements that change no rows

    async def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, params)

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = await self.rows(sql, params)
        return found[0][0] if found else None


class SQLiteDatabase:
    """One SQLite file: writes through one connection, reads through another.

    With WAL, readers never wait for writers; a second connection keeps it so inside
    this process too. A write waiting for another process's lock (SQLite's busy handler
    sleeps in the connection's thread) would otherwise hold up every member's read.
    Writers are serialised with a lock, because aiosqlite shares one connection between
    coroutines.
    """

    dialect = "sqlite"

    def __init__(
        self,
        writer: aiosqlite.Connection,
        path: Path,
        reader: aiosqlite.Connection | None = None,
    ) -> None:
        self.writer = writer  # SQLite's own: for SQLite-specific work (PRAGMAs, tests)
        self.reader = reader or writer
        self.path = path
        self._write_lock = asyncio.Lock()
        # `rows_inline`'s own connection: opened on first use, used from that thread only
        self._inline_allowed = False
        self._inline: sqlite3.Connection | None = None
        self._inline_thread = 0
        self._inline_deadline = 0.0

    @classmethod
    async def open(cls, path: Path) -> SQLiteDatabase:
        """Open (creating if needed) and migrate the database file at `path`."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        writer.row_factory = aiosqlite.Row
        try:
            # busy_timeout first: a second process may be switching the file to WAL now
            await writer.execute(f"PRAGMA busy_timeout = {OPEN_BUSY_TIMEOUT_MS}")
            await _switch_to_wal(writer)
            await writer.execute("PRAGMA foreign_keys = ON")
            await writer.execute("PRAGMA synchronous = NORMAL")
            database = cls(writer, path)
            await migrate(database, str(path))
            await writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            database.reader = await _connect_reader(path)
            database._inline_allowed = True
        except BaseException:
            await writer.close()
            raise
        return database

    @classmethod
    async def open_as_is(cls, path: Path) -> SQLiteDatabase:
        """Open the file at `path` to read only: never created, switched to WAL or migrated.

        With no `-wal` file beside it (no process has it open, or the last one closed it
        cleanly) the file is opened immutable, so that not even SQLite's `-wal` and `-shm`
        files are made: they would belong to whoever ran this (root, say) and refuse the
        bot's own user. Otherwise it is read through the WAL that is there.
        """
        try:
            conn = await aiosqlite.connect(_read_only_uri(path), uri=True, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = aiosqlite.Row
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("SELECT count(*) FROM sqlite_master")  # is it a database?
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    async def rows_planned(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.rows(sql, params)

    async def rows_inline(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """On this thread, with its own read-only connection: a search's read takes about
        0.1 ms, and the trip to aiosqlite's thread and back costs more than that. Stopped
        after INLINE_READ_SECONDS, or when the file is busy (it never waits for a lock),
        and then read on aiosqlite's thread like any other."""
        connection = self._inline_connection()
        if connection is not None:
            self._inline_deadline = time.perf_counter() + INLINE_READ_SECONDS
            try:
                return connection.execute(sql, params).fetchall()
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF not in _GIVE_UP_INLINE:
                    raise
        return await self.rows(sql, params)

    def _inline_connection(self) -> sqlite3.Connection | None:
        if self._inline is None and self._inline_allowed:
            self._inline_allowed = False  # one try: a file this process cannot open again
            try:
                connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            except sqlite3.Error:
                return None
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA query_only = ON")
            connection.set_progress_handler(self._inline_overdue, INLINE_CHECK_STEPS)
            self._inline, self._inline_thread = connection, threading.get_ident()
        return self._inline_here()

    def _inline_here(self) -> sqlite3.Connection | None:
        """The inline connection, if open and this is the thread it was opened on."""
        return self._inline if self._inline_thread == threading.get_ident() else None

    def _inline_overdue(self) -> bool:
        return time.perf_counter() > self._inline_deadline

    async def release_memory(self) -> None:
        for connection in {self.writer, self.reader}:
            await connection.execute("PRAGMA shrink_memory")
        if (inline := self._inline_here()) is not None:
            inline.execute("PRAGMA shrink_memory")

    async def close(self) -> None:
        if (inline := self._inline_here()) is not None:
            inline.close()
        self._inline, self._inline_allowed = None, False
        if self.reader is not self.writer:
            await self.reader.close()
        await self.writer.close()

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of a read, in one trip to aiosqlite's thread (reads are the hot path)."""
        return list(await self.reader.execute_fetchall(sql, params))

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = await self.rows(sql, params)
        return found[0][0] if found else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction at a time; rolled back whole on any error."""
        async with self._write_lock:
            await self.writer.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteTransaction(self.writer)
            except BaseException:
                await self.writer.execute("ROLLBACK")
                raise
            await self.writer.execute("COMMIT")

    # -- migrations (bot.storage.schema's `MigrationTarget`) ----------------------------

    async def schema_version(self) -> int:
        """SQLite keeps it in the file header: `user_version`."""
        rows = list(await self.writer.execute_fetchall("PRAGMA user_version"))
        return int(rows[0][0])

    def migrating(self) -> AbstractAsyncContextManager[Transaction]:
        """`BEGIN IMMEDIATE` is the turn: another process migrating holds the file."""
        return self.transaction()

    async def version_in(self, tx: Transaction) -> int:
        return int(await tx.scalar("PRAGMA user_version"))

    async def set_version(self, tx: Transaction, version: int) -> None:
        await tx.execute(f"PRAGMA user_version = {int(version)}")

    async def run_script(self, tx: Transaction, sql: str) -> None:
        for statement in split_sql(sql):
            await tx.execute(statement)


def _read_only_uri(path: Path) -> str:
    """The file's URI for `open_as_is`: immutable when no `-wal` file is beside it."""
    if not path.is_file():
        raise StoreError(f"there is no database file at {path}")
    wal = path.with_name(path.name + "-wal")
    mode = "ro" if wal.exists() else "ro&immutable=1"
    return f"{path.absolute().as_uri()}?mode={mode}"


async def _switch_to_wal(writer: aiosqlite.Connection) -> None:
    """`PRAGMA journal_mode = WAL`, tried again while another process switches the file.

    The switch reads the file's header, then writes it. Of two connections doing that at
    once, SQLite refuses one straight away ("database is locked") instead of letting it
    wait out the busy timeout: two readers each waiting to write would deadlock. Once the
    other has switched the file, trying again finds it in WAL mode already.
    """
    deadline = time.monotonic() + OPEN_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await writer.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            busy = error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(WAL_SWITCH_RETRY_SECONDS)


async def _connect_reader(path: Path) -> aiosqlite.Connection:
    reader = await aiosqlite.connect(path, isolation_level=None)
    try:
        reader.row_factory = aiosqlite.Row
        await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await reader.execute("PRAGMA query_only = ON")  # every write goes through one place
    except BaseException:
        await reader.close()
        raise
    return reader


def check_sqlite_file_opens(path: Path) -> None:
    """A database file that cannot be opened at all, found without aiosqlite: when its
    connect fails, aiosqlite's worker thread may report back after the event loop has
    closed, printing a traceback on the way out."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=OPEN_BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # reads the file's header
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as error:
        raise StoreError(f"cannot open database {path}: {error}") from None
