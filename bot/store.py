"""The one SQLite file: schema migrations, content queries and full-text search.

A single long-lived aiosqlite connection serves the whole process. Writes go through
`transaction()`, which serialises writers with a lock because aiosqlite shares one
connection between coroutines.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite

from bot.models import (
    STATUS_BY_SLUG,
    Claim,
    Pledge,
    Power,
    RecordKind,
    SearchHit,
    Statement,
    StatementContent,
    StatusChange,
)

# Append-only: never edit a migration that has shipped; add a new one.
# A str is SQL; any other entry names a Python step below (data the SQL cannot reshape).
MIGRATIONS: tuple[str, ...] = (
    # 1: content and status history
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE statements (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        author TEXT NOT NULL,
        date TEXT NOT NULL DEFAULT '',
        url TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        source_path TEXT NOT NULL,
        source_text TEXT NOT NULL
    );
    CREATE TABLE pledges (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        statement_id INTEGER NOT NULL REFERENCES statements(id),
        position INTEGER NOT NULL,
        title TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT NOT NULL,
        scope TEXT NOT NULL,
        actors TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'not-yet-rated',
        status_changed_at TEXT
    );
    CREATE TABLE powers (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        statement_id INTEGER NOT NULL REFERENCES statements(id),
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        abbreviation TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL,
        detail TEXT NOT NULL,
        who_applies TEXT NOT NULL DEFAULT '[]',
        routes TEXT NOT NULL DEFAULT '[]',
        restrictions TEXT NOT NULL DEFAULT '[]',
        history TEXT NOT NULL DEFAULT '',
        change_pledged TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE power_pledges (
        power_id INTEGER NOT NULL REFERENCES powers(id) ON DELETE CASCADE,
        pledge_id INTEGER NOT NULL REFERENCES pledges(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        PRIMARY KEY (power_id, pledge_id)
    );
    CREATE TABLE claims (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        statement_id INTEGER NOT NULL REFERENCES statements(id),
        position INTEGER NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE quotes (
        record_kind TEXT NOT NULL CHECK (record_kind IN ('pledge', 'power', 'claim')),
        record_id INTEGER NOT NULL,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (record_kind, record_id, position)
    );
    CREATE TABLE status_history (
        id INTEGER PRIMARY KEY,
        pledge_id INTEGER NOT NULL REFERENCES pledges(id),
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        changed_at TEXT NOT NULL,
        note TEXT NOT NULL,
        evidence_url TEXT NOT NULL DEFAULT '',
        changed_by TEXT NOT NULL
    );
    CREATE INDEX status_history_pledge ON status_history(pledge_id, id);
    CREATE TRIGGER status_history_no_update BEFORE UPDATE ON status_history
    BEGIN SELECT RAISE(ABORT, 'status history is append-only'); END;
    CREATE TRIGGER status_history_no_delete BEFORE DELETE ON status_history
    BEGIN SELECT RAISE(ABORT, 'status history is append-only'); END;
    """,
    # 2: full-text search over everything a member might look for
    """
    CREATE VIRTUAL TABLE search_index USING fts5(
        kind UNINDEXED, slug UNINDEXED, title, body, quotes,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    """,
    # 3: briefings: per-server settings, schedules, deliveries and the change log
    """
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        timezone TEXT,
        moderator_role_id INTEGER
    );
    CREATE TABLE schedules (
        id INTEGER PRIMARY KEY,
        guild_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        created_by INTEGER NOT NULL,
        timezone TEXT NOT NULL,
        time_of_day TEXT,
        days TEXT,
        cron TEXT,
        run_date TEXT,
        content TEXT NOT NULL,
        role_id INTEGER,
        state TEXT NOT NULL DEFAULT 'active'
            CHECK (state IN ('active', 'paused', 'cancelled', 'finished')),
        pause_reason TEXT,
        spotlight_cursor INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        active_since TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX schedules_guild ON schedules(guild_id, state);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        schedule_id INTEGER NOT NULL REFERENCES schedules(id),
        slot TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('claimed', 'sent', 'failed', 'missed', 'skipped')),
        claimed_at TEXT NOT NULL,
        finished_at TEXT,
        message_id INTEGER,
        late INTEGER NOT NULL DEFAULT 0,
        manual INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        UNIQUE (schedule_id, slot)
    );
    CREATE INDEX deliveries_state ON deliveries(state, claimed_at);
    CREATE TABLE schedule_changes (
        id INTEGER PRIMARY KEY,
        schedule_id INTEGER NOT NULL REFERENCES schedules(id),
        changed_by INTEGER NOT NULL,
        changed_at TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 4: the engine reads the store at fire time: slots are UTC instants (comparable across
    # zones), each delivery remembers when it was first sent (nonce window), one cursor
    # serves spotlight and changes, and a shared rate budget for every process.
    """
    ALTER TABLE schedules RENAME COLUMN spotlight_cursor TO cursor;
    ALTER TABLE deliveries ADD COLUMN attempted_at TEXT;
    CREATE INDEX schedule_changes_schedule ON schedule_changes(schedule_id, id);
    CREATE TABLE rate_budget (name TEXT PRIMARY KEY, next_at REAL NOT NULL);
    """,
    "_slots_as_instants",
)
SCHEMA_VERSION = len(MIGRATIONS)

BUSY_TIMEOUT_MS = 5000
SLOT_FORMAT = "%Y-%m-%dT%H:%MZ"

# The hash of the loaded content files (written by bot.content with each load).
CONTENT_FINGERPRINT_KEY = "content_fingerprint"

# Search reads at most this many words of a query: enough for any real question,
# and it bounds the work a 10,000-character paste can cause.
MAX_QUERY_TOKENS = 16
_WORD = re.compile(r"\w+")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class StoreError(Exception):
    """A store problem worth showing to an operator (bad path, newer schema, ...)."""


def fts_query(text: str, *, any_word: bool = False) -> str | None:
    """Turn user text into a safe FTS5 query: every word quoted, the last a prefix.

    Quoting makes FTS5 operators (AND, NEAR, *, column filters) plain words, so no
    user text can raise a syntax error.
    """
    words = _WORD.findall(text)[:MAX_QUERY_TOKENS]
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return (" OR " if any_word else " ").join(quoted)


class Store:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the database at `path`."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = aiosqlite.Row
        store = cls(conn, path)
        try:
            # busy_timeout first: a second process may be switching the file to WAL now
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await store._migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        await self._conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        return self._conn

    async def schema_version(self) -> int:
        return int(await self._scalar("PRAGMA user_version"))

    async def _migrate(self) -> None:
        """Apply each missing migration in its own write transaction.

        The version is read again inside that transaction, so processes starting together
        on one file never apply the same migration twice. An up-to-date file takes no write
        lock: readers start while another process writes.
        """
        if await self.schema_version() == SCHEMA_VERSION:
            return
        while True:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = await self.schema_version()
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"database {self.path} has schema version {version}, newer than this "
                        f"pledgebot understands ({SCHEMA_VERSION}); upgrade pledgebot"
                    )
                if version == SCHEMA_VERSION:
                    await self._conn.execute("COMMIT")
                    return
                step = MIGRATIONS[version]
                if step.startswith("_"):
                    await PYTHON_MIGRATIONS[step](self._conn)
                else:
                    # executescript would COMMIT on its own; run statements one by one
                    # so each migration and its version bump are one transaction.
                    for statement in _split_sql(step):
                        await self._conn.execute(statement)
                await self._conn.execute(f"PRAGMA user_version = {version + 1}")
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time; rolled back whole on any error."""
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = await self.rows(sql, params)
        return found[0][0] if found else None

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """All rows of a read, in one trip to aiosqlite's thread (reads are the hot path)."""
        return list(await self._conn.execute_fetchall(sql, params))

    # -- meta ---------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        value = await self._scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        async with self.transaction() as conn:
            await _set_meta(conn, {key: value})

    # -- content: writes ----------------------------------------------------------

    async def replace_content(
        self, contents: Iterable[StatementContent], *, meta: Mapping[str, str]
    ) -> None:
        """Upsert statements and their records by slug, and `meta`, in one transaction.

        Status and status history belong to operators, not content files, so they are
        never touched here.
        """
        async with self.transaction() as conn:
            for content in contents:
                await _upsert_statement_content(conn, content)
            await _rebuild_search_index(conn)
            await _set_meta(conn, meta)

    # -- content: reads -----------------------------------------------------------

    async def statements(self) -> list[Statement]:
        rows = await self.rows("SELECT * FROM statements ORDER BY id")
        return [_statement(r) for r in rows]

    async def statement_content(self, slug: str) -> StatementContent | None:
        rows = await self.rows("SELECT * FROM statements WHERE slug = ?", (slug,))
        if not rows:
            return None
        return StatementContent(
            statement=_statement(rows[0]),
            source_path=rows[0]["source_path"],
            pledges=tuple(await self.pledges(statement=slug)),
            powers=tuple(await self.powers(statement=slug)),
            claims=tuple(await self.claims(statement=slug)),
        )

    async def pledges(
        self,
        *,
        statement: str | None = None,
        status: str | None = None,
        slugs: Sequence[str] | None = None,
    ) -> list[Pledge]:
        where, params = _where([("s.slug = ?", statement), ("p.status = ?", status)])
        if slugs is not None:
            where += f" AND p.slug IN ({','.join('?' * len(slugs))})"
            params.extend(slugs)
        rows = await self.rows(
            f"SELECT p.*, s.slug AS statement_slug, {_quotes_json('pledge', 'p')}, "
            "(SELECT note FROM status_history h WHERE h.pledge_id = p.id "
            "ORDER BY h.id DESC LIMIT 1) AS status_note "
            f"FROM pledges p JOIN statements s ON s.id = p.statement_id WHERE {where} "
            "ORDER BY s.id, p.position",
            params,
        )
        return [_pledge(r) for r in rows]

    async def pledge(self, slug: str) -> Pledge | None:
        found = await self.pledges(slugs=[slug])
        return found[0] if found else None

    async def powers(self, *, statement: str | None = None, slug: str | None = None) -> list[Power]:
        where, params = _where([("s.slug = ?", statement), ("w.slug = ?", slug)])
        rows = await self.rows(
            f"SELECT w.*, s.slug AS statement_slug, {_quotes_json('power', 'w')}, "
            "(SELECT json_group_array(slug) FROM (SELECT p.slug FROM power_pledges pp "
            "JOIN pledges p ON p.id = pp.pledge_id WHERE pp.power_id = w.id "
            "ORDER BY pp.position)) AS pledges_json "
            f"FROM powers w JOIN statements s ON s.id = w.statement_id WHERE {where} "
            "ORDER BY s.id, w.position",
            params,
        )
        return [_power(r) for r in rows]

    async def power(self, slug: str) -> Power | None:
        found = await self.powers(slug=slug)
        return found[0] if found else None

    async def claims(self, *, statement: str | None = None) -> list[Claim]:
        where, params = _where([("s.slug = ?", statement)])
        rows = await self.rows(
            f"SELECT c.*, s.slug AS statement_slug, {_quotes_json('claim', 'c')} "
            f"FROM claims c JOIN statements s ON s.id = c.statement_id WHERE {where} "
            "ORDER BY s.id, c.position",
            params,
        )
        return [
            Claim(r["slug"], r["statement_slug"], r["summary"], _json_list(r["quotes_json"]))
            for r in rows
        ]

    async def content_signature(self) -> tuple[str | None, int | None]:
        """Changes whenever content is loaded or a status changes, by any process."""
        (row,) = await self.rows(
            "SELECT (SELECT value FROM meta WHERE key = ?), (SELECT max(id) FROM status_history)",
            (CONTENT_FINGERPRINT_KEY,),
        )
        return row[0], row[1]

    async def counts(self) -> dict[str, int]:
        tables = ("statements", "pledges", "powers", "claims", "quotes", "status_history")
        return {t: int(await self._scalar(f"SELECT count(*) FROM {t}")) for t in tables}

    # -- status -------------------------------------------------------------------

    async def set_status(
        self,
        slug: str,
        status: str,
        *,
        note: str,
        changed_by: str,
        evidence_url: str = "",
        when: str | None = None,
    ) -> StatusChange:
        """Change a pledge's status and append the change to its history."""
        if status not in STATUS_BY_SLUG:
            raise StoreError(f"unknown status {status!r}")
        when = when or utc_now()
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT id, status FROM pledges WHERE slug = ?", (slug,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise StoreError(f"no pledge with slug {slug!r}")
            await conn.execute(
                "UPDATE pledges SET status = ?, status_changed_at = ? WHERE id = ?",
                (status, when, row["id"]),
            )
            await conn.execute(
                "INSERT INTO status_history(pledge_id, from_status, to_status, changed_at, "
                "note, evidence_url, changed_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row["id"], row["status"], status, when, note, evidence_url, changed_by),
            )
        return StatusChange(slug, row["status"], status, when, note, evidence_url, changed_by)

    async def status_history(
        self, slug: str | None = None, *, since: str | None = None, after_id: int | None = None
    ) -> list[StatusChange]:
        """Status changes, oldest first; for one pledge, or all changed after `since` or
        recorded after the change numbered `after_id`."""
        where, params = _where(
            [("p.slug = ?", slug), ("h.changed_at > ?", since), ("h.id > ?", after_id)]
        )
        rows = await self.rows(
            "SELECT h.*, p.slug FROM status_history h JOIN pledges p ON p.id = h.pledge_id "
            f"WHERE {where} ORDER BY h.changed_at, h.id",
            params,
        )
        return [
            StatusChange(
                r["slug"],
                r["from_status"],
                r["to_status"],
                r["changed_at"],
                r["note"],
                r["evidence_url"],
                r["changed_by"],
                r["id"],
            )
            for r in rows
        ]

    # -- search -------------------------------------------------------------------

    async def search(self, text: str, *, limit: int = 10) -> list[SearchHit]:
        """Ranked matches for any user text; never raises on what the user typed.

        All words must match; when that finds nothing, any word may match.
        """
        for any_word in (False, True):
            query = fts_query(text, any_word=any_word)
            if query is None:
                return []
            rows = await self.rows(
                "SELECT kind, slug, title, "
                "snippet(search_index, -1, '**', '**', '…', 16) AS snippet, "
                "bm25(search_index, 0, 0, 10.0, 3.0, 1.0) AS rank "
                "FROM search_index WHERE search_index MATCH ? ORDER BY rank LIMIT ?",
                (query, limit),
            )
            if rows:
                return [
                    SearchHit(
                        cast(RecordKind, r["kind"]), r["slug"], r["title"], r["snippet"], r["rank"]
                    )
                    for r in rows
                ]
        return []


