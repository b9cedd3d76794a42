"""`pledgebot db copy --from URL --to URL`: every row, SQLite <-> PostgreSQL, counts verified."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.storage.files import in_use
from tests.pg_server import drop_database, new_database
from tests.test_cli import run

BIG_ID = 1_234_567_890_123_456_789  # a Discord snowflake: BIGINT on PostgreSQL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (not migrated: `db copy` migrates it), dropped
    after. Sync, so the CLI's own asyncio.run can run inside the test."""
    dsn = asyncio.run(new_database(pg_server))
    yield dsn
    asyncio.run(drop_database(pg_server, dsn))


def config_for(tmp_path: Path, database: Path) -> Path:
    path = tmp_path / f"{database.stem}.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{database.name}"\n'
        f'[content]\ndirectory = "{Path(__file__).parent.parent / "data"}"\n',
        encoding="utf-8",
    )
    return path


def populate(capsys: pytest.CaptureFixture[str], tmp_path: Path, database: Path) -> Path:
    """Content loaded, statuses changed, schedules, deliveries, audit, settings, budget."""
    cfg = ("--config", str(config_for(tmp_path, database)))
    assert run(capsys, *cfg, "db", "load")[0] == 0
    for slug, status in (
        ("europol-partnership", "in-progress"),
        ("europol-partnership", "delivered"),
    ):
        code, _, err = run(
            capsys, *cfg, "status", "set", slug, status, "--note", "test",
            "--evidence", "https://example.org/evidence", "--by", "tester",
        )  # fmt: skip
        assert code == 0, err
    now = "2026-12-01T09:00:00.000000+00:00"
    conn = sqlite3.connect(database)
    with conn:
        for number in (1, 2, 5):  # a gap in the ids, kept by the copy
            conn.execute(
                "INSERT INTO schedules (id, guild_id, channel_id, created_by, timezone, "
                "time_of_day, days, content, role_id, state, active_since, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'Europe/London', '09:00', 'mon', "
                "'spotlight', ?, ?, ?, ?, ?)",
                (number, BIG_ID + number, BIG_ID, BIG_ID, None if number == 1 else BIG_ID,
                 "paused" if number == 5 else "active", now, now, now),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO schedule_changes (schedule_id, changed_by, changed_at, action, "
                "detail) VALUES (?, ?, ?, 'create', 'at 09:00')",
                (number, BIG_ID, now),
            )
        for slot, state, message in (
            ("2026-12-01T09:00Z", "sent", BIG_ID),
            ("2026-12-02T09:00Z", "failed", None),
            ("2026-12-03T09:00Z", "claimed", None),
        ):
            conn.execute(
                "INSERT INTO deliveries (schedule_id, slot, state, claimed_at, finished_at, "
                "message_id, late, manual, error, attempted_at) "
                "VALUES (2, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
                (slot, state, now, now, message, "429" if state == "failed" else None, now),
            )
        conn.execute(
            "INSERT INTO guild_settings VALUES (?, 'Europe/Paris', ?)", (BIG_ID + 1, BIG_ID)
        )
        conn.execute("INSERT INTO rate_budget VALUES ('discord', 1764579600.125)")
    conn.close()
    return database


def table_rows(database: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every pledgebot table, in a fixed order (FTS5 shadows left out)."""
    conn = sqlite3.connect(database)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'sqlite_%' AND name NOT LIKE 'search_index_%' ORDER BY name"
            )
        ]
        found = {}
        for name in names:
            columns = "rowid, *" if name == "search_index" else "*"
            found[name] = sorted(conn.execute(f"SELECT {columns} FROM {name}").fetchall(), key=repr)
        return found
    finally:
        conn.close()


def export(capsys: pytest.CaptureFixture[str], tmp_path: Path, database: Path) -> dict[str, str]:
    out = tmp_path / f"export-{database.stem}"
    code, _, err = run(
        capsys, "--config", str(config_for(tmp_path, database)), "db", "export", "--out", str(out)
    )
    assert code == 0, err
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.rglob("*")) if p.is_file()}


def test_round_trip_sqlite_postgresql_sqlite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    code, out, err = run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)
    assert code == 0, err
    assert "every table's row count verified" in out
    assert "status_history" in out and "search_index" in out

    back = tmp_path / "back.db"
    code, out, err = run(capsys, "db", "copy", "--from", pg_url, "--to", f"sqlite:///{back}")
    assert code == 0, err

    before, after = table_rows(first), table_rows(back)
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}
    assert before["schedules"] and before["deliveries"] and before["schedule_changes"]
    assert len(before["status_history"]) == 2
    assert after == before  # every row, ids and Discord ids included
    assert export(capsys, tmp_path, back) == export(capsys, tmp_path, first)


def test_postgresql_ids_continue_past_the_copied_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    assert run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)[0] == 0

    async def next_ids() -> tuple[int, int]:
        conn = await asyncpg.connect(pg_url)
        try:
            schedule = await conn.fetchval(
                "INSERT INTO schedules (guild_id, channel_id, created_by, timezone, content, "
                "active_since, created_at, updated_at) VALUES (1, 1, 1, 'UTC', 'x', '', '', '') "
                "RETURNING id"
            )
            history = await conn.fetchval(
                "INSERT INTO status_history (pledge_id, from_status, to_status, changed_at, "
                "note, changed_by) VALUES (1, 'a', 'b', '', '', '') RETURNING id"
            )
            return int(schedule), int(history)
        finally:
            await conn.close()

    assert asyncio.run(next_ids()) == (6, 3)


def test_copy_refuses_a_target_that_holds_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    assert run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)[0] == 0
    code, _, err = run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)
    assert code == 1
    assert "refusing to copy: the target" in err and "already holds data" in err
    assert "statements (1 rows)" in err
    assert "Traceback" not in err

    other = populate(capsys, tmp_path, tmp_path / "other.db")
    code, _, err = run(capsys, "db", "copy", "--from", pg_url, "--to", f"sqlite:///{other}")
    assert code == 1
    assert "already holds data" in err


def test_copy_refuses_while_a_bot_holds_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = populate(capsys, tmp_path, tmp_path / "first.db")
    target = tmp_path / "second.db"
    with in_use(first):
        code, _, err = run(
            capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", f"sqlite:///{target}"
        )
    assert code == 1
    assert f"refusing to copy: a pledgebot process is using {first}" in err
    with in_use(target):
        code, _, err = run(
            capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", f"sqlite:///{target}"
        )
    assert code == 1
    assert f"refusing to copy: a pledgebot process is using {target}" in err
    code, _, err = run(
        capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", f"sqlite:///{target}"
    )
    assert code == 0, err
    assert table_rows(target) == table_rows(first)


def test_copy_says_which_table_came_out_short(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.storage.copy as storage_copy

    first = populate(capsys, tmp_path, tmp_path / "first.db")
    copy_table = storage_copy._copy_table

    async def lossy(src, dst, name, source, target):  # type: ignore[no-untyped-def]
        await copy_table(src, dst, name, source, target)
        if name == "deliveries":
            async with dst.transaction() as tx:
                await tx.execute("DELETE FROM deliveries WHERE slot = '2026-12-02T09:00Z'")

    monkeypatch.setattr(storage_copy, "_copy_table", lossy)
    target = tmp_path / "second.db"
    code, _, err = run(
        capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", f"sqlite:///{target}"
    )
    assert code == 1
    assert "copy NOT complete: table deliveries has 3 rows" in err and "but 2 in" in err


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("postgresql://u:secret@h/db", "sqlite:///x.db", "a password is refused here"),
        ("sqlite:///x.db", "mysql://h/db", 'must be "sqlite:///FILE" or'),
    ],
)
def test_copy_refuses_bad_urls(
    capsys: pytest.CaptureFixture[str], source: str, target: str, message: str
) -> None:
    code, _, err = run(capsys, "db", "copy", "--from", source, "--to", target)
    assert code == 2
    assert message in err
    assert "secret" not in err


def test_copy_refuses_a_missing_source_and_itself(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.db"
    code, _, err = run(
        capsys, "db", "copy", "--from", f"sqlite:///{missing}", "--to", f"sqlite:///{tmp_path}/b.db"
    )
    assert (code, err.strip()) == (1, f"pledgebot: there is no database at {missing} to copy from")
    assert not missing.exists()
    code, _, err = run(
        capsys, "db", "copy", "--from", f"sqlite:///{missing}", "--to", f"sqlite:///{missing}"
    )
    assert code == 1 and "are the same database" in err


def test_the_copied_search_index_is_the_one_postgresql_builds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str, pg_server: str
) -> None:
    """`db copy` copies search_index as a table instead of rebuilding it: the rows are
    the ones the target's own rebuild makes, and the target's search finds them."""
    from bot.pledges.content import load_content
    from bot.store import Store
    from tests.conftest import DATA_DIR

    first = populate(capsys, tmp_path, tmp_path / "first.db")
    assert run(capsys, "db", "copy", "--from", f"sqlite:///{first}", "--to", pg_url)[0] == 0
    columns = "rowid, kind, slug, title, body, quotes, statement"

    async def indexes() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[str]]:
        rebuilt_url = await new_database(pg_server)
        try:
            rebuilt = await Store.open(rebuilt_url)
            try:
                await load_content(rebuilt, DATA_DIR)
                built = await rebuilt.rows(f"SELECT {columns} FROM search_index ORDER BY rowid")
            finally:
                await rebuilt.close()
        finally:
            await drop_database(pg_server, rebuilt_url)
        store = await Store.open(pg_url)
        try:
            copied = await store.rows(f"SELECT {columns} FROM search_index ORDER BY rowid")
            hits = [hit.slug for hit in await store.search("europol")]
        finally:
            await store.close()
        return [tuple(r) for r in built], [tuple(r) for r in copied], hits

    built, copied, hits = asyncio.run(indexes())
    assert copied == built
    assert "europol-partnership" in hits
