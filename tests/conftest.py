"""Shared fixtures: real SQLite files in a temporary directory, real content."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.pledges.content import load_content
from bot.store import Store
from tests.engine_rig import Rig, new_rig
from tests.pg_server import NoServer, start_server

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped content that a test may edit."""
    target = tmp_path / "content"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("*.db*"))
    return target


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "pledgebot.db")
    yield opened
    await opened.close()


@pytest.fixture
async def loaded_store(store: Store) -> Store:
    await load_content(store, DATA_DIR)
    return store


@pytest.fixture
async def rig(loaded_store: Store) -> AsyncIterator[Rig]:
    """The briefing engine on a real store, with a fake clock and a fake Discord."""
    made = new_rig(loaded_store)
    yield made
    await made.engine.stop()


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/pg_server.py): its DSN.

    Where none can be started, the reason is printed once and the PostgreSQL tests are
    skipped; with CI=true they fail instead. (A session fixture runs once: each later
    test gets the same skip or failure.)
    """
    try:
        server = start_server()
    except (NoServer, OSError, subprocess.SubprocessError) as exc:
        reason = f"no PostgreSQL server for the tests: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the PostgreSQL suite must run)", pytrace=False)
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        terminal = pytestconfig.pluginmanager.getplugin("terminalreporter")
        if capture is not None and terminal is not None:
            with capture.global_and_fixture_disabled():
                terminal.write_line(f"\nskipping the PostgreSQL tests, {reason}", yellow=True)
        pytest.skip("no PostgreSQL server (reason printed once, above)")
    try:
        yield server.dsn
    finally:
        server.stop()
