"""`pledgebot` operator commands, run in-process against real database files."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.storage.schema import SCHEMA_VERSION
from bot.store import Store
from tests.conftest import DATA_DIR


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\npath = "{tmp_path / "cli.db"}"\n[content]\ndirectory = "{DATA_DIR}"\n',
        encoding="utf-8",
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_init_load_check(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    cfg = ("--config", str(config_file))
    assert run(capsys, *cfg, "db", "init")[0] == 0
    code, out, _ = run(capsys, *cfg, "db", "load")
    assert code == 0
    assert "6 pledges, 1 power, " in out
    code, out, err = run(capsys, *cfg, "db", "check")
    assert code == 0, err
    for slug in (
        "europe-security-agreement",
        "europol-partnership",
        "police-officers-to-europol",
        "organised-crime-strategy",
        "strengthened-civil-orders",
        "scpo-organised-immigration-crime",
        "serious-crime-prevention-orders",
    ):
        assert slug in out
    assert "quotes verified against their statement: 28/28" in out
    assert "source texts matching their SHA-256: 1/1" in out
    assert "SHA-256 495fd07c9b0219265ed5ac9607c9aca6126d3b9c78189dbf889d4d650b1bd82c" in out


def test_check_finds_a_source_text_changed_in_the_database(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    """Issue 9, item 4: the statement record pins its text's SHA-256; `db check` verifies it."""
    cfg = ("--config", str(config_file))
    run(capsys, *cfg, "db", "load")
    conn = sqlite3.connect(tmp_path / "cli.db")
    with conn:
        conn.execute(
            "UPDATE statements SET source_text = replace(source_text, 'This week', 'Today')"
        )
    conn.close()
    code, out, err = run(capsys, *cfg, "db", "check")
    assert code == 1
    assert "quotes verified against their statement: 28/28" in out  # no quote was touched
    assert "source texts matching their SHA-256: 0/1" in out
    assert "NOT VERIFIED: statement 'smuggling-gangs': source text SHA-256 is" in err


