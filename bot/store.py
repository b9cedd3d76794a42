"""The one SQLite file: the connection, content and status queries, full-text search.

Migrations live in `bot.migrations`; schedule queries in `bot.briefings.schedules`.

A single long-lived aiosqlite connection serves the whole process. Writes go through
`transaction()`, which serialises writers with a lock because aiosqlite shares one
connection between coroutines.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite

from bot.errors import StoreError
from bot.migrations import migrate
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

BUSY_TIMEOUT_MS = 5000

# The hash of the loaded content files (written by bot.pledges.content with each load).
CONTENT_FINGERPRINT_KEY = "content_fingerprint"

# Search reads at most this many words of a query: enough for any real question,
# and it bounds the work a 10,000-character paste can cause.
MAX_QUERY_TOKENS = 16
_WORD = re.compile(r"\w+")


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


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
    """Writes go through one connection, reads through another.

    With WAL, readers never wait for writers; a second connection keeps it so inside
    this process too. A write waiting for another process's lock (SQLite's busy handler
    sleeps in the connection's thread) would otherwise hold up every member's read.
    """

    def __init__(
        self, conn: aiosqlite.Connection, path: Path, reader: aiosqlite.Connection | None = None
    ) -> None:
        self._conn = conn
        self._reader = reader or conn
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
            store._reader = await _connect_reader(path)
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        if self._reader is not self._conn:
            await self._reader.close()
        await self._conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        return self._conn

    async def schema_version(self) -> int:
        return int(await self._scalar("PRAGMA user_version"))

    async def _migrate(self) -> None:
        await migrate(self._conn, self.path)

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
        return list(await self._reader.execute_fetchall(sql, params))

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
            "h.note AS status_note, h.evidence_url AS status_evidence, "
            "h.changed_by AS status_changed_by "
            "FROM pledges p JOIN statements s ON s.id = p.statement_id "
            "LEFT JOIN status_history h ON h.id = "
            "(SELECT max(id) FROM status_history WHERE pledge_id = p.id) "
            f"WHERE {where} ORDER BY s.id, p.position",
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

    async def claims(self, *, statement: str | None = None, slug: str | None = None) -> list[Claim]:
        where, params = _where([("s.slug = ?", statement), ("c.slug = ?", slug)])
        rows = await self.rows(
            f"SELECT c.*, s.slug AS statement_slug, {_quotes_json('claim', 'c')} "
            f"FROM claims c JOIN statements s ON s.id = c.statement_id WHERE {where} "
            "ORDER BY s.id, c.position",
            params,
        )
        return [
            Claim(
                slug=r["slug"],
                statement_slug=r["statement_slug"],
                title=r["title"],
                summary=r["summary"],
                quotes=_json_list(r["quotes_json"]),
                attribution=r["attribution"],
            )
            for r in rows
        ]

    async def claim(self, slug: str) -> Claim | None:
        found = await self.claims(slug=slug)
        return found[0] if found else None

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

        All words must match; when that finds nothing, any word may match. Up to
        `EXACT_RANK_WORDS` words must all match, so few rows match and every match is
        ranked. A shorter query (or any-word matching) can match thousands, so only a
        bounded candidate set is ranked (`_BOUNDED_SEARCH`).
        """
        tried = None
        for any_word in (False, True):
            query = fts_query(text, any_word=any_word)
            if query is None or query == tried:
                return []  # nothing to search, or one word: any-word is the same query
            tried = query
            if not any_word and len(_WORD.findall(text)) > EXACT_RANK_WORDS:
                rows = await self.rows(_EXACT_SEARCH, (query, limit))
            else:
                window = max(SEARCH_WINDOW, 3 * limit)
                rows = await self.rows(_BOUNDED_SEARCH, (query, limit, window))
            if rows:
                return [
                    SearchHit(
                        cast(RecordKind, r["kind"]),
                        r["slug"],
                        r["title"],
                        r["snippet"],
                        r["rank"],
                        r["statement"],
                    )
                    for r in rows
                ]
        return []


