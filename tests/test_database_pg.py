"""The PostgreSQL backend on a real server (the session's `pg_server`), one database a test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.config import password_in_dsn
from bot.config import redact_dsn as redact
from bot.errors import StoreError
from bot.storage import Database, postgres
from bot.storage.postgres import PostgresDatabase, translate
from bot.storage.schema import SCHEMA_VERSION

NOW = "2026-12-03T14:00:00.000000+00:00"


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[PostgresDatabase]:
    opened = await PostgresDatabase.open(pg_dsn)
    yield opened
    await opened.close()


async def _schedule(db: PostgresDatabase, guild_id: int = 1234567890123456789) -> int:
    async with db.transaction() as tx:
        schedule_id = await tx.scalar(
            "INSERT INTO schedules(guild_id, channel_id, created_by, timezone, time_of_day, "
            "content, active_since, created_at, updated_at) "
            "VALUES (?, ?, ?, 'UTC', '09:00', 'spotlight', ?, ?, ?) RETURNING id",
            (guild_id, guild_id + 1, guild_id + 2, NOW, NOW, NOW),
        )
    return int(schedule_id)


def test_placeholders_are_translated_outside_literals() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b = ?") == (
        "SELECT * FROM t WHERE a = $1 AND b = $2"
    )
    assert translate("SELECT '?', \"a?\", ? -- why?\n, ? /* ? */") == (
        "SELECT '?', \"a?\", $1 -- why?\n, $2 /* ? */"
    )
    assert translate("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', $1"
    assert translate("SELECT E'\\' ?', ?") == "SELECT E'\\' ?', $1"
    assert translate("SELECT $$ ? $$, $x$ ? $x$, ?") == "SELECT $$ ? $$, $x$ ? $x$, $1"
    # SQLite's numbered form, as bot.store's search uses, and `?` after it
    assert translate("MATCH ?1 LIMIT ?2 OFFSET ?1") == "MATCH $1 LIMIT $2 OFFSET $1"
    assert translate("?2, ?") == "$2, $3"
    assert translate("SELECT 1") == "SELECT 1"
    before = translate.cache_info().hits
    translate("SELECT * FROM t WHERE a = ? AND b = ?")
    assert translate.cache_info().hits == before + 1


def test_passwords_stay_out_of_dsns() -> None:
    assert not password_in_dsn("postgresql://pledgebot@db.example/pledgebot")
    assert password_in_dsn("postgresql://pledgebot:hunter2@db.example/pledgebot")
    assert password_in_dsn("postgresql://pledgebot@db.example/pledgebot?password=hunter2")
    assert redact("postgresql://u:hunter2@h:5432/d") == "postgresql://u:***@h:5432/d"


async def test_a_postgres_database_is_a_database(db: PostgresDatabase) -> None:
    typed: Database = db  # mypy checks the interface; this checks the attribute
    assert typed.dialect == "postgresql"


async def test_migrations_apply_once_when_two_processes_start_together(pg_dsn: str) -> None:
    first, second = await asyncio.gather(
        PostgresDatabase.open(pg_dsn), PostgresDatabase.open(pg_dsn)
    )
    try:
        assert await first.schema_version() == await second.schema_version() == SCHEMA_VERSION
        versions = await first.rows("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in versions] == list(range(1, SCHEMA_VERSION + 1))
        tables = {
            r[0]
            for r in await first.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"statements", "pledges", "search_index", "deliveries", "rate_budget"} <= tables
        # migrated columns are there (renames and additions of steps 4 and 6)
        cols = await first.rows(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
        found = {(r[0], r[1]) for r in cols}
        assert ("schedules", "cursor") in found
        assert ("schedules", "spotlight_cursor") not in found
        assert ("search_index", "statement") in found
        assert ("statements", "publisher") in found
    finally:
        await first.close()
        await second.close()
    again = await PostgresDatabase.open(pg_dsn)  # an up-to-date database: nothing to do
    try:
        assert await again.scalar("SELECT count(*) FROM schema_version") == SCHEMA_VERSION
    finally:
        await again.close()


async def test_a_newer_schema_is_refused(db: PostgresDatabase, pg_dsn: str) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this pledgebot"):
        await PostgresDatabase.open(pg_dsn)


async def test_an_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        await PostgresDatabase.open("postgresql://postgres@127.0.0.1:1/nothing")


async def test_execute_returns_rows_changed_and_returning_works(db: PostgresDatabase) -> None:
    async with db.transaction() as tx:
        assert await tx.execute("INSERT INTO meta(key, value) VALUES (?, ?)", ("a", "1")) == 1
        await tx.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)", [("b", "2"), ("c", "3"), ("d", "?")]
        )
        assert await tx.execute("UPDATE meta SET value = value || '!' WHERE key <> ?", ("d",)) == 3
        assert await tx.execute("UPDATE meta SET value = 'x' WHERE key = 'nothing'") == 0
        assert await tx.execute("DELETE FROM meta WHERE key IN (?, ?)", ("a", "b")) == 2
        returned = await tx.rows(
            "INSERT INTO meta(key, value) VALUES (?, ?), (?, ?) RETURNING key, value",
            ("e", "5", "f", "6"),
        )
        assert [(r[0], r["value"]) for r in returned] == [("e", "5"), ("f", "6")]
        assert await tx.execute("CREATE TEMP TABLE scratch (x INTEGER)") == 0
    rows = await db.rows("SELECT key, value FROM meta ORDER BY key")
    assert [tuple(r) for r in rows] == [("c", "3!"), ("d", "?"), ("e", "5"), ("f", "6")]
    assert await db.scalar("SELECT value FROM meta WHERE key = ?", ("d",)) == "?"
    assert await db.scalar("SELECT value FROM meta WHERE key = ?", ("missing",)) is None


async def test_an_error_rolls_the_whole_transaction_back(db: PostgresDatabase) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO meta(key, value) VALUES ('kept?', 'no')")
            raise RuntimeError("boom")
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO meta(key, value) VALUES ('k', '1')")
            await tx.execute("INSERT INTO meta(key, value) VALUES ('k', '2')")
    assert await db.scalar("SELECT count(*) FROM meta") == 0
    async with db.transaction() as tx:  # the connection is usable again
        await tx.execute("INSERT INTO meta(key, value) VALUES ('k', '3')")
    assert await db.scalar("SELECT value FROM meta WHERE key = 'k'") == "3"


async def test_a_planned_read_is_planned_for_its_values_and_leaves_nothing_set(
    db: PostgresDatabase,
) -> None:
    """`rows_planned` runs read-only with custom plans (what the any-word search needs);
    the setting ends with it, on every pooled connection, also when the read fails."""
    setting = "SELECT current_setting('plan_cache_mode') AS mode"
    assert [r["mode"] for r in await db.rows_planned(setting)] == ["force_custom_plan"]
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await db.rows_planned("INSERT INTO meta(key, value) VALUES ('k', '1') RETURNING key")
    with pytest.raises(asyncpg.UndefinedTableError):
        await db.rows_planned("SELECT * FROM no_such_table")
    modes = await asyncio.gather(*(db.scalar(setting) for _ in range(db.pool.get_size() * 2)))
    assert set(modes) == {"auto"}
    assert await db.scalar("SELECT count(*) FROM meta") == 0


async def test_transactions_in_one_process_run_one_at_a_time(db: PostgresDatabase) -> None:
    inside = 0
    most = 0

    async def write(n: int) -> None:
        nonlocal inside, most
        async with db.transaction() as tx:
            inside += 1
            most = max(most, inside)
            await tx.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (f"k{n}", "v"))
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(write(n) for n in range(6)))
    assert most == 1
    assert await db.scalar("SELECT count(*) FROM meta") == 6


async def test_write_transactions_of_two_processes_take_turns(pg_dsn: str) -> None:
    """As SQLite's BEGIN IMMEDIATE: a read-then-write transaction sees no other's write."""
    first = await PostgresDatabase.open(pg_dsn)
    second = await PostgresDatabase.open(pg_dsn)
    order: list[str] = []
    try:
        async with first.transaction() as tx:
            await tx.execute("INSERT INTO rate_budget(name, next_at) VALUES ('global', 1.5)")

            async def other() -> None:
                async with second.transaction() as tx2:
                    order.append("second in")
                    booked = await tx2.scalar("SELECT next_at FROM rate_budget")
                    await tx2.execute("UPDATE rate_budget SET next_at = ?", (booked + 1,))

            waiting = asyncio.create_task(other())
            await asyncio.sleep(0.2)
            assert not waiting.done()
            order.append("first out")
        await asyncio.wait_for(waiting, 5)
        assert order == ["first out", "second in"]
        assert await second.scalar("SELECT next_at FROM rate_budget") == 2.5
        async with first.transaction() as tx:  # reads never wait for the writer lock
            assert await second.scalar("SELECT count(*) FROM rate_budget") == 1
    finally:
        await first.close()
        await second.close()


async def test_a_second_claim_of_a_slot_is_refused(db: PostgresDatabase) -> None:
    schedule_id = await _schedule(db)
    claim = (
        "INSERT INTO deliveries(schedule_id, slot, state, claimed_at) VALUES (?, ?, 'claimed', ?)"
    )
    async with db.transaction() as tx:
        await tx.execute(claim, (schedule_id, "2026-12-03T09:00Z", NOW))
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction() as tx:
            await tx.execute(claim, (schedule_id, "2026-12-03T09:00Z", NOW))
    # the engine's form: the loser learns it lost from the count
    async with db.transaction() as tx:
        lost = await tx.execute(
            claim + " ON CONFLICT(schedule_id, slot) DO NOTHING",
            (schedule_id, "2026-12-03T09:00Z", NOW),
        )
        won = await tx.execute(
            claim + " ON CONFLICT(schedule_id, slot) DO NOTHING",
            (schedule_id, "2026-12-04T09:00Z", NOW),
        )
    assert (lost, won) == (0, 1)
    assert await db.scalar("SELECT count(*) FROM deliveries") == 2


async def test_check_constraints_and_discord_sized_ids(db: PostgresDatabase) -> None:
    schedule_id = await _schedule(db, guild_id=2**63 - 10)
    assert await db.scalar("SELECT guild_id FROM schedules WHERE id = ?", (schedule_id,)) == (
        2**63 - 10
    )
    with pytest.raises(asyncpg.CheckViolationError):
        async with db.transaction() as tx:
            await tx.execute("UPDATE schedules SET state = 'sleeping' WHERE id = ?", (schedule_id,))
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO deliveries(schedule_id, slot, state, claimed_at) "
                "VALUES (?, 'x', 'claimed', ?)",
                (schedule_id + 1000, NOW),
            )


async def test_status_history_is_append_only(db: PostgresDatabase) -> None:
    async with db.transaction() as tx:
        statement_id = await tx.scalar(
            "INSERT INTO statements(slug, title, author, source_path, source_text) "
            "VALUES ('s', 'S', 'A', 's.md', '') RETURNING id"
        )
        pledge_id = await tx.scalar(
            "INSERT INTO pledges(slug, statement_id, position, title, summary, detail, scope) "
            "VALUES ('p', ?, 1, 'P', '', '', 'uk') RETURNING id",
            (statement_id,),
        )
        await tx.execute(
            "INSERT INTO status_history(pledge_id, from_status, to_status, changed_at, note, "
            "changed_by) VALUES (?, 'not-yet-rated', 'kept', ?, 'done', 'mod')",
            (pledge_id, NOW),
        )
    for change in (
        "UPDATE status_history SET note = 'rewritten'",
        "DELETE FROM status_history",
        "TRUNCATE status_history, pledge_events, alert_deliveries",  # these refer to it
    ):
        with pytest.raises(asyncpg.PostgresError, match="status history is append-only"):
            async with db.transaction() as tx:
                await tx.execute(change)
    assert await db.scalar("SELECT note FROM status_history") == "done"


async def test_the_search_index_weighs_title_body_and_quotes(db: PostgresDatabase) -> None:
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO search_index(rowid, kind, slug, title, body, quotes, statement) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1, "pledge", "homes", "Build more homes", "Councils plan housing.", None, "s"),
                (2, "pledge", "tax", "Freeze council tax", "No rise.", "we'll build", "s"),
            ],
        )
    rows = await db.rows(
        "SELECT slug, document FROM search_index "
        "WHERE document @@ to_tsquery('english', 'build') ORDER BY rowid"
    )
    assert [r["slug"] for r in rows] == ["homes", "tax"]
    assert "'build':1A" in rows[0]["document"]  # title: weight A, stemmed
    assert "'rise':5B" in rows[1]["document"]  # body: weight B
    assert "'build':8C" in rows[1]["document"]  # quotes: weight C
    plan = "\n".join(
        r[0]
        for r in await db.rows(
            "EXPLAIN SELECT rowid FROM search_index WHERE document @@ to_tsquery('english', 'x')"
        )
    )
    assert "search_index" in plan  # the GIN index exists; small tables may scan anyway
    assert (
        await db.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'search_index_document'")
        == 1
    )


async def test_listen_notify_round_trip(pg_dsn: str) -> None:
    """A NOTIFY from one process reaches another's listener, well within a second."""
    listener = await PostgresDatabase.open(pg_dsn)
    sender = await PostgresDatabase.open(pg_dsn)
    try:
        got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        await listener.listen("plan_changed", lambda ch, payload: got.put_nowait((ch, payload)))

        async def also(channel: str, payload: str) -> None:  # coroutine callbacks too
            await got.put((channel + "/async", payload))

        await listener.listen("plan_changed", also)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sender.notify("plan_changed", "schedule 42")
        first = await asyncio.wait_for(got.get(), 1.0)
        second = await asyncio.wait_for(got.get(), 1.0)
        assert loop.time() - started < 1.0
        assert sorted([first, second]) == [
            ("plan_changed", "schedule 42"),
            ("plan_changed/async", "schedule 42"),
        ]
        # a notification sent inside a transaction arrives only when it commits
        async with sender.transaction() as tx:
            await tx.execute("SELECT pg_notify(?, ?)", ("plan_changed", "in tx"))
            await asyncio.sleep(0.05)
            assert got.empty()
        assert (await asyncio.wait_for(got.get(), 1.0))[1] == "in tx"
        await listener.unlisten("plan_changed")
        await sender.notify("plan_changed", "after unlisten")
        await asyncio.sleep(0.1)
        assert got.qsize() == 1  # the coroutine callback's copy of "in tx" only
    finally:
        await listener.close()
        await sender.close()


