"""The store: content and status queries, full-text search, over a `Database`.

Connections live in `bot.database` (SQLite's `SQLiteDatabase`) and `bot.database_pg`
(`PostgresDatabase`); migrations in `bot.migrations` / `bot.migrations_pg`; schedule
queries in `bot.briefings.schedules`. `Store.open` picks the backend from its location.

SQL here is written with `?` placeholders and kept portable where it can be; what is
bound to one dialect (search and its index, JSON and string aggregates, the schema
version) has a SQLite and a PostgreSQL variant side by side, chosen by `db.dialect`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from bot.database import Database, Row, SQLiteDatabase, Transaction
from bot.errors import StoreError
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

# The hash of the loaded content files (written by bot.pledges.content with each load).
CONTENT_FINGERPRINT_KEY = "content_fingerprint"

# Search reads at most this many words of a query: enough for any real question,
# and it bounds the work a 10,000-character paste can cause.
MAX_QUERY_TOKENS = 16
_WORD = re.compile(r"\w+")

# SQLite dialect: the schema version is SQLite's `user_version` (see bot.migrations).
_SCHEMA_VERSION_SQL = "PRAGMA user_version"


def database_location(location: Path | str) -> Path | str:
    """A SQLite file's `Path`, or a PostgreSQL DSN (a `str`), from a path or a URL.

    `sqlite:///data/p.db` is the relative path `data/p.db` and `sqlite:////srv/p.db` the
    absolute `/srv/p.db` (SQLAlchemy's spelling); `postgresql://` and `postgres://` URLs
    are returned as they are; any other string is a path.
    """
    if isinstance(location, Path):
        return location
    if location.startswith(_PG_SCHEMES):
        return location
    if location.startswith("sqlite:"):
        rest = location.removeprefix("sqlite:")
        if not rest.startswith("///") or len(rest) == 3:
            raise StoreError(f"a SQLite URL is sqlite:///path, not {location!r}")
        return Path(rest[3:])
    if "://" in location:
        raise StoreError(f"unknown database URL scheme: {location.split('://', 1)[0]!r}")
    return Path(location)


_PG_SCHEMES = ("postgresql://", "postgres://")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def fts_query(text: str, *, any_word: bool = False) -> str | None:
    """Turn user text into a safe FTS5 query: every word quoted, the last a prefix.

    Quoting makes FTS5 operators (AND, NEAR, *, column filters) plain words, so no
    user text can raise a syntax error. SQLite dialect (FTS5's query syntax).
    """
    words = _WORD.findall(text)[:MAX_QUERY_TOKENS]
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return (" OR " if any_word else " ").join(quoted)


class Store:
    """Content, statuses and search, read and written through a `Database`.

    Reads go through `rows` (on SQLite, a connection of their own, so they never wait
    behind a write); writes through `transaction()`, one at a time.
    """

    def __init__(self, db: Database, path: Path | None = None) -> None:
        self.db = db
        self.path = path  # the SQLite file; None for a server database

    @classmethod
    async def open(cls, location: Path | str) -> Store:
        """Open (creating if needed) and migrate the database at `location`.

        A `Path`, a plain path string or `sqlite:///path` is a SQLite file (as
        `database_location` reads it); `postgresql://...` (or `postgres://...`) is a
        PostgreSQL database.
        """
        where = database_location(location)
        if isinstance(where, Path):
            return cls(await SQLiteDatabase.open(where), where)
        from bot.database_pg import PostgresDatabase  # asyncpg only when it is used

        return cls(await PostgresDatabase.open(where))

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        if isinstance(self.db, SQLiteDatabase):
            return int(await self.scalar(_SCHEMA_VERSION_SQL))
        return int(await cast(Any, self.db).schema_version())

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """One write transaction at a time; rolled back whole on any error."""
        return self.db.transaction()

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of a read (reads are the hot path: one trip to the database)."""
        return await self.db.rows(sql, params)

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a read, or None (through `rows`)."""
        found = await self.rows(sql, params)
        return found[0][0] if found else None

    # -- meta ---------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        value = await self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        async with self.transaction() as tx:
            await _set_meta(tx, {key: value})

    # -- content: writes ----------------------------------------------------------

    async def replace_content(
        self, contents: Iterable[StatementContent], *, meta: Mapping[str, str]
    ) -> None:
        """Upsert statements and their records by slug, and `meta`, in one transaction.

        Status and status history belong to operators, not content files, so they are
        never touched here.
        """
        async with self.transaction() as tx:
            for content in contents:
                await _upsert_statement_content(tx, content)
            await _rebuild_search_index(tx, self.db.dialect)
            await _set_meta(tx, meta)

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
        if slugs is not None and not slugs:
            return []  # `IN ()` is SQLite's alone
        if slugs is not None:
            where += f" AND p.slug IN ({','.join('?' * len(slugs))})"
            params.extend(slugs)
        quotes = _quotes_json("pledge", "p", self.db.dialect)
        rows = await self.rows(
            f"SELECT p.*, s.slug AS statement_slug, {quotes}, "
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
            f"SELECT w.*, s.slug AS statement_slug, {_quotes_json('power', 'w', self.db.dialect)}, "
            f"{_power_pledges_json('w', self.db.dialect)} "
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
            f"SELECT c.*, s.slug AS statement_slug, {_quotes_json('claim', 'c', self.db.dialect)} "
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

    async def latest_status_change(self) -> int:
        """The id of the newest status change (0 when none): a `changes` bookmark."""
        return int(await self.scalar("SELECT coalesce(max(id), 0) FROM status_history"))

    async def counts(self) -> dict[str, int]:
        tables = ("statements", "pledges", "powers", "claims", "quotes", "status_history")
        return {t: int(await self.scalar(f"SELECT count(*) FROM {t}")) for t in tables}

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
        async with self.transaction() as tx:
            found = await tx.rows("SELECT id, status FROM pledges WHERE slug = ?", (slug,))
            if not found:
                raise StoreError(f"no pledge with slug {slug!r}")
            row = found[0]
            await tx.execute(
                "UPDATE pledges SET status = ?, status_changed_at = ? WHERE id = ?",
                (status, when, row["id"]),
            )
            await tx.execute(
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
        """Ranked matches for any user text; never raises on what the user typed."""
        if self.db.dialect == "postgresql":
            rows = await self._search_pg(text, limit)
        else:
            rows = await self._search_fts5(text, limit)
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

    async def _search_fts5(self, text: str, limit: int) -> list[Row]:
        """SQLite dialect (FTS5): rows of kind, slug, title, snippet, rank, statement.

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
                return rows
        return []

    async def _search_pg(self, text: str, limit: int) -> list[Row]:
        """PostgreSQL dialect (full-text search): rows as `_search_fts5` gives them.

        All words must match; when that finds nothing, any word may match. As on
        SQLite, only a bounded candidate set is ranked (`_PG_SEARCH`), and only the page
        gets a snippet.
        """
        tried = None
        window = max(SEARCH_WINDOW, 3 * limit)
        for any_word in (False, True):
            query = pg_tsquery(text, any_word=any_word)
            if query is None or query == tried:
                return []
            tried = query
            in_title = pg_tsquery(text, any_word=any_word, weight="A")
            rows = await self.rows(_PG_SEARCH, (query, limit, in_title, window))
            if rows:
                return rows
        return []


def pg_tsquery(text: str, *, any_word: bool = False, weight: str = "") -> str | None:
    """Turn user text into a safe `to_tsquery` text: every word quoted, the last a prefix.

    The words are `fts_query`'s (`_WORD` tokens, at most `MAX_QUERY_TOKENS`), so they hold
    no quote, backslash or operator; quoting each still makes tsquery operators
    (`&`, `|`, `!`, `<->`, `:`) plain text. `weight` ("A": the title) limits each word
    to the parts of a document with that weight. PostgreSQL dialect.
    """
    words = _WORD.findall(text)[:MAX_QUERY_TOKENS]
    if not words:
        return None
    quoted = ["'" + w.replace("'", "''").replace("\\", "\\\\") + "'" for w in words]
    if weight:
        quoted = [f"{q}:{weight}" for q in quoted]
        quoted[-1] = quoted[-1][: -len(weight)] + "*" + weight
    else:
        quoted[-1] += ":*"
    return (" | " if any_word else " & ").join(quoted)


# Search: PostgreSQL dialect. Title (weight A) counts ten times the body (B), the body
# three times the quotes (C), as SQLite's bm25 weights; kind and slug are not indexed.
# The rank is negated so that, as with bm25, lower is better. Ranking is the cost (the
# GIN index finds thousands of matches in a few milliseconds; ts_rank_cd over all of them
# takes a hundred), so, as `_BOUNDED_SEARCH` does on SQLite, only candidates are ranked:
# the first ?4 matches in rowid order (shortest documents first) and the first ?4 whose
# title matches (?3: the same words, weight A only). Fewer than ?4 matches: all ranked.
_PG_SEARCH = (
    "WITH q(query, in_title) AS (SELECT to_tsquery('english', ?1), to_tsquery('english', ?3)), "
    "candidates(id) AS ("
    " (SELECT s.rowid FROM search_index s, q WHERE s.document @@ q.query "
    "  ORDER BY s.rowid LIMIT ?4) UNION "
    " (SELECT s.rowid FROM search_index s, q WHERE s.document @@ q.in_title "
    "  ORDER BY s.rowid LIMIT ?4)), "
    "hits AS (SELECT s.*, ts_rank_cd('{0.0, 0.1, 0.3, 1.0}', s.document, q.query) AS score "
    " FROM search_index s JOIN candidates c ON c.id = s.rowid, q "
    " ORDER BY score DESC, s.rowid LIMIT ?2) "
    "SELECT kind, slug, title, statement, ts_headline('english', "
    # the snippet comes from the body and quotes when they match (the title is shown
    # anyway), else from the title: as FTS5's snippet picks the best column
    " CASE WHEN ts_filter(document, '{b,c}') @@ q.query "
    " THEN concat_ws(' ', body, quotes) ELSE title END, q.query, "
    " 'StartSel=**, StopSel=**, MaxWords=16, MinWords=6, ShortWord=2, MaxFragments=1') "
    "AS snippet, -score AS rank FROM hits, q ORDER BY score DESC, rowid"
)


# Search: SQLite dialect (FTS5: MATCH, bm25, snippet, rowid, numbered ?N parameters).
# bm25 weights: kind and slug 0, title 10, body 3, quotes 1 (title matches first).
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
    return " AND ".join(["1 = 1", *(sql for sql, _ in used)]), [value for _, value in used]


async def _set_meta(tx: Transaction, values: Mapping[str, str]) -> None:
    await tx.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def _json_list(value: str) -> tuple[str, ...]:
    return tuple(json.loads(value))


def _statement(r: Row) -> Statement:
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


def _quotes_json(kind: RecordKind, alias: str, dialect: str) -> str:
    """A column with a record's quotes as a JSON array (text), in order: one query per
    read. SQLite's `json_group_array`, PostgreSQL's `json_agg`."""
    where = f"q.record_kind = '{kind}' AND q.record_id = {alias}.id"
    if dialect == "postgresql":
        return (
            f"(SELECT coalesce(json_agg(q.text ORDER BY q.position)::text, '[]') "
            f"FROM quotes q WHERE {where}) AS quotes_json"
        )
    return (
        "(SELECT json_group_array(text) FROM (SELECT text FROM quotes q "
        f"WHERE {where} ORDER BY q.position)) AS quotes_json"
    )


def _power_pledges_json(alias: str, dialect: str) -> str:
    """A column with the slugs of a power's pledges as a JSON array (text), in order.
    SQLite's `json_group_array`, PostgreSQL's `json_agg`."""
    links = f"power_pledges pp JOIN pledges p ON p.id = pp.pledge_id WHERE pp.power_id = {alias}.id"
    if dialect == "postgresql":
        return (
            "(SELECT coalesce(json_agg(p.slug ORDER BY pp.position)::text, '[]') "
            f"FROM {links}) AS pledges_json"
        )
    return (
        f"(SELECT json_group_array(slug) FROM (SELECT p.slug FROM {links} "
        "ORDER BY pp.position)) AS pledges_json"
    )


def _pledge(r: Row) -> Pledge:
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


def _power(r: Row) -> Power:
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
    tx: Transaction, table: str, values: dict[str, Any], update: Iterable[str]
) -> int:
    columns = list(values)
    sets = ", ".join(f"{c} = excluded.{c}" for c in update)
    record_id = await tx.scalar(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(slug) DO UPDATE SET {sets} RETURNING id",
        list(values.values()),
    )
    assert record_id is not None
    return int(record_id)


async def _set_quotes(
    tx: Transaction, kind: RecordKind, record_id: int, quotes: Sequence[str]
) -> None:
    await tx.execute(
        "DELETE FROM quotes WHERE record_kind = ? AND record_id = ? AND position >= ?",
        (kind, record_id, len(quotes)),
    )
    await tx.executemany(
        "INSERT INTO quotes(record_kind, record_id, position, text) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(record_kind, record_id, position) DO UPDATE SET text = excluded.text",
        [(kind, record_id, i, q) for i, q in enumerate(quotes)],
    )


async def _upsert_statement_content(tx: Transaction, content: StatementContent) -> None:
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
    statement_id = await _upsert(tx, "statements", statement_values, list(statement_values)[1:])
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
        pledge_ids[p.slug] = await _upsert(tx, "pledges", values, list(values)[1:])
        await _set_quotes(tx, "pledge", pledge_ids[p.slug], p.quotes)
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
        power_id = await _upsert(tx, "powers", values, list(values)[1:])
        await _set_quotes(tx, "power", power_id, w.quotes)
        await tx.execute("DELETE FROM power_pledges WHERE power_id = ?", (power_id,))
        for link_position, pledge_slug in enumerate(w.pledges):
            await tx.execute(
                "INSERT INTO power_pledges(power_id, pledge_id, position) "
                "SELECT CAST(? AS BIGINT), id, CAST(? AS INTEGER) FROM pledges WHERE slug = ?",
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
        claim_id = await _upsert(tx, "claims", values, list(values)[1:])
        await _set_quotes(tx, "claim", claim_id, c.quotes)


async def _rebuild_search_index(tx: Transaction, dialect: str) -> None:
    """Rebuild the index from the content tables (FTS5 on SQLite; on PostgreSQL a table
    whose stored tsvector the server computes, see `bot.migrations_pg`).

    Rowids follow document length, shortest first (ties by kind and slug, so a rebuild
    of the same content gives the same rowids): the bounded search ranks the first
    matches in rowid order, and bm25 favours short documents.
    """
    await tx.execute("DELETE FROM search_index")
    if dialect == "postgresql":
        quotes = (
            "(SELECT string_agg(q.text, ' ' ORDER BY q.position) FROM quotes q "
            "WHERE q.record_kind = '{kind}' AND q.record_id = t.id)"
        )
    else:
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
    await tx.execute(
        "INSERT INTO search_index(rowid, kind, slug, title, body, quotes, statement) "
        "SELECT row_number() OVER (ORDER BY length(title) + length(body) "
        "+ length(coalesce(quotes, '')), kind, slug), kind, slug, title, body, quotes, "
        f"statement FROM ({records}) AS records"
    )
    if dialect == "sqlite":
        # One b-tree per term instead of the segments a bulk rebuild leaves (and no delete
        # markers from the old rows): every doclist read by a search is one seek.
        await tx.execute("INSERT INTO search_index(search_index) VALUES ('optimize')")
