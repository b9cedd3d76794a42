"""Issue 17: a restore that overwrote the database kept by the one before it, passwords
hidden in a PostgreSQL URL, `db copy` memory and consistency, and `run` opening the
database before taking the lock that `db restore` checks."""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

import bot.storage.copy as storage_copy
from bot.client.logredact import RedactTokens
from bot.config import ConfigError, load_config, parse_database_url
from bot.config import redact_dsn as redact
from bot.errors import OperatorError, StoreError
from bot.storage.copy import copy_database
from bot.storage.files import backup, exclusive, restore
from bot.store import Store
from tests.test_cli import run
from tests.test_db_copy import pg_url, populate, table_rows  # noqa: F401 - pg_url: fixture

SECRET = "s3cret"

# -- 6. two restores within one second -------------------------------------------------


def marker(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'marker'").fetchone()[0])


def set_marker(database: Path, value: str) -> None:
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('marker', ?)", (value,))
    conn.close()


async def created(database: Path) -> None:
    await (await Store.open(database)).close()


def test_two_restores_in_one_second_keep_both_replaced_databases(tmp_path: Path) -> None:
    database = tmp_path / "live.db"
    asyncio.run(created(database))
    set_marker(database, "original")
    backups = []
    for name in ("first", "second"):
        made = backup(database, tmp_path / f"{name}.db").path
        set_marker(made, name)
        backups.append(made)

    second = datetime(2026, 12, 1, 9, 0, 0, 100_000, tzinfo=UTC)
    kept = [restore(b, database, now=second).replaced for b in backups]

    assert kept[0] is not None and kept[1] is not None
    assert kept[0] != kept[1]
    assert marker(kept[0]) == "original"  # not overwritten by the second restore
    assert marker(kept[1]) == "first"
    assert marker(database) == "second"
    assert sorted(p.name for p in tmp_path.glob("live.db.replaced-*")) == [
        "live.db.replaced-20261201T090000Z",
        "live.db.replaced-20261201T090000Z-2",
    ]


# -- 9. passwords hidden in a PostgreSQL URL --------------------------------------------

HIDDEN = [
    f"postgresql://bot@db/p?pass%77ord={SECRET}",
    f"postgresql://bot@db/p?PASSWORD={SECRET}",
    f"postgresql://bot@db/p?sslmode=require&Password={SECRET}",
    f"postgresql://bot@db/p?pass%2577ord={SECRET}",
    f"postgresql://bot@db/p?sslpassword={SECRET}",
    f"postgresql://bot:{SECRET}@db/p",
    "postgresql://bot:%73%33cret@db/p",  # s3cret, percent-encoded
    f"postgresql://bot:{SECRET}/x@db/p",  # an unencoded / in the password
    f"postgresql://bot:{SECRET}@x@db/p",  # an unencoded @
    f"postgresql://bot@x:{SECRET}@db/p",  # an unencoded @ in the user name
    f"postgresql://bot:{SECRET}@[::1/p",  # an IPv6 address with no closing ]
]


def secret_pieces(url: str) -> list[str]:
    return [SECRET, "%73%33cret"] if "%73%33cret" in url else [SECRET]


@pytest.mark.parametrize("url", HIDDEN)
def test_a_password_hidden_in_the_url_is_refused_and_never_shown(tmp_path: Path, url: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(config, environ={})
    with pytest.raises(ValueError, match="a password is refused here"):
        parse_database_url(url)
    shown = redact(url)
    for piece in secret_pieces(url):
        assert piece not in str(refused.value)
        assert piece not in shown
    assert shown.startswith("postgresql://bot")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pledgebot@db.internal:5433/pledgebot?sslmode=require",
        "postgresql://bot@db/p?application_name=me@home&passfile=/etc/pgpass",
        "postgresql:///pledgebot",
    ],
)
def test_urls_without_a_password_are_kept_as_they_are(url: str) -> None:
    assert parse_database_url(url) == url
    assert redact(url) == url


@pytest.mark.parametrize("url", HIDDEN)
def test_a_url_in_a_log_record_loses_its_password(url: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokens())
    log = logging.getLogger("test.hosting.dsn")
    log.addHandler(handler)
    try:
        log.warning("cannot reach %s (retrying)", url)
        log.warning("pool for '%s' closed", url)
    finally:
        log.removeHandler(handler)
    for piece in secret_pieces(url):
        assert piece not in stream.getvalue()
    assert stream.getvalue().count("postgresql://bot") == 2


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bot@127.0.0.1:1/p?pass%77ord={SECRET}",
        f"postgresql://bot:{SECRET}@127.0.0.1:1/p",
        f"postgresql://bot:{SECRET}/x@127.0.0.1:1/p",  # asyncpg quotes the "port" it read
        f"postgresql://bot@x:{SECRET}@127.0.0.1:1/p",
    ],
)
async def test_a_connection_error_never_shows_the_password(url: str) -> None:
    with pytest.raises(StoreError) as failed:
        await Store.open(url)  # nothing listens on port 1
    message = str(failed.value)
    # refused as the config refuses it, or (where the URL does not read as carrying one)
    # the connection fails naming the database
    assert "never in the URL" in message or "cannot connect to database postgresql://bot" in (
        message
    )
    assert SECRET not in message


