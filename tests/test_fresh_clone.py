"""A fresh clone with nothing beside it passes the content and CLI tests.

This is what a new host gets from `git clone`: no `../shared`, no database, no
config. The clone reuses this test run's virtualenv (no second install), with the
clone first on the import path, and the test checks that the clone's code is what runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(),
    reason="needs git and a git checkout to clone",
)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    alone = tmp_path_factory.mktemp("nothing-beside")
    target = alone / "pledgebot"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert sorted(p.name for p in alone.iterdir()) == ["pledgebot"]  # no ../shared
    return target


def in_clone(clone: Path, *args: str, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISCORD_TOKEN", "PLEDGEBOT_CONFIG", "CI", "PYTHONPATH")
        and not k.startswith("PYTEST_")
    }
    env["PYTHONPATH"] = str(clone)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_clone_imports_its_own_code(clone: Path) -> None:
    done = in_clone(
        clone,
        "-c",
        "import bot, tests.conftest as c; print(bot.__file__); print(c.REPO)",
        ci=False,
    )
    assert done.returncode == 0, done.stderr
    module, repo = done.stdout.split()
    assert Path(module) == clone / "bot" / "__init__.py"
    assert Path(repo) == clone


def test_content_and_cli_tests_pass_in_a_fresh_clone(clone: Path) -> None:
    """Once, as CI runs it (CI=true: the PostgreSQL cases must run, not skip)."""
    done = in_clone(
        clone,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",  # one process: two workers would each start a PostgreSQL server
        "tests/test_content.py",
        "tests/test_cli.py",
        ci=True,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
    assert not (clone / "data" / "pledgebot.db").exists()  # the tests used their own files
