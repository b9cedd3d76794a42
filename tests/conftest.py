"""Shared fixtures: real SQLite files in a temporary directory, real content, and (where a
server can be started) real PostgreSQL databases on a throwaway server.

`store_location` / `any_store` run a test on both backends (ids `[sqlite]` and
`[postgresql]`); `store` / `loaded_store` stay SQLite-only."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.pledges.content import load_content
from bot.store import Store
from tests.engine_rig import Rig, new_rig
from tests.pg_server import (
    MigratedDatabases,
    NoServer,
    drop_database,
    new_database,
    start_server,
    with_database,
)

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"


# Tests that share one expensive module-scoped fixture (two real processes over real clock
# minutes, once per backend; a fresh clone) run on one xdist worker, so the fixture runs
# once: module -> the fixture whose parameter splits them into groups ("" for none).
ONE_WORKER = {"test_engine_two_processes": "outcome", "test_fresh_clone": ""}
# What a developer may leave out while iterating (`-m "not slow"`): real processes, real
# clock minutes, a fresh clone, every benchmark.
SLOW = frozenset(
    {
        "test_engine_two_processes",
        "test_follow_processes",
        "test_fresh_clone",
        "test_robustness_crash",
        "test_bench",
        "test_startup_failures",
    }
)
# Workers for `-n auto`: the suite mostly waits (about one core busy on two), so more
# workers than cores finish sooner.
MIN_WORKERS = 6


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return max(MIN_WORKERS, os.cpu_count() or 1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        shared = ONE_WORKER.get(module)
        params = getattr(item, "callspec", None)
        if shared == "":
            item.add_marker(pytest.mark.xdist_group(module))
        elif shared and params is not None and shared in params.params:
            # no brackets: xdist reads a group name ending in "]" as part of the test id
            item.add_marker(pytest.mark.xdist_group(f"{module}-{params.params[shared]}"))
        if module in SLOW:
            item.add_marker(pytest.mark.slow)
    # The long tests first: xdist hands out work in this order, and a minute-long test
    # handed out last keeps its worker busy after every other has finished.
    items.sort(key=lambda item: item.path.stem not in SLOW)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (discord.py, pledgebot, every test module) lives for the
    whole run: frozen out of the collector's reach, so each full collection looks only at
    what the tests made since."""
    gc.collect()
    gc.freeze()


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


PG_TEMPLATE = "pledgebot_template"


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> str:
    """A database on the session's server with every migration applied, to copy from.

    Made once (migrating takes far longer than `CREATE DATABASE ... TEMPLATE`), and left
    without connections so that it can be copied.
    """

    async def make() -> None:
        import asyncpg

        from bot.storage.postgres import PostgresDatabase

        conn = await asyncpg.connect(pg_server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {PG_TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {PG_TEMPLATE}")
        finally:
            await conn.close()
        database = await PostgresDatabase.open(with_database(pg_server, PG_TEMPLATE))
        await database.close()

    asyncio.run(make())
    return PG_TEMPLATE


@pytest.fixture
async def pg_dsn(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's server (no migrations), dropped after."""
    dsn = await new_database(pg_server)
    yield dsn
    await drop_database(pg_server, dsn)


@pytest.fixture(scope="session")
def pg_migrated_databases(pg_server: str, pg_template: str) -> MigratedDatabases:
    return MigratedDatabases(pg_server, pg_template)


@pytest.fixture
async def pg_migrated_dsn(pg_migrated_databases: MigratedDatabases) -> AsyncIterator[str]:
    """A database with every migration applied and nothing else: a copy of the template,
    emptied after the test for the next one (tests/pg_server.py `MigratedDatabases`)."""
    dsn = await pg_migrated_databases.take()
    yield dsn
    await pg_migrated_databases.give_back(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a fresh store lives, once per backend (ids `[sqlite]`, `[postgresql]`): a
    SQLite file's `Path` in tmp_path (not yet created), or the DSN of a fresh, migrated
    PostgreSQL database (skipped, or failed with CI=true, when no server can start).

    Either goes to `Store.open(...)` as it is.
    """
    if request.param == "sqlite":
        return tmp_path / "pledgebot.db"
    return str(request.getfixturevalue("pg_migrated_dsn"))


@pytest.fixture
async def any_store(store_location: Path | str) -> AsyncIterator[Store]:
    """An opened store on each backend in turn (`store_location`), closed after."""
    opened = await Store.open(store_location)
    yield opened
    await opened.close()


@pytest.fixture
async def any_loaded_store(any_store: Store) -> Store:
    """`any_store` with the shipped content loaded."""
    await load_content(any_store, DATA_DIR)
    return any_store
