"""`pledgebot` operator commands, run in-process against real database files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main
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
    assert "6 pledges, 1 powers" in out
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
    assert "quotes verified against their statement: 20/20" in out


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
        capsys, *cfg, "status", "set", "europol-partnership", "in-progress", "--note", "begun"
    )
    assert code == 0
    assert "not-yet-rated -> in-progress" in out
    code, _, err = run(capsys, *cfg, "status", "set", "nope", "delivered", "--note", "x")
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