def test_copy_errors_never_show_the_password(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """The server trusts local connections, so a password in the URL is ignored: the copy
    reaches the database, and then refuses, naming it."""
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    assert run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)[0] == 0
    with_password = f"{pg_url}?pass%77ord={SECRET}"
    with pytest.raises(OperatorError) as refused:
        asyncio.run(copy_database(first, with_password))
    assert "already holds data" in str(refused.value)
    assert "pass%77ord=***" in str(refused.value)
    assert SECRET not in str(refused.value)
    with pytest.raises(OperatorError) as same:
        asyncio.run(copy_database(with_password, with_password))
    assert SECRET not in str(same.value)


# -- a. db copy reads in batches --------------------------------------------------------

PAYLOAD = "x" * 2000  # per delivery: 10,000 of them are 20 MB as Python strings


def test_copy_holds_one_batch_of_a_large_table_at_a_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    with sqlite3.connect(first) as conn:
        conn.executemany(
            "INSERT INTO deliveries (schedule_id, slot, state, claimed_at, error) "
            "VALUES (1, ?, 'failed', '2026-12-01T09:00Z', ?)",
            ((f"slot-{n:05}", f"{n} {PAYLOAD}") for n in range(10_000)),
        )
    conn.close()
    monkeypatch.setattr(storage_copy, "COPY_BATCH", 100)
    target = tmp_path / "second.db"

    tracemalloc.start()
    try:
        copied = asyncio.run(copy_database(first, target))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert {t.name: t.rows for t in copied}["deliveries"] == 10_003
    assert table_rows(target) == table_rows(first)
    # a whole table read at once holds over 20 MB; 100 rows at a time, well under 5
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MiB"


# -- b. a PostgreSQL source is copied from one snapshot ---------------------------------


def test_a_postgresql_source_is_copied_as_of_one_moment(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bot commits a new schedule and its delivery while the copy runs, after the
    schedules were copied: the copy holds neither (not a delivery without its schedule)."""
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    assert run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)[0] == 0
    copy_table = storage_copy._copy_table

    async def a_bot_writes_meanwhile(src, dst, name, source, target):  # type: ignore[no-untyped-def]
        await copy_table(src, dst, name, source, target)
        if name != "schedules":
            return
        conn = await asyncpg.connect(pg_url)
        try:
            async with conn.transaction():
                schedule = await conn.fetchval(
                    "INSERT INTO schedules (guild_id, channel_id, created_by, timezone, "
                    "content, active_since, created_at, updated_at) "
                    "VALUES (1, 1, 1, 'UTC', 'digest', '', '', '') RETURNING id"
                )
                await conn.execute(
                    "INSERT INTO deliveries (schedule_id, slot, state, claimed_at) "
                    "VALUES ($1, '2026-12-09T09:00Z', 'claimed', '')",
                    schedule,
                )
        finally:
            await conn.close()

    monkeypatch.setattr(storage_copy, "_copy_table", a_bot_writes_meanwhile)
    monkeypatch.setattr(storage_copy, "COPY_BATCH", 2)  # several batches per table
    back = tmp_path / "back.db"
    code, _, err = run(capsys, "db", "copy", "--from", pg_url, "--to", f"sqlite:///{back}")
    assert code == 0, err
    assert table_rows(back) == table_rows(first)

    async def source_deliveries() -> int:
        conn = await asyncpg.connect(pg_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM deliveries"))
        finally:
            await conn.close()

    assert asyncio.run(source_deliveries()) == len(table_rows(first)["deliveries"]) + 1


# -- c. `run` takes the lock before it opens the database -------------------------------


def test_run_opens_nothing_while_a_restore_holds_the_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "bot.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\npath = "{database}"\n'
        '[discord]\napi_base_url = "http://127.0.0.1:1"\nconnect_attempts = 1\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DISCORD_TOKEN", "not-a-real-token")
    with exclusive(database):  # as `db restore` holds it while it swaps the file
        code, _, err = run(capsys, "--config", str(config), "run")
    assert code == 1, err
    assert "is being restored" in err
    assert not database.exists()  # neither created nor migrated under the restore