def slot_key(instant: datetime) -> str:
    """A scheduled slot's key: its UTC instant to the minute, so keys order like instants
    whatever the schedule's zone was when each was posted."""
    return instant.astimezone(UTC).strftime(SLOT_FORMAT)


def slot_at(key: str) -> datetime:
    """The instant a slot key names; ValueError for other keys (manual posts)."""
    return datetime.strptime(key, SLOT_FORMAT).replace(tzinfo=UTC)


async def _slots_as_instants(conn: aiosqlite.Connection) -> None:
    """Migration 4: local slot keys ("2026-10-21T09:00" in the schedule's zone) to instants."""
    rows = await conn.execute_fetchall(
        "SELECT d.id, d.slot, s.timezone FROM deliveries d "
        "JOIN schedules s ON s.id = d.schedule_id WHERE d.manual = 0"
    )
    updates = []
    for delivery_id, slot, zone in rows:
        try:
            local = datetime.strptime(slot, "%Y-%m-%dT%H:%M")
            instant = local.replace(tzinfo=ZoneInfo(zone), fold=0)
        except (ValueError, ZoneInfoNotFoundError):
            continue  # an unreadable row stays as it was
        updates.append((slot_key(instant), delivery_id))
    await conn.executemany("UPDATE deliveries SET slot = ? WHERE id = ?", updates)