def test_check_on_an_empty_store_fails_clearly(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    code, _, err = run(capsys, "--config", str(config_file), "db", "check")
    assert code == 1
    assert "pledgebot db load" in err


def test_status_set_and_errors(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    cfg = ("--config", str(config_file))
    run(capsys, *cfg, "db", "load")
    code, out, _ = run(
        capsys,
        *cfg,
        "status",
        "set",
        "europol-partnership",
        "in-progress",
        "--note",
        "begun",
        "--evidence",
        "https://example.org/begun",
    )
    assert code == 0
    assert "not-yet-rated -> in-progress" in out
    code, _, err = run(capsys, *cfg, "status", "set", "nope", "not-yet-rated", "--note", "x")
    assert code == 1
    assert "no pledge with slug 'nope'" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, *cfg, "status", "set", "europol-partnership", "done", "--note", "x")
    assert code == 2
    assert "invalid choice" in err


def test_export_round_trips(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    cfg = ("--config", str(config_file))
    run(capsys, *cfg, "db", "load")
    code, out, _ = run(capsys, *cfg, "db", "export", "--out", str(tmp_path / "out"))
    assert code == 0
    assert "smuggling-gangs.toml" in out
    code, out, _ = run(capsys, *cfg, "db", "load", "--dir", str(tmp_path / "out"))
    assert code == 0


def test_bad_content_fails_without_traceback(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.toml").write_text("schema = [", encoding="utf-8")
    code, _, err = run(capsys, "--config", str(config_file), "db", "load", "--dir", str(bad))
    assert code == 1
    assert "broken.toml: not valid TOML" in err
    assert "Traceback" not in err


def test_bad_config_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[schedules]\ndefault_timezone = "Mars/Olympus"\n', encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "db", "check")
    assert code == 2
    assert "default_timezone" in err


def test_unwritable_database_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\npath = "{blocker / "sub" / "x.db"}"\n', encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "db", "init")
    assert code == 1
    assert err.startswith("pledgebot:")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "DISCORD_TOKEN is not set"),
        (["run", "--shard-count", "2", "--shard-ids", "2"], "between 0 and 1"),
        (["run", "--shard-ids", "1"], "needs --shard-count"),
    ],
)
def test_run_refuses_clearly(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config_file: Path,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    code, _, err = run(capsys, "--config", str(config_file), *argv)
    assert code == 1
    assert message in err
    assert "pledgebot console" in err or "shard" in err


@pytest.mark.parametrize(
    ("status", "evidence", "message"),
    [
        ("in-progress", None, "needs an evidence link"),
        ("delivered", "javascript:alert(1)", "only http:// and https:// links are accepted"),
        ("broken", "ftp://example.org/x", "only http:// and https:// links are accepted"),
        ("stalled", "https://", "the link names no web site"),
        ("not-yet-rated", "file:///etc/passwd", "only http:// and https:// links are accepted"),
    ],
)
def test_a_rating_needs_a_web_evidence_link(
    capsys: pytest.CaptureFixture[str],
    config_file: Path,
    tmp_path: Path,
    status: str,
    evidence: str | None,
    message: str,
) -> None:
    """Issue 9, item 5: any status but not-yet-rated needs evidence; http(s) only."""
    cfg = ("--config", str(config_file))
    run(capsys, *cfg, "db", "load")
    link = [] if evidence is None else ["--evidence", evidence]
    argv = ["status", "set", "europol-partnership", status, "--note", "n", *link]
    code, _, err = run(capsys, *cfg, *argv)
    assert code == 1
    assert f"status not recorded: {message}" in err or message in err
    assert "Traceback" not in err
    history = asyncio.run(status_history(tmp_path / "cli.db"))
    assert history == []


async def status_history(path: Path) -> list[str]:
    store = await Store.open(path)
    try:
        return [c.to_status for c in await store.status_history("europol-partnership")]
    finally:
        await store.close()


def test_back_to_not_yet_rated_needs_no_evidence(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    cfg = ("--config", str(config_file))
    run(capsys, *cfg, "db", "load")
    argv = ("status", "set", "europol-partnership")
    assert (
        run(capsys, *cfg, *argv, "delivered", "--note", "d", "--evidence", "http://e.org")[0] == 0
    )
    assert run(capsys, *cfg, *argv, "not-yet-rated", "--note", "withdrawn")[0] == 0
    assert asyncio.run(status_history(tmp_path / "cli.db")) == ["delivered", "not-yet-rated"]


def test_coverage_would_have_shown_the_missing_claim(
    capsys: pytest.CaptureFixture[str], config_file: Path, content_dir: Path
) -> None:
    """Issue 9, item 7: without the climate claim, coverage flags its sentence."""
    cfg = ("--config", str(config_file))
    path = content_dir / "smuggling-gangs.toml"
    text = path.read_text("utf-8")
    start = text.index('[[claims]]\nslug = "smashing-gangs')
    end = text.index("[[claims]]", start + 1)
    path.write_text(text[:start] + text[end:], "utf-8")
    code, out, _ = run(
        capsys, *cfg, "content", "coverage", "smuggling-gangs", "--dir", str(content_dir)
    )
    assert code == 0
    lines = out.splitlines()
    belief = next(i for i, line in enumerate(lines) if "I believe that smashing" in line)
    assert "NOT QUOTED" in lines[belief + 1]
    assert "14 sentences, 12 quoted, 2 quoted by no record" in lines[0]
    code, out, _ = run(capsys, *cfg, "content", "coverage")  # today's content, all statements
    lines = out.splitlines()
    belief = next(i for i, line in enumerate(lines) if "I believe that smashing" in line)
    assert "claim smashing-gangs-as-important-as-climate-and-terrorism" in lines[belief + 1]


def test_coverage_of_an_unknown_statement_fails_clearly(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    code, _, err = run(capsys, "--config", str(config_file), "content", "coverage", "nope")
    assert code == 1
    assert "no statement 'nope'" in err and "smuggling-gangs" in err


def test_content_new_refuses_to_overwrite(
    capsys: pytest.CaptureFixture[str], config_file: Path, content_dir: Path
) -> None:
    cfg = ("--config", str(config_file), "content", "new", "--dir", str(content_dir))
    source = content_dir / "sources" / "smuggling-gangs.txt"
    before = {p: p.read_bytes() for p in content_dir.rglob("*") if p.is_file()}
    code, _, err = run(capsys, *cfg, "--source", str(source), "--slug", "smuggling-gangs")
    assert code == 1
    assert "already exists" in err
    code, _, err = run(capsys, *cfg, "--source", str(source), "--slug", "Bad Slug")
    assert code == 1
    assert "lowercase letters" in err
    assert before == {p: p.read_bytes() for p in content_dir.rglob("*") if p.is_file()}
    shutil.rmtree(content_dir / "sources")
    code, _, err = run(capsys, *cfg, "--source", str(source), "--slug", "again")
    assert code == 1
    assert "cannot read the source" in err


# --- [database] url = "postgresql://..." ------------------------------------------------


@pytest.fixture
def pg_config(tmp_path: Path, pg_server: str) -> Path:
    """A config naming a fresh PostgreSQL database (sync: the CLI runs its own loop)."""
    from tests.pg_server import new_database

    path = tmp_path / "pg.toml"
    url = asyncio.run(new_database(pg_server))
    path.write_text(f'[database]\nurl = "{url}"\n[content]\ndirectory = "{DATA_DIR}"\n')
    return path


def test_init_on_postgresql(capsys: pytest.CaptureFixture[str], pg_config: Path) -> None:
    code, out, err = run(capsys, "--config", str(pg_config), "db", "init")
    assert code == 0, err
    assert out.startswith("database ready: postgresql://postgres@127.0.0.1:")
    assert f"(schema version {SCHEMA_VERSION})" in out


@pytest.mark.parametrize(
    ("action", "named"),
    [("backup", "pg_dump --format=custom --file="), ("restore", "pg_restore --clean")],
)
def test_backup_and_restore_on_postgresql_name_the_server_tools(
    capsys: pytest.CaptureFixture[str], pg_config: Path, tmp_path: Path, action: str, named: str
) -> None:
    code, out, err = run(capsys, "--config", str(pg_config), "db", action, str(tmp_path / "x"))
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert (
        f"this database is on PostgreSQL: {action} " in err
        or "this database is on PostgreSQL" in err
    )
    assert named in err
    assert not (tmp_path / "x").exists()


def test_a_sqlite_url_in_the_config_is_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "url.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///url.db"\n[content]\ndirectory = "{DATA_DIR}"\n'
    )
    code, out, err = run(capsys, "--config", str(config), "db", "init")
    assert code == 0, err
    assert out.startswith(f"database ready: {tmp_path / 'url.db'} ")
    assert (tmp_path / "url.db").is_file()


def test_a_password_in_the_configured_url_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "pw.toml"
    config.write_text('[database]\nurl = "postgresql://bot:hunter2@db.internal/pledgebot"\n')
    code, _, err = run(capsys, "--config", str(config), "db", "init")
    assert code == 2
    assert "database.url: a password is refused here" in err and "PGPASSWORD" in err
    assert "hunter2" not in err


def test_load_check_export_on_postgresql_match_sqlite(
    capsys: pytest.CaptureFixture[str], pg_config: Path, config_file: Path, tmp_path: Path
) -> None:
    exported = {}
    for name, config in (("postgresql", pg_config), ("sqlite", config_file)):
        cfg = ("--config", str(config))
        assert run(capsys, *cfg, "db", "load")[0] == 0
        code, out, err = run(capsys, *cfg, "db", "check")
        assert code == 0, err
        assert "quotes verified against their statement: 28/28" in out
        assert ("not checked here" in out) == (name == "postgresql")
        out_dir = tmp_path / f"export-{name}"
        assert run(capsys, *cfg, "db", "export", "--out", str(out_dir))[0] == 0
        exported[name] = {
            str(p.relative_to(out_dir)): p.read_text()
            for p in sorted(out_dir.rglob("*"))
            if p.is_file()
        }
    assert exported["postgresql"] == exported["sqlite"]
