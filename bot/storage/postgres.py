"""The PostgreSQL backend: the `Database` interface of `bot.storage.base` over asyncpg.

SQL in the code base is written once, with SQLite's `?` and `?N` placeholders;
`translate` rewrites them to PostgreSQL's `$N` (outside string literals, quoted
identifiers and comments) and remembers each translation.

Reads go through a small pool. Writes go through `transaction()`: one pooled connection,
`BEGIN` ... `COMMIT` (rolled back on any error), one transaction at a time per process,
as the SQLite writer does. Rows are `asyncpg.Record`s: `r[0]` and `r["column"]` both work.

Across processes, write transactions also take one at a time, as SQLite's
`BEGIN IMMEDIATE` does: each begins by taking a transaction-level advisory lock
(`WRITER_LOCK`, in the same round trip as `BEGIN`), and waits for it at most
`LOCK_TIMEOUT` (SQLite's busy timeout). The store's read-then-write transactions (the rate
budget's turn, a status change) then mean the same on both backends, which READ COMMITTED
alone would not give. Reads never wait for it.

The password is never part of pledgebot's settings: asyncpg takes it from `PGPASSWORD`,
else from the file named by `PGPASSFILE`, else from `~/.pgpass` (asyncpg's
`connect_utils`, used when the DSN itself carries none).

LISTEN/NOTIFY (`listen`, `notify`) carries plan changes to every process: listeners live
on a connection of their own, outside the pool, because returning a connection to the
pool runs `UNLISTEN *`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from bot.config import redact_dsn
from bot.errors import StoreError
from bot.storage.base import Row, Transaction
from bot.storage.schema import migrate

NotifyCallback = Callable[[str, str], Awaitable[None] | None]

POOL_MIN = 1
POOL_MAX = 4
# pg_advisory_xact_lock key every write transaction takes: "pledgewr" as an int64
WRITER_LOCK = 0x706C656467657772
LOCK_TIMEOUT = "5s"  # as bot.storage.base.BUSY_TIMEOUT_MS
# pg_advisory_xact_lock key for migrations: "pledgebo" as a big-endian int64
MIGRATION_LOCK = 0x706C65646765626F
# where the version lives: one row per step applied
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT to_char(
        clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
)
"""
_PLANNED_READ = "BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_custom_plan"
_BEGIN = (
    f"BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock({WRITER_LOCK})"
)

# A string literal ('...' with '' inside, or E'...' with backslash escapes), a quoted
# identifier, a comment, a dollar-quoted string, or a placeholder: `?` or `?N`.
_TOKENS = re.compile(
    r"""
      (?P<skip>
          (?<![A-Za-z0-9_])[Ee]'(?:[^'\\]|\\.|'')*'
        | '(?:[^']|'')*'
        | "(?:[^"]|"")*"
        | --[^\n]*
        | /\*.*?\*/
        | (?P<dollar>\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$).*?(?P=dollar)
      )
    | \?(?P<number>[0-9]+)?
    """,
    re.VERBOSE | re.DOTALL,
)


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite placeholders to PostgreSQL's: `?` -> `$n`, `?N` -> `$N`.

    As in SQLite, a bare `?` takes the number after the largest one so far. Text inside
    string literals, quoted identifiers, comments and dollar quotes is left alone.
    """
    largest = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal largest
        if match.group("skip") is not None:
            return match.group(0)
        number = match.group("number")
        n = int(number) if number is not None else largest + 1
        largest = max(largest, n)
        return f"${n}"

    return _TOKENS.sub(replace, sql)


def rows_changed(status: str) -> int:
    """The count in a command tag: `UPDATE 3` -> 3, `INSERT 0 1` -> 1, `CREATE TABLE` -> 0."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() and status.split(" ", 1)[0] != "SELECT" else 0


async def _pool(dsn: str, **options: Any) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX, **options)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot connect to database {redact_dsn(dsn)}: {exc}") from exc
    except ValueError:  # its text may quote a piece of the URL, a password's even
        raise StoreError(
            f"cannot connect to database {redact_dsn(dsn)}: asyncpg cannot read the URL "
            "(is every @ / ? # : in the user name or password percent-encoded?)"
        ) from None


@asynccontextmanager
async def _between(conn: asyncpg.Connection, begin: str) -> AsyncIterator[None]:
    """A transaction opened by `begin` (one round trip, simple query protocol: BEGIN and
    its settings), committed on exit and rolled back on any error. `begin` runs inside
    the try: when a lock it takes times out, BEGIN has already run and must be ended."""
    try:
        await conn.execute(begin)
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to see
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


