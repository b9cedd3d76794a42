"""The store on real databases: migrations (SQLite files), and status history and
search on both backends (`any_store`: `[sqlite]` and `[postgresql]`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from bot.errors import StoreError
from bot.search import fts_query, pg_tsquery
from bot.storage import database_location
from bot.storage.schema import SCHEMA_VERSION, STEPS, resolved, split_sql
from bot.store import Store


def make_database_at_version(path: Path, version: int) -> None:
    """Build a database the way an older pledgebot left it."""
    conn = sqlite3.connect(path)
    for step in STEPS[:version]:
        for script in resolved(step, "sqlite"):
            if not isinstance(script, str):
                continue  # a Python step reshapes rows; this database has none yet
            for statement in split_sql(script):
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    if version >= 1:
        conn.execute("INSERT INTO meta(key, value) VALUES ('kept', 'yes')")
    conn.commit()
    conn.close()


# Migrations of SQLite files (PRAGMA user_version, WAL, foreign keys as a connection
# setting): SQLite-only; tests/test_database_pg.py covers PostgreSQL's migrations.


async def test_migrates_from_empty(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "new" / "p.db")
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.scalar("PRAGMA journal_mode") == "wal"
        async with store.transaction() as tx:  # foreign keys are a setting of the writer's
            assert await tx.scalar("PRAGMA foreign_keys") == 1
    finally:
        await store.close()


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
async def test_migrates_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    make_database_at_version(path, version)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        if version >= 1:
            assert await store.get_meta("kept") == "yes"
        assert await store.counts() == dict.fromkeys(
            ["statements", "pledges", "powers", "claims", "quotes", "status_history"], 0
        )
    finally:
        await store.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this pledgebot"):
        await Store.open(path)


async def test_reopening_is_a_no_op(tmp_path: Path) -> None:
    for _ in range(2):
        store = await Store.open(tmp_path / "p.db")
        assert await store.schema_version() == SCHEMA_VERSION
        await store.close()


async def test_the_powers_a_pledge_relies_on(any_loaded_store: Store) -> None:
    everything = await any_loaded_store.powers()
    for pledge in await any_loaded_store.pledges():
        linked = await any_loaded_store.powers(pledge=pledge.slug)
        assert linked == [p for p in everything if pledge.slug in p.pledges]
    assert await any_loaded_store.powers(pledge="scpo-organised-immigration-crime")
    assert await any_loaded_store.powers(pledge="no-such-pledge") == []


async def test_status_change_is_recorded_in_history(any_loaded_store: Store) -> None:
    change = await any_loaded_store.set_status(
        "europol-partnership",
        "in-progress",
        note="talks opened",
        evidence_url="https://example.org/evidence",
        changed_by="operator:test",
        when="2026-01-02T03:04:05+00:00",
    )
    assert (change.from_status, change.to_status) == ("not-yet-rated", "in-progress")
    pledge = await any_loaded_store.pledge("europol-partnership")
    assert pledge is not None
    assert pledge.status == "in-progress"
    assert pledge.status_changed_at == "2026-01-02T03:04:05+00:00"
    history = await any_loaded_store.status_history("europol-partnership")
    assert [(h.from_status, h.to_status, h.note) for h in history] == [
        ("not-yet-rated", "in-progress", "talks opened")
    ]
    assert await any_loaded_store.status_history(since="2026-01-02T03:04:05+00:00") == []


async def test_status_history_is_append_only(any_loaded_store: Store) -> None:
    await any_loaded_store.set_status("europol-partnership", "stalled", note="n", changed_by="t")
    for sql in ("UPDATE status_history SET note = 'x'", "DELETE FROM status_history"):
        with pytest.raises((sqlite3.IntegrityError, asyncpg.PostgresError), match="append-only"):
            async with any_loaded_store.transaction() as conn:
                await conn.execute(sql)
    assert len(await any_loaded_store.status_history("europol-partnership")) == 1


@pytest.mark.parametrize(
    ("slug", "status", "message"),
    [("no-such-pledge", "delivered", "no pledge"), ("europol-partnership", "done", "unknown")],
)
async def test_set_status_rejects_bad_input(
    any_loaded_store: Store, slug: str, status: str, message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        await any_loaded_store.set_status(slug, status, note="n", changed_by="t")
    assert await any_loaded_store.status_history() == []


HOSTILE_QUERIES = [
    '"',
    "*",
    "AND",
    "NEAR(",
    "s.60",
    "stop-and-search",
    "300,000",
    "gang's",
    "Europe’s",
    "🚤🚓",
    "x" * 10_000,
    "",
    "   ",
    "title:europol",
    "OR OR OR",
    "'; DROP TABLE pledges; --",
    "(((",
    "^europol",
    "\x00",
    "NOT",
    "-europol",
    "word " * 5_000,
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: repr(q[:20]))
async def test_search_never_raises_on_user_text(any_loaded_store: Store, query: str) -> None:
    hits = await any_loaded_store.search(query)
    assert isinstance(hits, list)
    assert len(hits) <= 10
    assert (await any_loaded_store.counts())["pledges"] == 6


@pytest.mark.parametrize(
    "query", ['"Europol', "Europol*", "Europol AND", "NEAR(Europol", "europol)", "EUROPOL"]
)
async def test_search_still_finds_through_syntax(any_loaded_store: Store, query: str) -> None:
    slugs = {hit.slug for hit in await any_loaded_store.search(query)}
    assert {"europol-partnership", "police-officers-to-europol"} <= slugs


async def test_planned_and_inline_reads_give_the_same_rows(any_loaded_store: Store) -> None:
    """`rows_planned` (the any-word search's read on PostgreSQL) and `rows_inline` (the
    search's read on SQLite) are reads like `rows`; the any-word fallback finds a pledge
    by one word of three, on both backends."""
    db = any_loaded_store.db
    query = "SELECT slug, title FROM pledges WHERE slug > ? ORDER BY slug"
    expected = await db.rows(query, ("e",))
    assert expected
    assert await db.rows_planned(query, ("e",)) == expected
    assert await db.rows_inline(query, ("e",)) == expected
    hits = await any_loaded_store.search("europol zzzqqq xxyyzz")
    assert {"europol-partnership", "police-officers-to-europol"} <= {hit.slug for hit in hits}


async def test_search_finds_the_power_by_its_restrictions(any_loaded_store: Store) -> None:
    hits = await any_loaded_store.search("vehicles")
    assert hits
    assert hits[0].kind == "power"
    assert hits[0].slug == "serious-crime-prevention-orders"
    assert "**" in hits[0].snippet


async def test_search_prefix_matches_the_last_word(any_loaded_store: Store) -> None:
    assert any(h.slug == "europol-partnership" for h in await any_loaded_store.search("Euro"))


async def test_search_falls_back_to_any_word(any_loaded_store: Store) -> None:
    hits = await any_loaded_store.search("vehicles zzzqqq")
    assert any(h.slug == "serious-crime-prevention-orders" for h in hits)


async def test_search_ranks_title_matches_first(any_loaded_store: Store) -> None:
    hits = await any_loaded_store.search("Security Agreement")
    assert hits[0].slug == "europe-security-agreement"


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('NEAR(x "b" c') == '"NEAR" "x" "b" "c"*'
    assert fts_query("x b", any_word=True) == '"x" OR "b"*'
    assert fts_query("?!") is None


def test_queries_leave_stop_words_out_unless_nothing_else_is_left() -> None:
    assert fts_query("housing grants in Wales") == '"housing" "grants" "Wales"*'
    assert pg_tsquery("housing grants in Wales") == "'housing' & 'grants' & 'Wales':*"
    assert fts_query("The Who") == '"The" "Who"*'


async def test_stop_words_change_no_answer(any_loaded_store: Store) -> None:
    """PostgreSQL's english search ignores stop words; SQLite's leaves them out too."""
    plain = await any_loaded_store.search("serious crime prevention orders")
    worded = await any_loaded_store.search("the serious crime prevention orders for")
    assert [h.slug for h in worded] == [h.slug for h in plain]
    assert "serious-crime-prevention-orders" in {h.slug for h in plain}


def test_database_locations() -> None:
    assert database_location(Path("x/p.db")) == Path("x/p.db")
    assert database_location("x/p.db") == Path("x/p.db")
    assert database_location("sqlite:///data/p.db") == Path("data/p.db")
    assert database_location("sqlite:////srv/p.db") == Path("/srv/p.db")
    dsn = "postgresql://pledgebot@db.example/pledgebot"
    assert database_location(dsn) == dsn
    assert database_location("postgres://h/d") == "postgres://h/d"
    assert database_location("POSTGRESQL://h/d") == "POSTGRESQL://h/d"  # any case
    for bad in ("sqlite://p.db", "sqlite:///", "mysql://h/d", "postgresql://u:pw@h/d"):
        with pytest.raises(StoreError):
            database_location(bad)


async def test_any_store_opens_migrated_and_writes(any_store: Store) -> None:
    assert await any_store.schema_version() == SCHEMA_VERSION
    await any_store.set_meta("kept", "yes")
    await any_store.set_meta("kept", "still")
    assert await any_store.get_meta("kept") == "still"


async def test_search_ranks_a_late_title_match_first_among_many(any_store: Store) -> None:
    """Only candidates are ranked on both backends; a title match far past the first
    window of body matches is still one of them, and comes first."""
    rows = [
        (n, f"body-{n}", f"Record {n}", ("about gangs " if n % 5 == 0 else "about ") + "x " * 5)
        for n in range(1, 301)
    ]  # 60 body matches: more than the window of 30 ranked by default
    rows.append((999, "late-title", "Smuggling gangs", "a short text"))
    async with any_store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO search_index(rowid, kind, slug, title, body, quotes, statement) "
            "VALUES (?, 'pledge', ?, ?, ?, '', 's')",
            rows,
        )
    hits = await any_store.search("gangs")
    assert len(hits) == 10
    assert hits[0].slug == "late-title", [(h.slug, h.rank) for h in hits]
    assert "**" in hits[0].snippet


def test_pg_tsquery_quotes_every_word() -> None:
    assert pg_tsquery("NEAR(x 'b' c:*") == "'NEAR' & 'x' & 'b' & 'c':*"
    assert pg_tsquery("x b", any_word=True) == "'x' | 'b':*"
    assert pg_tsquery("x b", weight="A") == "'x':A & 'b':*A"
    assert pg_tsquery("?! & |") is None


async def test_releasing_memory_keeps_the_store_working(any_loaded_store: Store) -> None:
    """The bot does it once start-up is over (`PledgeBot._release_memory`)."""
    before = await any_loaded_store.search("europol")
    await any_loaded_store.db.release_memory()
    assert await any_loaded_store.search("europol") == before
    await any_loaded_store.set_meta("after", "release")
    assert await any_loaded_store.get_meta("after") == "release"
