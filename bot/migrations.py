"""Schema migrations: append-only, numbered by SQLite's `user_version`.

The one place a second backend plugs its own schema into; the queries live in
`bot.store`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite

from bot.errors import StoreError
from bot.models import utc_slot

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
    # 6 (issue 9): content members can trust: statement provenance (speaker, publisher,
    # a pinned SHA-256 of the source text, the content's edition and date), who pledged
    # a pledge and on what condition, claims with titles and attribution, the statement
    # of each search hit. Old columns (author, actors) stay for processes still running
    # the previous version. The content fingerprint is forgotten so the next start
    # loads content again and rebuilds the search index.
    """
    ALTER TABLE statements ADD COLUMN publisher TEXT NOT NULL DEFAULT '';
    UPDATE statements SET publisher = author;
    ALTER TABLE statements ADD COLUMN speaker TEXT NOT NULL DEFAULT '';
    ALTER TABLE statements ADD COLUMN source_sha256 TEXT NOT NULL DEFAULT '';
    ALTER TABLE statements ADD COLUMN edition INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE statements ADD COLUMN edited TEXT NOT NULL DEFAULT '';
    ALTER TABLE pledges ADD COLUMN pledged_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE pledges ADD COLUMN condition TEXT NOT NULL DEFAULT '';
    ALTER TABLE pledges ADD COLUMN partners TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE claims ADD COLUMN title TEXT NOT NULL DEFAULT '';
    ALTER TABLE claims ADD COLUMN attribution TEXT NOT NULL DEFAULT '';
    DROP TABLE search_index;
    CREATE VIRTUAL TABLE search_index USING fts5(
        kind UNINDEXED, slug UNINDEXED, title, body, quotes, statement UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    DELETE FROM meta WHERE key = 'content_fingerprint';
    """,
    # 7 (issue 11): search index rowids follow document length (the bounded search ranks
    # the first matches in rowid order); forget the content fingerprint so the next start
    # loads content again and rebuilds the index in that order.
    """
    DELETE FROM meta WHERE key = 'content_fingerprint';
    """,
    # 8 (issue 11): prefix indexes for the last word of a search, which is prefix-matched
    # ("fund" finds funding): 2 to 5 characters, the lengths that expand to many words.
    # The index is emptied; the next start loads content again and rebuilds it.
    """
    DROP TABLE search_index;
    CREATE VIRTUAL TABLE search_index USING fts5(
        kind UNINDEXED, slug UNINDEXED, title, body, quotes, statement UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4 5'
    );
    DELETE FROM meta WHERE key = 'content_fingerprint';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: aiosqlite.Connection, path: Path) -> None:
    """Apply each missing migration in its own write transaction.

    The version is read again inside that transaction, so processes starting together
    on one file never apply the same migration twice. An up-to-date file takes no write
    lock: readers start while another process writes.
    """
    if await _version(conn) == SCHEMA_VERSION:
        return
    while True:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await _version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {path} has schema version {version}, newer than this "
                    f"pledgebot understands ({SCHEMA_VERSION}); upgrade pledgebot"
                )
            if version == SCHEMA_VERSION:
                await conn.execute("COMMIT")
                return
            step = MIGRATIONS[version]
            if step.startswith("_"):
                await PYTHON_MIGRATIONS[step](conn)
            else:
                # executescript would COMMIT on its own; run statements one by one
                # so each migration and its version bump are one transaction.
                for statement in split_sql(step):
                    await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version + 1}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise


async def _version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


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
        updates.append((utc_slot(instant), delivery_id))
    await conn.executemany("UPDATE deliveries SET slot = ? WHERE id = ?", updates)


PYTHON_MIGRATIONS: dict[str, Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    "_slots_as_instants": _slots_as_instants,
}


def split_sql(script: str) -> list[str]:
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
