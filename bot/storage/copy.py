"""`db copy`: every row of one pledgebot database into another, SQLite or PostgreSQL.

Beside the drivers, as Red keeps `migrate_to` beside its own: it reads and writes through
the `Database` interface, and knows each backend only where their catalogs differ (which
tables and columns exist, which foreign keys, FTS5's shadow tables, identity sequences).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from bot.config import location_name
from bot.errors import OperatorError, driver_errors
from bot.storage.base import Database
from bot.storage.files import exclusive
from bot.storage.sqlite import SQLiteDatabase

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
    from bot.storage.postgres import PostgresDatabase  # asyncpg only when PostgreSQL is used

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
    from bot.storage.postgres import PostgresDatabase

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
