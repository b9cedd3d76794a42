"""The files in deploy/ agree with the CLI: the command, the exit codes, the paths.

The units are parsed here (and checked by `systemd-analyze verify` where it exists);
nothing is installed or started.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from bot.__main__ import build_parser
from bot.client.runner import EX_CONFIG, EX_UNAVAILABLE
from bot.config import load_config
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
INSTALLED_AT = PurePosixPath("/opt/pledgebot")  # where the unit expects the checkout


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> every value given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def only(section: dict[str, list[str]], key: str) -> str:
    (value,) = section[key]
    return value


def pledgebot_args(command: list[str]) -> list[str]:
    """The arguments after the pledgebot console script, which must be the checkout's."""
    script = PurePosixPath(command[0])
    assert script == INSTALLED_AT / ".venv" / "bin" / "pledgebot"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert scripts["scripts"][script.name] == "bot.__main__:main"
    return command[1:]


def deployed_config() -> Path:
    service = unit("pledgebot.service")["Service"]
    environment = dict(v.split("=", 1) for v in service["Environment"])
    assert PurePosixPath(environment["PLEDGEBOT_CONFIG"]) == PurePosixPath(
        "/etc/pledgebot/config.toml"
    )
    return DEPLOY / "config.toml"


def test_the_service_runs_the_bot_with_the_token_from_an_environment_file() -> None:
    service = unit("pledgebot.service")["Service"]
    args = build_parser().parse_args(pledgebot_args(shlex.split(only(service, "ExecStart"))))
    assert args.command == "run"
    assert only(service, "EnvironmentFile") == "/etc/pledgebot/pledgebot.env"
    assert not any("DISCORD_TOKEN" in v for v in service.get("Environment", []))
    example = (DEPLOY / "pledgebot.env.example").read_text(encoding="utf-8")
    settings = [line for line in example.splitlines() if line and not line.startswith("#")]
    assert settings == ["DISCORD_TOKEN="]  # the token, and nothing to leak beside it
    assert only(service, "User") == "pledgebot" != "root"


def test_restarts_on_failure_but_not_on_a_refused_token() -> None:
    service = unit("pledgebot.service")["Service"]
    assert only(service, "Restart") == "on-failure"
    prevented = {int(code) for code in only(service, "RestartPreventExitStatus").split()}
    assert prevented == {EX_CONFIG}
    assert EX_UNAVAILABLE not in prevented  # Discord unreachable: try again later
    assert float(only(service, "RestartSec")) >= 5  # within systemd's start limit


def test_hardening_leaves_only_the_data_directory_writable() -> None:
    service = unit("pledgebot.service")["Service"]
    assert only(service, "NoNewPrivileges") == "yes"
    assert only(service, "ProtectSystem") == "strict"
    writable = PurePosixPath(only(service, "ReadWritePaths"))
    config = load_config(deployed_config(), environ={})
    assert PurePosixPath(config.database_path).parent == writable
    # the lock file restore uses, and the set-aside file, live beside the database
    assert PurePosixPath(str(config.database_path) + ".lock").parent == writable
    assert PurePosixPath(config.content_dir) == INSTALLED_AT / "data"
    assert config.metrics_listen == ("127.0.0.1", 9108)  # loopback only


def test_the_backup_timer_runs_the_cli_backup_into_the_data_directory() -> None:
    backup = unit("pledgebot-backup.service")["Service"]
    shell, flag, script = shlex.split(only(backup, "ExecStart"))
    assert (shell, flag) == ("/bin/sh", "-c")
    command = shlex.split(script.replace("%%", "%"))
    assert command[0] == "exec"
    args = build_parser().parse_args(pledgebot_args(command[1:]))
    assert (args.command, args.db_command) == ("db", "backup")
    writable = PurePosixPath(only(backup, "ReadWritePaths"))
    assert writable in PurePosixPath(str(args.file)).parents
    assert only(backup, "User") == only(unit("pledgebot.service")["Service"], "User")
    timer = unit("pledgebot-backup.timer")
    assert only(timer["Timer"], "OnCalendar")
    assert only(timer["Install"], "WantedBy") == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("name", ["pledgebot.service", "pledgebot-backup.service"])
def test_systemd_accepts_the_units(tmp_path: Path, name: str) -> None:
    """`systemd-analyze verify`, with the checkout's path pointed at this one's venv."""
    venv_bin = Path(sys.executable).parent
    for file in DEPLOY.glob("pledgebot*"):
        if file.suffix in (".service", ".timer"):
            text = file.read_text(encoding="utf-8")
            text = text.replace(f"{INSTALLED_AT}/.venv/bin", str(venv_bin))
            (tmp_path / file.name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
