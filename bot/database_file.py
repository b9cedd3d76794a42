"""The database as a file: who is using it, online backup, restore, and copy.

Copying `pledgebot.db` while the bot runs loses whatever still sits in its `-wal` file, so
backups go through SQLite's online backup API instead: one consistent snapshot, taken
while the bot keeps writing (WAL readers never block writers).

Restore must not swap the file under a running bot. Every pledgebot process that opens
the database (the bot, the console, and the operator CLI) holds a shared `flock` on
`<database>.lock` for as long as it has the database open; `restore` takes that lock
exclusively, without waiting, and refuses if it cannot. The kernel drops a process's lock
when it exits, even on `kill -9`, so no stale lock file can block a restore.

Backup and restore are SQLite's: a PostgreSQL server has its own (`pg_dump`,
`pg_restore`). `copy_database` moves every row between any two pledgebot databases,
SQLite or PostgreSQL, through the `Database` interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import aiosqlite

from bot.config import location_name
from bot.database import Database, SQLiteDatabase
from bot.errors import OperatorError, StoreError, driver_errors
from bot.migrations import SCHEMA_VERSION

# How long a backup or restore waits for another connection's lock (the bot's busy time).
BUSY_TIMEOUT_SECONDS = 30
# Tables every pledgebot database has: a file without them is not one of ours.
REQUIRED_TABLES = frozenset({"meta", "statements", "pledges", "schedules", "deliveries"})


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class DatabaseInUse:
    """A shared hold on the database file for as long as this process uses it."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the shared lock; refuse at once while a restore holds it exclusively."""
        if self._file is not None:
            return
        file = _open_lock_file(self.database)
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise StoreError(
                f"database {self.database} is being restored (`pledgebot db restore`); "
                "start again when it has finished"
            ) from None
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None


@contextlib.contextmanager
def in_use(database: Path) -> Iterator[None]:
    hold = DatabaseInUse(database)
    hold.acquire()
    try:
        yield
    finally:
        hold.release()


@contextlib.contextmanager
def exclusive(database: Path, doing: str = "restore") -> Iterator[None]:
    """The database to ourselves, or OperatorError naming why not (never waits)."""
    file = _open_lock_file(database)
    try:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperatorError(
                f"refusing to {doing}: a pledgebot process is using {database} "
                "(the bot, the console or another command); stop it first"
            ) from None
        yield
    finally:
        file.close()


def _open_lock_file(database: Path) -> IO[bytes]:
    """Opened read-only: a lock file left by another user (root running a restore for
    the bot's user, say) still works for every user who can read it."""
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT, 0o644), "rb")
    except OSError as error:
        raise StoreError(
            f"cannot open database {database}: cannot create its lock file {path} "
            f"({error.strerror or error})"
        ) from None


# -- backup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Copied:
    path: Path
    size: int
    schema_version: int
    deliveries: int


def backup(database: Path, target: Path) -> Copied:
    """Copy the live database to `target` with the online backup API.

    The copy is written under a temporary name beside `target`, checked with
    `integrity_check`, and only then renamed into place, so `target` is either the old
    file or a complete, verified copy, never half of one.
    """
    if not database.exists():
        raise OperatorError(f"there is no database at {database} to back up")
    if target.exists() and target.resolve() == database.resolve():
        raise OperatorError(f"refusing to back up {database} onto itself")
    if target.is_dir():
        raise OperatorError(f"{target} is a directory: name the backup file")
    with in_use(database):
        source = _connect(database, "rw")
        try:
            return _copy_verified(source, target)
        finally:
            source.close()


