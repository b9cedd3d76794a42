"""The store: content and status queries over a `Database` (`bot.storage`).

Search is `bot.search`; schedule queries are `bot.briefings.schedules`. `Store.open`
opens the database at a location (a SQLite file or a PostgreSQL URL) and migrates it.

SQL here is written with `?` placeholders and kept portable where it can be; what is
bound to one dialect (JSON and string aggregates) has a SQLite and a PostgreSQL variant
side by side, chosen by `db.dialect`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import search
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
from bot.storage import (
    Database,
    Row,
    Transaction,
    database_location,
    open_database,
    open_database_as_is,
)

# The hash of the loaded content files (written by bot.pledges.content with each load).
CONTENT_FINGERPRINT_KEY = "content_fingerprint"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
        """Open (creating if needed) and migrate the database at `location`: a `Path`, a
        plain path or `sqlite:///path` (a SQLite file), or `postgresql://...`."""
        where = database_location(location)
        return cls(await open_database(where), where if isinstance(where, Path) else None)

    @classmethod
    async def open_as_is(cls, location: Path | str) -> Store:
        """The store at `location`, read-only and unmigrated (`open_database_as_is`)."""
        where = database_location(location)
        return cls(await open_database_as_is(where), where if isinstance(where, Path) else None)

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        return await self.db.schema_version()

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
            await search.rebuild_search_index(tx, self.db.dialect)
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

    async def powers(
        self, *, statement: str | None = None, slug: str | None = None, pledge: str | None = None
    ) -> list[Power]:
        """`pledge`: only the powers that pledge relies on."""
        linked = (
            "w.id IN (SELECT pp.power_id FROM power_pledges pp "
            "JOIN pledges p ON p.id = pp.pledge_id WHERE p.slug = ?)"
        )
        where, params = _where([("s.slug = ?", statement), ("w.slug = ?", slug), (linked, pledge)])
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

    async def content_signature(self) -> tuple[str | None, int | None, int | None, int]:
        """Changes whenever content is loaded, a status changes, or a member's suggestion
        is received or decided (/about counts them), by any process."""
        (row,) = await self.rows(
            "SELECT (SELECT value FROM meta WHERE key = ?), (SELECT max(id) FROM status_history), "
            "(SELECT max(id) FROM suggestions), "
            "(SELECT count(*) FROM suggestions WHERE state = 'open')",
            (CONTENT_FINGERPRINT_KEY,),
        )
        return row[0], row[1], row[2], int(row[3])

    async def latest_status_change(self) -> int:
        """The id of the newest status change (0 when none): a `changes` bookmark."""
        return int(await self.scalar("SELECT coalesce(max(id), 0) FROM status_history"))

    async def counts(self) -> dict[str, int]:
        tables = ("statements", "pledges", "powers", "claims", "quotes", "status_history")
        return {t: int(await self.scalar(f"SELECT count(*) FROM {t}")) for t in tables}

    async def search(self, text: str, *, limit: int = 10) -> list[SearchHit]:
        """Ranked matches for any user text (`bot.search`); never raises on what was typed."""
        return await search.search(self.db, text, limit=limit)

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
        async with self.transaction() as tx:
            return await record_status(
                tx,
                slug,
                status,
                note=note,
                changed_by=changed_by,
                evidence_url=evidence_url,
                when=when,
            )

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
                r["suggestion_id"],
            )
            for r in rows
        ]


async def record_status(
    tx: Transaction,
    slug: str,
    status: str,
    *,
    note: str,
    changed_by: str,
    evidence_url: str = "",
    when: str | None = None,
    suggestion_id: int | None = None,
) -> StatusChange:
    """The one way a status changes, inside the caller's transaction: the pledge, its
    history entry (naming the member's suggestion it came from, if any) and the event
    followers hear of, so accepting a suggestion and its status change commit together."""
    if status not in STATUS_BY_SLUG:
        raise StoreError(f"unknown status {status!r}")
    when = when or utc_now()
    found = await tx.rows("SELECT id, status FROM pledges WHERE slug = ?", (slug,))
    if not found:
        raise StoreError(f"no pledge with slug {slug!r}")
    row = found[0]
    await tx.execute(
        "UPDATE pledges SET status = ?, status_changed_at = ? WHERE id = ?",
        (status, when, row["id"]),
    )
    history_id = await tx.scalar(
        "INSERT INTO status_history(pledge_id, from_status, to_status, changed_at, "
        "note, evidence_url, changed_by, suggestion_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "RETURNING id",
        (row["id"], row["status"], status, when, note, evidence_url, changed_by, suggestion_id),
    )
    await _record_event(tx, row["id"], "status", history_id=history_id)
    return StatusChange(
        slug,
        row["status"],
        status,
        when,
        note,
        evidence_url,
        changed_by,
        int(history_id),
        suggestion_id,
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


async def _record_event(
    tx: Transaction, pledge_id: int, kind: str, *, history_id: int | None = None
) -> None:
    """A change to a pledge that followers hear of (`bot.follows`), in the change's own
    transaction: recorded once, whoever delivers it."""
    await tx.execute(
        "INSERT INTO pledge_events(pledge_id, kind, history_id, recorded_at) VALUES (?, ?, ?, ?)",
        (pledge_id, kind, history_id, utc_now()),
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
    known = await tx.rows(
        "SELECT p.slug, p.summary FROM pledges p JOIN statements s ON s.id = p.statement_id "
        "WHERE s.slug = ?",
        (s.slug,),
    )
    summaries_before = {r["slug"]: r["summary"] for r in known}
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
        if known and p.slug not in summaries_before:
            await _record_event(tx, pledge_ids[p.slug], "added")
        elif known and summaries_before[p.slug] != p.summary:
            await _record_event(tx, pledge_ids[p.slug], "summary")
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
