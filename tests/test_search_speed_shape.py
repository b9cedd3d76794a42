"""The shape that keeps search fast (issue 11): rank only what can make the page.

`Store.search` ranks a bounded candidate set when a short query may match thousands of
rows: the first matches in rowid order (rowids follow document length) plus the first
title matches beyond them. These tests pin what that must never cost: a title match
far down the index, the exact order when few rows match, rowids by length, and an
older database migrating to the length-ordered index.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.pledges.content import load_content
from bot.search import SEARCH_WINDOW, fts_query
from bot.storage.schema import SCHEMA_VERSION
from bot.store import Store
from tests.test_store import make_database_at_version

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

BEFORE_ISSUE_11 = 6  # the schema version before length-ordered rowids and prefix indexes
FULL_RANKING = (
    "SELECT slug, bm25(search_index, 0, 0, 10.0, 3.0, 1.0) AS rank FROM search_index "
    "WHERE search_index MATCH ? ORDER BY rank, slug"
)


async def fill_index(store: Store, rows: list[tuple[int, str, str, str]]) -> None:
    """(rowid, slug, title, body) straight into the index, as a rebuild would leave it."""
    async with store.transaction() as conn:
        await conn.executemany(
            "INSERT INTO search_index(rowid, kind, slug, title, body, quotes, statement) "
            "VALUES (?, 'pledge', ?, ?, ?, '', 'statement')",
            rows,
        )


async def test_a_title_match_beyond_thousands_of_body_matches_comes_first(
    store: Store,
) -> None:
    body_matches = [
        (i, f"gen-{i:05d}", f"Commitment {i}", f"money for the harbour wall number {i}")
        for i in range(1, 3001)
    ]
    # Longer, so a rebuild would give it the last rowid: far outside the first window.
    title_match = (
        9000,
        "harbour-pledge",
        "Rebuild the harbour",
        "coastal works along the northern shore, for many years to come",
    )
    await fill_index(store, [*body_matches, title_match])
    assert SEARCH_WINDOW < 3000
    for text in ("harbour", "harb", "the harbour"):
        query = fts_query(text)
        assert query is not None
        full = await store.rows(FULL_RANKING, (query,))
        assert full[0]["slug"] == "harbour-pledge"  # what ranking every match would give
        hits = await store.search(text)
        assert len(hits) == 10, text
        assert hits[0].slug == "harbour-pledge", text
        assert hits[0].rank == full[0]["rank"], text
        assert all("**" in hit.snippet for hit in hits), text


async def vm_steps(store: Store, text: str) -> int:
    """SQLite virtual-machine steps one search takes (a progress handler counting them)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    # the connection searches read through (SQLite: `rows_inline`'s, on this thread);
    # counting replaces its time limit, which this one search does not need
    inline = store.db._inline_connection()
    assert inline is not None
    inline.set_progress_handler(count, 1)
    assert len(await store.search(text)) == 10
    return steps


async def test_ranking_work_does_not_grow_with_the_number_of_matches(tmp_path: Path) -> None:
    steps = {}
    for matches in (300, 3000):
        store = await Store.open(tmp_path / f"{matches}.db")
        try:
            await fill_index(
                store,
                [(i, f"gen-{i:05d}", f"Harbour {i}", "a wall") for i in range(1, matches + 1)],
            )
            steps[matches] = await vm_steps(store, "harbour")
        finally:
            await store.close()
    # Ranking every match would take about ten times the steps for ten times the rows.
    assert steps[3000] < 1.5 * steps[300], steps


async def test_the_any_word_fallback_is_bounded_too(store: Store) -> None:
    rows = [(i, f"gen-{i:05d}", f"Commitment {i}", "tidal harbour") for i in range(1, 2001)]
    await fill_index(store, [*rows, (5000, "tide", "Tidal barrier", "on the estuary")])
    full = await store.rows(FULL_RANKING, (fts_query("tidal zzzqqq", any_word=True),))
    assert full[0]["slug"] == "tide"
    hits = await store.search("tidal zzzqqq")
    assert len(hits) == 10
    assert hits[0].slug == "tide"


async def test_few_matches_are_ranked_exactly_as_a_full_bm25_ranking(
    loaded_store: Store,
) -> None:
    for text in ("europol", "vehicles", "border", "smuggling gangs", "security agreement"):
        query = fts_query(text)
        assert query is not None
        full = [(r["slug"], r["rank"]) for r in await loaded_store.rows(FULL_RANKING, (query,))]
        hits = [(h.slug, h.rank) for h in await loaded_store.search(text, limit=len(full) or 1)]
        assert sorted(r for _, r in hits) == sorted(r for _, r in full), text
        assert [r for _, r in hits] == sorted(r for _, r in hits), text


async def test_index_rowids_follow_document_length(loaded_store: Store) -> None:
    rows = await loaded_store.rows(
        "SELECT rowid, length(title) + length(body) + length(coalesce(quotes, '')) AS size "
        "FROM search_index ORDER BY rowid"
    )
    sizes = [r["size"] for r in rows]
    assert sizes == sorted(sizes)
    assert [r["rowid"] for r in rows] == list(range(1, len(rows) + 1))
    kinds = {r["kind"] for r in await loaded_store.rows("SELECT kind FROM search_index")}
    assert kinds == {"pledge", "power", "claim"}


async def test_an_older_database_reloads_content_and_still_searches(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_database_at_version(path, BEFORE_ISSUE_11)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO meta(key, value) VALUES ('content_fingerprint', 'old')")
    conn.commit()
    conn.close()
    store = await Store.open(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.get_meta("content_fingerprint") is None  # the next start reloads
        (table,) = await store.rows("SELECT sql FROM sqlite_master WHERE name = 'search_index'")
        assert "prefix = '2 3 4 5'" in table["sql"]
        await load_content(store, DATA_DIR)
        hits = await store.search("Security Agreement")
        assert hits[0].slug == "europe-security-agreement"
        assert any(h.slug == "europol-partnership" for h in await store.search("Euro"))
        assert any(h.slug == "europol-partnership" for h in await store.search("partnership eu"))
    finally:
        await store.close()