class PgTransaction:
    """One open transaction on one connection (see `PostgresDatabase.transaction`)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return rows_changed(await self.conn.execute(translate(sql), *params))

    async def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(translate(sql), params)

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self.conn.fetch(translate(sql), *params))

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self.conn.fetchval(translate(sql), *params)


class PostgresDatabase:
    """pledgebot's store on a PostgreSQL server."""

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn
        self._write_lock = asyncio.Lock()
        self._listener: asyncpg.Connection | None = None
        self._listener_lock = asyncio.Lock()
        self._callbacks: dict[str, list[Callable[..., None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, dsn: str) -> PostgresDatabase:
        """Connect to the database at `dsn` and apply any missing migrations."""
        database = cls(await _pool(dsn), dsn)
        try:
            await migrate(database, redact_dsn(dsn))
        except BaseException:
            await database.pool.close()
            raise
        return database

    @classmethod
    async def open_as_is(cls, dsn: str) -> PostgresDatabase:
        """Connect to the database at `dsn` to read only, never migrating it: every
        session's transactions are read-only (`default_transaction_read_only`)."""
        read_only = {"default_transaction_read_only": "on"}
        return cls(await _pool(dsn, server_settings=read_only), dsn)

    async def release_memory(self) -> None:
        """Nothing: the pages PostgreSQL read are the server's to keep, not this process's."""

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._pool.close()

    # -- migrations (bot.storage.schema's `MigrationTarget`) ----------------------------

    async def schema_version(self) -> int:
        """The last step applied (0 for an empty database), without taking any lock."""
        if await self._pool.fetchval("SELECT to_regclass('schema_version')") is None:
            return 0
        return int(
            await self._pool.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        )

    @asynccontextmanager
    async def migrating(self) -> AsyncIterator[Transaction]:
        """A transaction holding the migration lock: hosts starting together take turns."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(_VERSION_TABLE)
            yield PgTransaction(conn)

    async def version_in(self, tx: Transaction) -> int:
        return int(await tx.scalar("SELECT coalesce(max(version), 0) FROM schema_version"))

    async def set_version(self, tx: Transaction, version: int) -> None:
        await tx.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))

    async def run_script(self, tx: Transaction, sql: str) -> None:
        await tx.execute(sql)  # no parameters: PostgreSQL runs several statements at once

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    # -- reads --------------------------------------------------------------------

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._pool.fetch(translate(sql), *params))

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._pool.fetchval(translate(sql), *params)

    async def rows_planned(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """In a read-only transaction that plans its statements for their values: two
        round trips more than `rows`, for a read where the generic plan costs far more."""
        async with self._pool.acquire() as conn, _between(conn, _PLANNED_READ):
            return list(await conn.fetch(translate(sql), *params))

    async def rows_inline(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.rows(sql, params)  # a network round trip either way

    # -- writes -------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        """One write transaction at a time, across processes; rolled back whole on error."""
        async with self._write_lock, self._pool.acquire() as conn, _between(conn, _BEGIN):
            yield PgTransaction(conn)

    # -- LISTEN / NOTIFY ----------------------------------------------------------

    async def listen(self, channel: str, callback: NotifyCallback) -> None:
        """Call `callback(channel, payload)` for each NOTIFY on `channel`, from any process.

        A coroutine function is run as a task. Notifications arrive after the sender's
        transaction commits, on a connection kept for listening only.
        """

        def on_notify(_conn: object, _pid: int, got_channel: str, payload: str) -> None:
            result = callback(got_channel, payload)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        async with self._listener_lock:
            if self._listener is None:
                self._listener = await asyncpg.connect(self.dsn)
            await self._listener.add_listener(channel, on_notify)
            self._callbacks.setdefault(channel, []).append(on_notify)

    async def unlisten(self, channel: str) -> None:
        """Stop every callback on `channel`."""
        async with self._listener_lock:
            if self._listener is None:
                return
            for on_notify in self._callbacks.pop(channel, []):
                await self._listener.remove_listener(channel, on_notify)

    async def notify(self, channel: str, payload: str = "") -> None:
        """Send `payload` to every listener on `channel` (in its own transaction)."""
        await self._pool.execute("SELECT pg_notify($1, $2)", channel, payload)
