"""Full-text search over pledges, powers and claims, on either backend.

FTS5 with bm25 on SQLite; a weighted `tsvector` with `ts_rank_cd` on PostgreSQL. Both
quote every word the member typed (no user text is ever query syntax), match all words
and then any word, and rank only a bounded set of candidates, so a query that matches
thousands of rows costs about what one that matches ten does. The index is rebuilt from
the content tables with each content load (`rebuild_search_index`).
"""

from __future__ import annotations

import re
from typing import cast

from bot.models import RecordKind, SearchHit
from bot.storage import Database, Row, Transaction

# Search reads at most this many words of a query: enough for any real question,
# and it bounds the work a 10,000-character paste can cause.
MAX_QUERY_TOKENS = 16
_WORD = re.compile(r"\w+")
# PostgreSQL's `english` stop words (tsearch_data/english.stop): its search leaves them out
# of a query, and so does SQLite's here, so both backends match the same words. A word
# like "in" is in nearly every record, and ranking it only cost time.
_ENGLISH_STOP = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves what
which who whom this that these those am is are was were be been being have has had
having do does did doing a an the and but if or because as until while of at by for
with about against between into through during before after above below to from up
down in out on off over under again further then once here there when where why how
all any both each few more most other some such no nor not only own same so than
too very s t can will just don should now
"""
STOP_WORDS = frozenset(_ENGLISH_STOP.split())


async def search(db: Database, text: str, *, limit: int = 10) -> list[SearchHit]:
    """Ranked matches for any user text; never raises on what the user typed."""
    if db.dialect == "postgresql":
        rows = await _search_pg(db, text, limit)
    else:
        rows = await _search_fts5(db, text, limit)
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


async def _search_fts5(db: Database, text: str, limit: int) -> list[Row]:
    """SQLite dialect (FTS5): rows of kind, slug, title, snippet, rank, statement.

    All words must match; when that finds nothing, any word may match. Up to
    `EXACT_RANK_WORDS` words must all match, so few rows match and every match is
    ranked. A shorter query (or any-word matching) can match thousands, so only a
    bounded candidate set is ranked (`_BOUNDED_SEARCH`). Bounded, it is read on the event
    loop's thread (`rows_inline`), with no trip to aiosqlite's.
    """
    tried = None
    for any_word in (False, True):
        query = fts_query(text, any_word=any_word)
        if query is None or query == tried:
            return []  # nothing to search, or one word: any-word is the same query
        tried = query
        if not any_word and len(query_words(text)) > EXACT_RANK_WORDS:
            rows = await db.rows_inline(_EXACT_SEARCH, (query, limit))
        else:
            window = max(SEARCH_WINDOW, 3 * limit)
            rows = await db.rows_inline(_BOUNDED_SEARCH, (query, limit, window))
        if rows:
            return rows
    return []


async def _search_pg(db: Database, text: str, limit: int) -> list[Row]:
    """PostgreSQL dialect (full-text search): rows as `_search_fts5` gives them.

    All words must match; when that finds nothing, any word may match. As on
    SQLite, only a bounded candidate set is ranked (`_PG_SEARCH`,
    `_PG_SEARCH_ANY_WORD`), and only the page gets a snippet.
    """
    tried = None
    window = max(SEARCH_WINDOW, 3 * limit)
    for any_word in (False, True):
        query = pg_tsquery(text, any_word=any_word)
        if query is None or query == tried:
            return []
        tried = query
        in_title = pg_tsquery(text, any_word=any_word, weight="A")
        params = (query, limit, in_title, window)
        if any_word:
            rows = await db.rows_planned(_PG_SEARCH_ANY_WORD, params)
        else:
            rows = await db.rows(_PG_SEARCH, params)
        if rows:
            return rows
    return []


def query_words(text: str) -> list[str]:
    """The words searched for: at most `MAX_QUERY_TOKENS`, stop words left out unless the
    query has nothing else."""
    words = _WORD.findall(text)[:MAX_QUERY_TOKENS]
    return [w for w in words if w.lower() not in STOP_WORDS] or words


def fts_query(text: str, *, any_word: bool = False) -> str | None:
    """Turn user text into a safe FTS5 query: every word quoted, the last a prefix.

    Quoting makes FTS5 operators (AND, NEAR, *, column filters) plain words, so no
    user text can raise a syntax error. SQLite dialect (FTS5's query syntax).
    """
    words = query_words(text)
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return (" OR " if any_word else " ").join(quoted)


def pg_tsquery(text: str, *, any_word: bool = False, weight: str = "") -> str | None:
    """Turn user text into a safe `to_tsquery` text: every word quoted, the last a prefix.

    The words are `fts_query`'s (`query_words`), so they hold no quote, backslash or
    operator; quoting each still makes tsquery operators (`&`, `|`, `!`, `<->`, `:`)
    plain text. `weight` ("A": the title) limits each word
    to the parts of a document with that weight. PostgreSQL dialect.
    """
    words = query_words(text)
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
# title matches (?3: the same words, weight A only, so a subset of ?1's matches). Fewer
# than ?4 matches: all ranked.
# All words: one GIN scan finds the matches, and both candidate sets come from it; each
# tsquery is computed once (a sub-select), never again for each row the title test
# rechecks (the index holds no weights). The statement is prepared once per connection,
# and after five executions PostgreSQL runs a generic plan that cannot see the words:
# written this way, that plan is as good for a rare word as for a common one. With the
# tsquery written out in each candidate query instead, the generic plan rechecked every
# match with a fresh `to_tsquery` (bench/PROFILES.md).
_PG_ALL_WORDS = (
    "WITH q(query) AS (SELECT to_tsquery('english', ?1)), "
    "matches AS MATERIALIZED (SELECT s.rowid, s.document FROM search_index s"
    " WHERE s.document @@ (SELECT query FROM q)), "
    "candidates(id) AS ("
    " (SELECT rowid FROM matches ORDER BY rowid LIMIT ?4) UNION "
    " (SELECT rowid FROM matches WHERE document @@ (SELECT to_tsquery('english', ?3)) "
    "  ORDER BY rowid LIMIT ?4)), "
)
# Any word (the fallback, 2% of searches): it can match thousands of rows, and is cheap
# only with a plan that sees the words: walk the rows in rowid order and stop at ?4
# matches for common words, read the GIN index for rare ones. So the candidates' queries
# write the words out, and it runs planned for them (`Database.rows_planned`): 1 ms where
# the generic plan took 5.
_PG_ANY_WORD = (
    "WITH q(query) AS (SELECT to_tsquery('english', ?1)), "
    "candidates(id) AS ("
    " (SELECT s.rowid FROM search_index s WHERE s.document @@ to_tsquery('english', ?1) "
    "  ORDER BY s.rowid LIMIT ?4) UNION "
    " (SELECT s.rowid FROM search_index s WHERE s.document @@ to_tsquery('english', ?3) "
    "  ORDER BY s.rowid LIMIT ?4)), "
)
# Both rank their candidates and snippet the page the same way.
_PG_RANKED = (
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
_PG_SEARCH = _PG_ALL_WORDS + _PG_RANKED
_PG_SEARCH_ANY_WORD = _PG_ANY_WORD + _PG_RANKED


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
# first, `rebuild_search_index`), and bm25 favours shorter documents, so the first
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


async def rebuild_search_index(tx: Transaction, dialect: str) -> None:
    """Rebuild the index from the content tables (FTS5 on SQLite; on PostgreSQL a table
    whose stored tsvector the server computes, see `bot.storage.schema`).

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
    else:
        # The same on PostgreSQL: a bulk insert leaves its GIN entries in the index's
        # pending list, which every search reads whole until a vacuum merges it (searches
        # at 10,000 pledges took about 50 ms instead of 2 until autovacuum came by). And
        # fresh statistics, so the planner sees how many rows a query's words match and
        # reads the GIN index for rare words instead of scanning the table.
        await tx.execute("SELECT gin_clean_pending_list('search_index_document'::regclass)")
        await tx.execute("ANALYZE search_index")