async def test_a_lock_timeout_at_begin_ends_the_transaction(
    db: PostgresDatabase,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The writer lock held elsewhere past the timeout: the write fails, and its connection
    goes back to the pool with its transaction ended by us, not reset by the pool with an
    error logged each time the store is locked."""
    monkeypatch.setattr(
        postgres,
        "_BEGIN",
        postgres._BEGIN.replace("lock_timeout = '5s'", "lock_timeout = '50ms'"),
    )
    other = await asyncpg.connect(pg_dsn)
    try:
        await other.execute("BEGIN")
        await other.execute("SELECT pg_advisory_xact_lock($1)", postgres.WRITER_LOCK)
        with (
            caplog.at_level(logging.WARNING),
            pytest.raises(asyncpg.exceptions.LockNotAvailableError),
        ):
            async with db.transaction() as tx:
                await tx.execute("UPDATE meta SET value = value")
        await other.execute("ROLLBACK")
        for _ in range(4):  # every pooled connection, had it been left mid-transaction
            async with db.transaction() as tx:
                assert await tx.scalar("SELECT 1") == 1
        open_elsewhere = await other.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%'"
        )
        assert open_elsewhere == 0
        assert not [r for r in caplog.records if "active transaction" in r.getMessage()]
    finally:
        await other.close()
