"""Benchmark 3: full-text search (`Store.search`, FTS5) against a LIKE scan.

Same database (the shipped content plus 10,000 generated pledges, loaded by the real
loader), same connection, same queries, alternated sample by sample. Both go through
aiosqlite, so both pay the same thread hop: the search's own SQL (`bot.search`) is sent
there too, though `Store.search` reads it on the event loop's thread (`rows_inline`),
which is timed beside them for information. The LIKE scan is the obvious alternative:
`title LIKE '%q%' OR summary LIKE '%q%' OR detail LIKE '%q%'` over `pledges`, every match
fetched (a substring match cannot be ranked, so there is no meaningful LIMIT).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from bench.common import Report, Settings, Stats, Table, Target, ms, ratio, times
from bench.fixtures import SEARCH_QUERIES, temp_dir, write_content
from bot import search
from bot.models import SearchHit
from bot.pledges.content import load_content
from bot.storage import Database, Row
from bot.store import Store

GENERATED = 10_000
# Issue 11, item 3: at 10k generated pledges, FTS at least 10x faster than the LIKE scan.
TARGET = 0.1  # FTS / LIKE, at the median and at p99, all queries together
LIKE_SQL = "SELECT slug, title FROM pledges WHERE title LIKE ? OR summary LIKE ? OR detail LIKE ?"


async def like_scan(store: Store, query: str) -> int:
    pattern = f"%{query}%"
    return len(await store.rows(LIKE_SQL, (pattern, pattern, pattern)))


class ThroughThread:
    """The store's database with the search's inline reads sent to aiosqlite's thread, as
    the LIKE scan's are: the target compares the index with the scan, not where each
    runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect

    async def rows_inline(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.db.rows(sql, params)


async def fts_search(store: Store, query: str) -> list[SearchHit]:
    return await search.search(cast(Database, ThroughThread(store.db)), query)


async def timed(work: Awaitable[object]) -> float:
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


async def run(settings: Settings) -> Report:
    generated = settings.size(GENERATED, quick=1_000, tiny=50)
    repeats = settings.size(120, quick=15, tiny=2)
    budget = settings.size(90.0, quick=30.0, tiny=10.0)
    report = Report(
        "search",
        "Search: FTS5 against a LIKE scan",
        f"`Store.search(query)`'s SQL (FTS5, bm25 ranking, snippets, limit 10; falls back to "
        f"any-word matching when all-words finds nothing; queries of up to three words rank "
        f"a bounded candidate set), read through aiosqlite's thread as the scan is, against "
        f"`{LIKE_SQL}` with `%query%`, on one "
        f"database holding the shipped content plus {generated:,} generated pledges. "
        f"{repeats} samples per query and method, alternated, after one warm-up each. "
        f"Target (issue 11): FTS / LIKE <= {TARGET}x at the median and at p99, all queries "
        "together.",
    )
    with temp_dir("search") as tmp:
        content = write_content(tmp / "content", generated)
        store = await Store.open(tmp / "search.db")
        try:
            await load_content(store, content)
            rows, fts_all, like_all, hop_all, inline_all = await measure(store, repeats, budget)
        finally:
            await store.close()
    report.tables.append(
        Table(
            f"Per query, {generated:,} generated pledges (ms)",
            (
                "query",
                "FTS hits",
                "LIKE rows",
                "FTS min",
                "FTS median",
                "FTS p99",
                "LIKE min",
                "LIKE median",
                "LIKE p99",
                "median FTS/LIKE",
            ),
            rows,
        )
    )
    fts, like, hop = Stats.of(fts_all), Stats.of(like_all), Stats.of(hop_all)
    inline = Stats.of(inline_all)
    overall = ratio(fts.median, like.median)
    report.tables.append(
        Table(
            "All queries together (ms)",
            ("method", "n", "min", "median", "p99", "max"),
            [
                (
                    "FTS5, `Store.search`'s SQL through aiosqlite's thread",
                    str(fts.count),
                    ms(fts.min),
                    ms(fts.median),
                    ms(fts.p99),
                    ms(fts.max),
                ),
                (
                    "LIKE scan",
                    str(like.count),
                    ms(like.min),
                    ms(like.median),
                    ms(like.p99),
                    ms(like.max),
                ),
                (
                    "FTS5, `Store.search` as members meet it (read on the loop's thread)",
                    str(inline.count),
                    ms(inline.min),
                    ms(inline.median),
                    ms(inline.p99),
                    ms(inline.max),
                ),
                (
                    "`SELECT 1` (the aiosqlite round trip alone)",
                    str(hop.count),
                    ms(hop.min),
                    ms(hop.median),
                    ms(hop.p99),
                    ms(hop.max),
                ),
            ],
        )
    )
    p99_ratio = ratio(fts.p99, like.p99)
    report.targets.append(
        Target(
            "FTS median / LIKE median, all queries",
            f"{ms(fts.median)} ms = {times(overall)}",
            f"<= {TARGET}x ({ms(like.median * TARGET)} ms)",
            overall <= TARGET,
        )
    )
    report.targets.append(
        Target(
            "FTS p99 / LIKE p99, all queries",
            f"{ms(fts.p99)} ms = {times(p99_ratio)}",
            f"<= {TARGET}x ({ms(like.p99 * TARGET)} ms)",
            p99_ratio <= TARGET,
        )
    )
    slowest = max(rows, key=lambda row: float(row[4]))
    if p99_ratio > TARGET:
        verdict = "p99 not met"
    elif p99_ratio > 0.85 * TARGET:
        verdict = "p99 met narrowly (within 15% of the limit)"
    else:
        verdict = "p99 met"
    report.notes.append(
        f"{verdict}: FTS p99 {ms(fts.p99)} ms against a limit of {ms(like.p99 * TARGET)} ms. "
        f"The round trip alone (`SELECT 1` on the same connection, the thread hop aiosqlite "
        f"makes for every query) has median {ms(hop.median)} ms and p99 {ms(hop.p99)} ms "
        f"here; the slowest query by median is {slowest[0]} ({slowest[4]} ms). " + TAIL
    )
    return report


# What sets the p99, as profiling showed (plain sqlite3, the benchmark database, medians).
TAIL = (
    "In SQLite itself (no aiosqlite) `housing grants in wales` cost about 0.36 ms while "
    "`in` was searched for too (it is in 4,455 of 10,015 documents, and bm25 passes over "
    "each word's whole doclist for its idf); stop words are now left out, as PostgreSQL's "
    "english search always did (0.22 ms in that profile). Single common words are no "
    "longer the tail (`fund`: 0.58 -> 0.16 ms, `border security`: 0.50 -> 0.23 ms). What "
    "is left is bm25 and a snippet for each ranked match, and the aiosqlite round trip "
    "above, whose cost depends on how fast this machine hands work between threads; a "
    "ranking function in C without the idf passes would take most of the first. The "
    "verdict can change run to run on a shared 2-CPU machine."
)


async def measure(
    store: Store, repeats: int, budget: float
) -> tuple[list[tuple[str, ...]], list[float], list[float], list[float], list[float]]:
    rows: list[tuple[str, ...]] = []
    fts_all: list[float] = []
    like_all: list[float] = []
    hop_all: list[float] = []
    inline_all: list[float] = []
    per_query = budget / len(SEARCH_QUERIES)
    for query in SEARCH_QUERIES:
        hits = len(await fts_search(store, query))
        matched = await like_scan(store, query)
        fts_samples: list[float] = []
        like_samples: list[float] = []
        deadline = time.perf_counter() + per_query
        for i in range(repeats):
            # Alternate which goes first, so neither always finds the other's warm cache.
            if i % 2 == 0:
                fts_samples.append(await timed(fts_search(store, query)))
                like_samples.append(await timed(like_scan(store, query)))
            else:
                like_samples.append(await timed(like_scan(store, query)))
                fts_samples.append(await timed(fts_search(store, query)))
            hop_all.append(await timed(store.rows("SELECT 1")))
            inline_all.append(await timed(store.search(query)))
            if time.perf_counter() > deadline:
                break
        fts, like = Stats.of(fts_samples), Stats.of(like_samples)
        fts_all += fts_samples
        like_all += like_samples
        rows.append(
            (
                f"`{query}`",
                str(hits),
                str(matched),
                ms(fts.min),
                ms(fts.median),
                ms(fts.p99),
                ms(like.min),
                ms(like.median),
                ms(like.p99),
                times(ratio(fts.median, like.median)),
            )
        )
    return rows, fts_all, like_all, hop_all, inline_all