# Search. bm25 weights: kind and slug 0, title 10, body 3, quotes 1 (title matches first).
_RANKED = (
    "SELECT kind, slug, title, statement, "
    "snippet(search_index, -1, '**', '**', '…', 16) AS snippet, "
    "bm25(search_index, 0, 0, 10.0, 3.0, 1.0) AS rank FROM search_index "
)
# Every match ranked: for queries of many words, which few rows match. bm25's fixed cost
# (a pass over each word's whole doclist) dominates there, and a candidate pass would
# only add a second merge of the same doclists.
EXACT_RANK_WORDS = 3
_EXACT_SEARCH = _RANKED + "WHERE search_index MATCH ?1 ORDER BY rank LIMIT ?2"
# Rank only what can make the page. Index rowids follow document length (shortest
# first, `_rebuild_search_index`), and bm25 favours shorter documents, so the first
# matches in rowid order (a window of ?3, at least `SEARCH_WINDOW`) are the likely
# best; FTS5 stops after them instead of scoring (and snippeting) every match. Title
# matches further on are added (the first ?3 of them), so a title match is never lost
# among thousands of body matches. Only those candidates get bm25 and a snippet; the
# ranking pass stops at the last candidate's rowid. When fewer than ?3 rows match,
# all are candidates and the ranking is exact.
SEARCH_WINDOW = 30
_BOUNDED_SEARCH = (
    "WITH window(id) AS ("
    " SELECT rowid FROM search_index WHERE search_index MATCH ?1 LIMIT ?3), "
    "bound(n, last) AS (SELECT count(*), max(id) FROM window), "
    "candidates(id) AS ("
    " SELECT id FROM window UNION ALL SELECT * FROM ("
    "  SELECT rowid FROM search_index WHERE search_index MATCH ("
    "   SELECT CASE WHEN n >= ?3 THEN '{title}: (' || ?1 || ')' ELSE '\"\"' END FROM bound)"
    "  AND rowid > (SELECT last FROM bound) LIMIT ?3)) "
    + _RANKED
    + "WHERE search_index MATCH ?1 AND rowid <= (SELECT max(id) FROM candidates) "
    "AND +rowid IN candidates ORDER BY rank LIMIT ?2"
)


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
        slug=r["slug"],
        title=r["title"],
        publisher=r["publisher"],
        date=r["date"],
        url=r["url"],
        summary=r["summary"],
        source_text=r["source_text"],
        speaker=r["speaker"],
        source_sha256=r["source_sha256"],
        edition=r["edition"],
        edited=r["edited"],
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
        quotes=_json_list(r["quotes_json"]),
        pledged_by=r["pledged_by"],
        condition=r["condition"],
        partners=_json_list(r["partners"]),
        status=r["status"],
        status_changed_at=r["status_changed_at"],
        status_note=r["status_note"] or "",
        status_evidence=r["status_evidence"] or "",
        status_changed_by=r["status_changed_by"] or "",
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
        "publisher": s.publisher,
        "author": s.publisher,  # read by processes still running an older pledgebot
        "speaker": s.speaker,
        "date": s.date,
        "url": s.url,
        "summary": s.summary,
        "source_path": content.source_path,
        "source_text": s.source_text,
        "source_sha256": s.source_sha256,
        "edition": s.edition,
        "edited": s.edited,
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
            "pledged_by": p.pledged_by,
            "condition": p.condition,
            "partners": json.dumps(list(p.partners)),
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
            "title": c.title,
            "summary": c.summary,
            "attribution": c.attribution,
        }
        claim_id = await _upsert(conn, "claims", values, list(values)[1:])
        await _set_quotes(conn, "claim", claim_id, c.quotes)


async def _rebuild_search_index(conn: aiosqlite.Connection) -> None:
    """Rebuild the index from the content tables.

    Rowids follow document length, shortest first (ties by kind and slug, so a rebuild
    of the same content gives the same rowids): the bounded search ranks the first
    matches in rowid order, and bm25 favours short documents.
    """
    await conn.execute("DELETE FROM search_index")
    quotes = (
        "(SELECT group_concat(text, ' ') FROM quotes q "
        "WHERE q.record_kind = '{kind}' AND q.record_id = t.id)"
    )
    statement = "(SELECT slug FROM statements s WHERE s.id = t.statement_id)"
    records = (
        "SELECT 'pledge' AS kind, t.slug, t.title AS title, "
        "t.summary || ' ' || t.detail || ' ' || t.scope || ' ' || t.pledged_by || ' ' "
        "|| t.condition || ' ' || t.partners AS body, "
        f"{quotes.format(kind='pledge')} AS quotes, {statement} AS statement FROM pledges t "
        "UNION ALL "
        "SELECT 'power', t.slug, t.name || ' ' || t.abbreviation, "
        "t.summary || ' ' || t.detail || ' ' || t.who_applies || ' ' || t.routes || ' ' "
        "|| t.restrictions || ' ' || t.history || ' ' || t.change_pledged, "
        f"{quotes.format(kind='power')}, {statement} FROM powers t "
        "UNION ALL "
        "SELECT 'claim', t.slug, t.title, t.summary || ' ' || t.attribution, "
        f"{quotes.format(kind='claim')}, {statement} FROM claims t"
    )
    await conn.execute(
        "INSERT INTO search_index(rowid, kind, slug, title, body, quotes, statement) "
        "SELECT row_number() OVER (ORDER BY length(title) + length(body) "
        "+ length(coalesce(quotes, '')), kind, slug), kind, slug, title, body, quotes, "
        f"statement FROM ({records})"
    )
    # One b-tree per term instead of the segments a bulk rebuild leaves (and no delete
    # markers from the old rows): every doclist read by a search is one seek.
    await conn.execute("INSERT INTO search_index(search_index) VALUES ('optimize')")