PYTHON_MIGRATIONS: dict[str, Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    "_slots_as_instants": _slots_as_instants,
}


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current).strip()
        if sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if "".join(current).strip():
        statements.append("\n".join(current))
    return statements


def _where(conditions: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """A WHERE clause from (sql, value) pairs, leaving out those whose value is None."""
    used = [(sql, value) for sql, value in conditions if value is not None]
    return " AND ".join(["1", *(sql for sql, _ in used)]), [value for _, value in used]


async def _set_meta(conn: aiosqlite.Connection, values: Mapping[str, str]) -> None:
    await conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def _json_list(value: str) -> tuple[str, ...]:
    return tuple(json.loads(value))


def _statement(r: aiosqlite.Row) -> Statement:
    return Statement(
        r["slug"], r["title"], r["author"], r["date"], r["url"], r["summary"], r["source_text"]
    )


def _quotes_json(kind: RecordKind, alias: str) -> str:
    """A column with a record's quotes as a JSON array, in order: one query per read."""
    return (
        "(SELECT json_group_array(text) FROM (SELECT text FROM quotes q "
        f"WHERE q.record_kind = '{kind}' AND q.record_id = {alias}.id ORDER BY q.position)) "
        "AS quotes_json"
    )


def _pledge(r: aiosqlite.Row) -> Pledge:
    return Pledge(
        slug=r["slug"],
        statement_slug=r["statement_slug"],
        title=r["title"],
        summary=r["summary"],
        detail=r["detail"],
        scope=r["scope"],
        actors=_json_list(r["actors"]),
        quotes=_json_list(r["quotes_json"]),
        status=r["status"],
        status_changed_at=r["status_changed_at"],
        status_note=r["status_note"] or "",
    )


def _power(r: aiosqlite.Row) -> Power:
    return Power(
        slug=r["slug"],
        statement_slug=r["statement_slug"],
        name=r["name"],
        abbreviation=r["abbreviation"],
        summary=r["summary"],
        detail=r["detail"],
        who_applies=_json_list(r["who_applies"]),
        routes=_json_list(r["routes"]),
        restrictions=_json_list(r["restrictions"]),
        history=r["history"],
        change_pledged=r["change_pledged"],
        pledges=_json_list(r["pledges_json"]),
        quotes=_json_list(r["quotes_json"]),
    )


async def _upsert(
    conn: aiosqlite.Connection, table: str, values: dict[str, Any], update: Iterable[str]
) -> int:
    columns = list(values)
    sets = ", ".join(f"{c} = excluded.{c}" for c in update)
    async with conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(slug) DO UPDATE SET {sets} RETURNING id",
        list(values.values()),
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _set_quotes(
    conn: aiosqlite.Connection, kind: RecordKind, record_id: int, quotes: Sequence[str]
) -> None:
    await conn.execute(
        "DELETE FROM quotes WHERE record_kind = ? AND record_id = ? AND position >= ?",
        (kind, record_id, len(quotes)),
    )
    await conn.executemany(
        "INSERT INTO quotes(record_kind, record_id, position, text) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO UPDATE SET text = excluded.text",
        [(kind, record_id, i, q) for i, q in enumerate(quotes)],
    )


async def _upsert_statement_content(conn: aiosqlite.Connection, content: StatementContent) -> None:
    s = content.statement
    statement_values = {
        "slug": s.slug,
        "title": s.title,
        "author": s.author,
        "date": s.date,
        "url": s.url,
        "summary": s.summary,
        "source_path": content.source_path,
        "source_text": s.source_text,
    }
    statement_id = await _upsert(conn, "statements", statement_values, list(statement_values)[1:])
    pledge_ids: dict[str, int] = {}
    for position, p in enumerate(content.pledges):
        values = {
            "slug": p.slug,
            "statement_id": statement_id,
            "position": position,
            "title": p.title,
            "summary": p.summary,
            "detail": p.detail,
            "scope": p.scope,
            "actors": json.dumps(list(p.actors)),
        }
        pledge_ids[p.slug] = await _upsert(conn, "pledges", values, list(values)[1:])
        await _set_quotes(conn, "pledge", pledge_ids[p.slug], p.quotes)
    for position, w in enumerate(content.powers):
        values = {
            "slug": w.slug,
            "statement_id": statement_id,
            "position": position,
            "name": w.name,
            "abbreviation": w.abbreviation,
            "summary": w.summary,
            "detail": w.detail,
            "who_applies": json.dumps(list(w.who_applies)),
            "routes": json.dumps(list(w.routes)),
            "restrictions": json.dumps(list(w.restrictions)),
            "history": w.history,
            "change_pledged": w.change_pledged,
        }
        power_id = await _upsert(conn, "powers", values, list(values)[1:])
        await _set_quotes(conn, "power", power_id, w.quotes)
        await conn.execute("DELETE FROM power_pledges WHERE power_id = ?", (power_id,))
        for link_position, pledge_slug in enumerate(w.pledges):
            await conn.execute(
                "INSERT INTO power_pledges(power_id, pledge_id, position) "
                "SELECT ?, id, ? FROM pledges WHERE slug = ?",
                (power_id, link_position, pledge_slug),
            )
    for position, c in enumerate(content.claims):
        values = {
            "slug": c.slug,
            "statement_id": statement_id,
            "position": position,
            "summary": c.summary,
        }
        claim_id = await _upsert(conn, "claims", values, list(values)[1:])
        await _set_quotes(conn, "claim", claim_id, c.quotes)


async def _rebuild_search_index(conn: aiosqlite.Connection) -> None:
    """Rebuild the index from the content tables; rowids are derived so it is stable."""
    await conn.execute("DELETE FROM search_index")
    quotes = (
        "(SELECT group_concat(text, ' ') FROM quotes q "
        "WHERE q.record_kind = '{kind}' AND q.record_id = t.id)"
    )
    await conn.execute(
        "INSERT INTO search_index(rowid, kind, slug, title, body, quotes) "
        "SELECT t.id * 4 + 1, 'pledge', t.slug, t.title, "
        "t.summary || ' ' || t.detail || ' ' || t.scope || ' ' || t.actors, "
        f"{quotes.format(kind='pledge')} FROM pledges t"
    )
    await conn.execute(
        "INSERT INTO search_index(rowid, kind, slug, title, body, quotes) "
        "SELECT t.id * 4 + 2, 'power', t.slug, t.name || ' ' || t.abbreviation, "
        "t.summary || ' ' || t.detail || ' ' || t.who_applies || ' ' || t.routes || ' ' "
        "|| t.restrictions || ' ' || t.history || ' ' || t.change_pledged, "
        f"{quotes.format(kind='power')} FROM powers t"
    )
    await conn.execute(
        "INSERT INTO search_index(rowid, kind, slug, title, body, quotes) "
        "SELECT t.id * 4 + 3, 'claim', t.slug, '', t.summary, "
        f"{quotes.format(kind='claim')} FROM claims t"
    )