def _copy_verified(source: sqlite3.Connection, target: Path) -> Copied:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = sqlite3.connect(temporary, isolation_level=None)
        try:
            source.backup(copy)  # all pages in one step: one consistent snapshot
            # A single self-contained file: no -wal beside the copy to forget.
            copy.execute("PRAGMA journal_mode = DELETE")
            problems = _integrity_problems(copy)
            if problems:
                raise OperatorError(f"the copy failed integrity_check: {problems}")
            version = int(copy.execute("PRAGMA user_version").fetchone()[0])
            deliveries = _count(copy, "deliveries")
        finally:
            copy.close()
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except OSError as error:
        raise OperatorError(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return Copied(target, target.stat().st_size, version, deliveries)


# -- restore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    database: Path
    replaced: Path | None  # where the file it replaced was kept
    copied: Copied


def restore(backup_file: Path, database: Path, *, now: datetime | None = None) -> Restored:
    """Put `backup_file` in place of `database`, keeping the file it replaces.

    Refused while any pledgebot process uses the database. The backup is checked first
    (integrity, a pledgebot schema this version can read) and copied beside the
    database before anything is moved, so a bad backup changes nothing.
    """
    if not backup_file.is_file():
        raise OperatorError(f"there is no backup file at {backup_file}")
    if database.exists() and backup_file.resolve() == database.resolve():
        raise OperatorError(f"{backup_file} is the database itself")
    source = _connect(backup_file, "ro")
    try:
        _check_restorable(source, backup_file)
        with exclusive(database):
            incoming = _copy_verified(source, database.with_name(f".{database.name}.restoring"))
            try:
                if database.exists():
                    _same_owner_and_mode(incoming.path, database)
                replaced = _set_aside(database, now or datetime.now(UTC))
                os.replace(incoming.path, database)
                _fsync(database.parent)
            finally:
                incoming.path.unlink(missing_ok=True)
    finally:
        source.close()
    return Restored(database, replaced, incoming)


def _check_restorable(conn: sqlite3.Connection, path: Path) -> None:
    problems = _integrity_problems(conn)
    if problems:
        raise OperatorError(f"{path} failed integrity_check, not restoring: {problems}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = sorted(REQUIRED_TABLES - tables)
    if missing:
        raise OperatorError(f"{path} is not a pledgebot database (no table {', '.join(missing)})")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise OperatorError(
            f"{path} has schema version {version}, newer than this pledgebot "
            f"understands ({SCHEMA_VERSION}); upgrade pledgebot first"
        )


def _set_aside(database: Path, now: datetime) -> Path | None:
    """Keep the current database as `<name>.replaced-<UTC time>`, its WAL folded in.

    Leaving WAL mode checkpoints the `-wal` into the file and deletes it; it needs the
    last connection, so it also fails if anything outside pledgebot holds the file.
    """
    if not database.exists():
        return None
    conn = _connect(database, "rw")
    try:
        mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    finally:
        conn.close()
    if str(mode).lower() != "delete":
        raise OperatorError(f"cannot take {database} out of use: another program has it open")
    kept = _claim_name(database, now)
    try:
        os.replace(database, kept)
    except BaseException:
        kept.unlink(missing_ok=True)
        raise
    for sidecar in ("-wal", "-shm"):  # never left to be replayed into the restored file
        database.with_name(database.name + sidecar).unlink(missing_ok=True)
    return kept


def _claim_name(database: Path, now: datetime) -> Path:
    """`<name>.replaced-<UTC second>`, else with `-2`, `-3`... : a name no file has, made
    (O_EXCL) so that it is ours, so a second restore within the second never overwrites
    the database the first one kept."""
    stamp = f"{database.name}.replaced-{now.strftime('%Y%m%dT%H%M%SZ')}"
    number = 1
    while True:
        kept = database.with_name(stamp if number == 1 else f"{stamp}-{number}")
        try:
            os.close(os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return kept
        except FileExistsError:
            number += 1


# -- copy between databases ----------------------------------------------------------------

# The migrations' own bookkeeping (PostgreSQL's `schema_version`; SQLite keeps its version
# in the file header): each side's is its own, written when it was migrated.
INTERNAL_TABLES = frozenset({"schema_version"})
# The tables FTS5 keeps behind a virtual table `t`: `t_data`, `t_idx`, ... (its own).
_FTS5_SHADOWS = ("data", "idx", "content", "docsize", "config")
COPY_BATCH = 1000  # rows read and written at a time: a copy's memory stays bounded


@dataclass(frozen=True)
class CopiedTable:
    name: str
    rows: int


@dataclass
class _Table:
    columns: list[str]  # in the order they are copied; a virtual table's rowid first
    fts5: bool = False  # SQLite: an FTS5 index (optimized after a bulk insert)
    identities: tuple[str, ...] = ()  # PostgreSQL: identity columns (their sequences move)


async def copy_database(source: Path | str, target: Path | str) -> list[CopiedTable]:
    """Copy every row of every pledgebot table from `source` to `target`.

    Each is a SQLite file's `Path` or a PostgreSQL URL. Both are migrated to the current
    version first. The target must hold no rows (a fresh file or `createdb`), and no
    pledgebot process may hold either SQLite file. Tables are copied in dependency order
    (foreign keys), one transaction each, ids kept, `COPY_BATCH` rows at a time;
    PostgreSQL's identity sequences are then moved past the largest id. At the end every
    table's row count is compared with the source's, and OperatorError names any table
    that differs.

    The source is read from one snapshot (`_snapshot`): a bot still writing a PostgreSQL
    source cannot leave the copy half before and half after one of its transactions (a
    delivery without its schedule); what it writes after the copy began is not copied.

    The search index is copied as a table (rowids kept) rather than rebuilt: it is a
    function of the content rows, which are copied verbatim, so the copy is the index the
    target would build, needs no dialect-bound rebuild SQL here, and its count is verified
    like any table's. PostgreSQL computes its tsvector column itself on insert, and SQLite
    FTS5 builds its own structures (its shadow tables are never copied).
    """
    _check_endpoints(source, target)
    async with _opened(source) as src, _opened(target) as dst:
        tables = await _tables(src)
        target_tables = await _tables(dst)
        _check_same_shape(tables, target_tables)
        order = _dependency_order(tables, await _references(src) | await _references(dst))
        filled = [(t, n) for t in order if (n := await _count_rows(dst, t))]
        if filled:
            listed = ", ".join(f"{t} ({n} rows)" for t, n in filled)
            raise OperatorError(
                f"refusing to copy: the target {location_name(target)} already holds data "
                f"({listed}); copy into a new SQLite file or a new, empty PostgreSQL "
                "database (createdb)"
            )
        async with _snapshot(src) as snapshot:
            had = {name: await _count_rows(snapshot, name) for name in order}
            for name in order:
                await _copy_table(snapshot, dst, name, tables[name], target_tables[name])
        copied = []
        for name in order:
            has = await _count_rows(dst, name)
            if had[name] != has:
                raise OperatorError(
                    f"copy NOT complete: table {name} has {had[name]} rows in "
                    f"{location_name(source)} but {has} in {location_name(target)}"
                )
            copied.append(CopiedTable(name, has))
    return copied


def _check_endpoints(source: Path | str, target: Path | str) -> None:
    if isinstance(source, Path) and isinstance(target, Path):
        same = source.resolve() == target.resolve()
    else:
        same = source == target
    if same:
        raise OperatorError(f"--from and --to are the same database ({location_name(source)})")
    if isinstance(source, Path) and not source.is_file():
        raise OperatorError(f"there is no database at {source} to copy from")


@contextlib.asynccontextmanager
async def _opened(where: Path | str) -> AsyncIterator[Database]:
    """The database opened and migrated; a SQLite file held exclusively meanwhile."""
    if isinstance(where, Path):
        with exclusive(where, "copy"):
            database: Database = await SQLiteDatabase.open(where)
            try:
                yield database
            finally:
                await database.close()
        return
    from bot.database_pg import PostgresDatabase  # asyncpg only when PostgreSQL is used

    database = await PostgresDatabase.open(where)
    try:
        yield database
    finally:
        await database.close()


async def _tables(db: Database) -> dict[str, _Table]:
    """Every pledgebot table and the columns a copy writes (never generated ones)."""
    found: dict[str, _Table] = {}
    if db.dialect == "sqlite":
        rows = await db.rows(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        virtual = {r["name"] for r in rows if r["sql"].upper().startswith("CREATE VIRTUAL")}
        shadows = {f"{v}_{suffix}" for v in virtual for suffix in _FTS5_SHADOWS}
        for r in rows:
            name = r["name"]
            if name in shadows or name in INTERNAL_TABLES:
                continue
            # table_xinfo hides nothing but lists generated columns (hidden 2 or 3)
            info = await db.rows(f'PRAGMA table_xinfo("{name}")')
            columns = [c["name"] for c in info if c["hidden"] == 0]
            fts5 = name in virtual
            found[name] = _Table(["rowid", *columns] if fts5 else columns, fts5=fts5)
        return found
    rows = await db.rows(
        "SELECT c.table_name, c.column_name, c.is_identity "
        "FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
        "AND c.is_generated = 'NEVER' ORDER BY c.table_name, c.ordinal_position"
    )
    for r in rows:
        name = r["table_name"]
        if name in INTERNAL_TABLES:
            continue
        table = found.setdefault(name, _Table([]))
        table.columns.append(r["column_name"])
        if r["is_identity"] == "YES":
            table.identities += (r["column_name"],)
    return found


async def _references(db: Database) -> set[tuple[str, str]]:
    """(table, the table it references) for every foreign key."""
    if db.dialect == "sqlite":
        names = [r[0] for r in await db.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found = set()
        for name in names:
            for fk in await db.rows(f'PRAGMA foreign_key_list("{name}")'):
                found.add((name, fk["table"]))
        return found
    rows = await db.rows(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
    )
    return {(r[0], r[1]) for r in rows}


def _check_same_shape(source: dict[str, _Table], target: dict[str, _Table]) -> None:
    """Both sides at one schema version have the same tables and columns; else say how."""
    problems = [f"table {t} only in the source" for t in sorted(set(source) - set(target))]
    problems += [f"table {t} only in the target" for t in sorted(set(target) - set(source))]
    for name in sorted(set(source) & set(target)):
        if set(source[name].columns) != set(target[name].columns):
            only = sorted(set(source[name].columns) ^ set(target[name].columns))
            problems.append(f"table {name} differs in columns {', '.join(only)}")
    if problems:
        raise OperatorError("cannot copy, the schemas differ: " + "; ".join(problems))


def _dependency_order(tables: dict[str, _Table], references: set[tuple[str, str]]) -> list[str]:
    """Referenced tables before the tables that reference them (then by name)."""
    order: list[str] = []
    waiting = sorted(tables)
    while waiting:
        ready = [t for t in waiting if all(r in order or r == t for (f, r) in references if f == t)]
        if not ready:  # a cycle of foreign keys: none in pledgebot's schema
            raise OperatorError(f"cannot order the tables {', '.join(waiting)} by foreign keys")
        order += ready
        waiting = [t for t in waiting if t not in ready]
    return order


class _Snapshot(Protocol):
    """The source as of one moment: every read sees the same committed rows."""

    async def scalar(self, sql: str) -> Any: ...
    def batches(self, sql: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        """A query's rows, `COPY_BATCH` at a time (never all of them at once)."""
        ...


class _SQLiteSnapshot:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def scalar(self, sql: str) -> Any:
        rows = await self.conn.execute_fetchall(sql)
        return next(iter(rows))[0]

    async def batches(self, sql: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        async with self.conn.execute(sql) as cursor:
            while batch := await cursor.fetchmany(COPY_BATCH):
                yield [tuple(r) for r in batch]


class _PgSnapshot:
    def __init__(self, conn: Any) -> None:  # an asyncpg.Connection
        self.conn = conn

    async def scalar(self, sql: str) -> Any:
        return await self.conn.fetchval(sql)

    async def batches(self, sql: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        cursor = await self.conn.cursor(sql)  # server-side: rows come as they are fetched
        while batch := await cursor.fetch(COPY_BATCH):
            yield [tuple(r) for r in batch]


@contextlib.asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[_Snapshot]:
    """Reads of `db` inside one read-only transaction: on PostgreSQL REPEATABLE READ, one
    snapshot taken at the first read, whatever other sessions commit meanwhile (a SQLite
    source is held exclusively, and a read transaction is one snapshot there too)."""
    if isinstance(db, SQLiteDatabase):
        await db.reader.execute("BEGIN")
        try:
            yield _SQLiteSnapshot(db.reader)
        finally:
            if db.reader.in_transaction:
                await db.reader.execute("ROLLBACK")
        return
    from bot.database_pg import PostgresDatabase

    assert isinstance(db, PostgresDatabase)
    async with (
        db.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        yield _PgSnapshot(conn)


async def _count_rows(db: Database | _Snapshot, table: str) -> int:
    return int(await db.scalar(f'SELECT count(*) FROM "{table}"'))


async def _copy_table(
    src: _Snapshot, dst: Database, name: str, source: _Table, target: _Table
) -> None:
    """One table in one transaction, ids kept, `COPY_BATCH` rows at a time; a failure
    names the table."""
    columns = source.columns
    listed = ", ".join(f'"{c}"' for c in columns)
    insert = f'INSERT INTO "{name}" ({listed}) VALUES ({", ".join("?" for _ in columns)})'
    try:
        async with dst.transaction() as tx:
            copied = 0
            async for batch in src.batches(f'SELECT {listed} FROM "{name}"'):
                await tx.executemany(insert, batch)
                copied += len(batch)
            for column in target.identities:  # next id: past the largest copied
                await tx.scalar(
                    f"SELECT setval(pg_get_serial_sequence(?, ?), "
                    f'coalesce(max("{column}"), 0) + 1, false) FROM "{name}"',
                    (name, column),
                )
            if target.fts5 and copied:  # one b-tree per term, as the store's rebuild leaves
                await tx.execute(f'INSERT INTO "{name}"("{name}") VALUES (\'optimize\')')
    except driver_errors() as error:
        raise OperatorError(f"copy failed at table {name} (nothing of it kept): {error}") from None


# -- helpers ------------------------------------------------------------------------------


def _same_owner_and_mode(new: Path, old: Path) -> None:
    """The restored file stays usable by the bot's user, even when root ran the restore."""
    status = old.stat()
    os.chmod(new, status.st_mode & 0o777)
    with contextlib.suppress(PermissionError):  # only root may give a file away
        os.chown(new, status.st_uid, status.st_gid)


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode={mode}",
            uri=True,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_SECONDS,
        )
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # is it a database?
    except sqlite3.Error as error:
        raise OperatorError(f"cannot open {path}: {error}") from None
    return conn


def _integrity_problems(conn: sqlite3.Connection) -> str:
    found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    return "" if found == ["ok"] else "; ".join(found[:5])


def _count(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # an empty, unmigrated database
        return 0


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk before reporting success."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
