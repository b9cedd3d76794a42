"""Database faults: read-only file, missing directory, lock held by another process, full disk.

Each gives a clear error: the operator CLI exits 1 with one `pledgebot: ...` line and no
traceback; the bot answers the member privately (an apology with an error id), keeps
running and works again once the fault is gone. Nothing half-written stays behind:
`PRAGMA integrity_check` is ok afterwards and the tables are as they were.

How each fault is made, honestly, when the tests run as root (as in CI):
- read-only: `chmod` does not stop root, so root uses `chattr +i` (an immutable file,
  which root cannot write either). Where that is refused too (no CAP_LINUX_IMMUTABLE, or a
  filesystem without the flag, such as overlayfs), the read-only tests skip, saying so.
- locked: another connection holds `BEGIN EXCLUSIVE` beyond the store's busy_timeout (5 s).
- full disk, CLI: a 2 MiB tmpfs filled to the last byte when this process may mount one
  (root with CAP_SYS_ADMIN); otherwise RLIMIT_FSIZE in the child, so it cannot grow a file.
- full disk, bot: `PRAGMA max_page_count` on the bot's own (single) connection, which gives
  SQLITE_FULL, the error SQLite reports for a full disk, on any machine.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.client.app import PledgeBot
from bot.local import Emulator
from bot.local.interactions import InteractionResult
from bot.pledges.content import load_content
from bot.store import Store
from tests.conftest import DATA_DIR
from tests.e2e import World, embed_text, running_bot, with_config, world
from tests.test_robustness_support import (
    APOLOGY,
    BotProcess,
    assert_one_line_error,
    integrity,
    leaks,
    rows,
    run_cli,
    snapshot,
    write_config,
)

ADMINISTRATOR = 1 << 3
EVIDENCE = "https://example.org/evidence"  # a rated status needs an evidence link
LONG_NOTE = "n" * 490


# -- making faults --------------------------------------------------------------------


@contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Make `path` unwritable for this process (and its children); yields how."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield "chmod 444"
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    refused = "chattr is not installed"
    if chattr is not None:
        done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
        refused = done.stderr.strip()
        if done.returncode == 0:
            try:
                assert not os.access(path, os.W_OK)
                yield "chattr +i"
            finally:
                subprocess.run([chattr, "-i", str(path)], check=True)
            return
    pytest.skip(f"running as root and `chattr +i` is refused here ({refused}): no honest way")


@contextmanager
def exclusive_lock(database: Path) -> Iterator[None]:
    """Another process's connection holding the write lock (WAL readers still read)."""
    locker = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        yield
        locker.execute("ROLLBACK")
    finally:
        locker.close()


@contextmanager
def small_filesystem(directory: Path) -> Iterator[bool]:
    """Mount a 2 MiB tmpfs at `directory` if allowed; yields whether it is mounted."""
    directory.mkdir()
    try:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
    except FileNotFoundError:
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Write zeros into `directory` until its filesystem has no space left."""
    filler = directory / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def no_file_growth() -> None:
    """preexec_fn: this child cannot write a file beyond 4 KiB (EFBIG, not a signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


async def loaded_database(path: Path) -> Path:
    store = await Store.open(path)
    try:
        await load_content(store, DATA_DIR)
    finally:
        await store.close()
    return path


def status_set(config: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    note = "disk test " + "x" * 3000
    return run_cli(
        "status",
        "set",
        "europol-partnership",
        "stalled",
        "--note",
        note,
        "--evidence",
        EVIDENCE,
        config=config,
        **options,
    )


# -- the operator CLI -----------------------------------------------------------------


async def test_cli_on_a_read_only_database_fails_in_one_line(tmp_path: Path) -> None:
    database = await loaded_database(tmp_path / "ro.db")
    config = write_config(tmp_path / "c.toml", database=database)
    before = snapshot(database)
    with read_only(database):
        for args in (("db", "load"), ("status", "set", "europol-partnership", "stalled")):
            extra = ("--note", "x", "--evidence", EVIDENCE) if args[0] == "status" else ()
            done = await asyncio.to_thread(run_cli, *args, *extra, config=config)
            assert_one_line_error(done, "readonly database")
        check = await asyncio.to_thread(run_cli, "db", "check", config=config)
        assert check.returncode == 0, check.stderr  # reading still works
    assert snapshot(database) == before
    assert integrity(database) == "ok"
    assert (await asyncio.to_thread(status_set, config)).returncode == 0


def test_cli_creates_a_missing_database_directory(tmp_path: Path) -> None:
    database = tmp_path / "not" / "yet" / "there" / "pledgebot.db"
    config = write_config(tmp_path / "c.toml", database=database)
    init = run_cli("db", "init", config=config)
    assert init.returncode == 0, init.stderr
    load = run_cli("db", "load", config=config)
    assert load.returncode == 0, load.stderr
    assert rows(database, "SELECT count(*) FROM pledges") == [(6,)]
    assert integrity(database) == "ok"


def test_cli_on_an_uncreatable_database_directory_fails_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", "utf-8")
    config = write_config(tmp_path / "c.toml", database=blocker / "db" / "pledgebot.db")
    for args in (("db", "init"), ("db", "load"), ("db", "check")):
        assert_one_line_error(run_cli(*args, config=config), str(blocker))


async def test_cli_on_a_locked_database_fails_in_one_line(tmp_path: Path) -> None:
    database = await loaded_database(tmp_path / "locked.db")
    config = write_config(tmp_path / "c.toml", database=database)
    before = snapshot(database)
    with exclusive_lock(database):
        started = time.monotonic()
        load, status, check = await asyncio.gather(
            asyncio.to_thread(run_cli, "db", "load", config=config),
            asyncio.to_thread(status_set, config),
            asyncio.to_thread(run_cli, "db", "check", config=config),
        )
        waited = time.monotonic() - started
    assert_one_line_error(load, "database is locked")
    assert_one_line_error(status, "database is locked")
    assert check.returncode == 0, check.stderr  # readers are not blocked (WAL)
    assert 4.5 < waited < 30  # it waited out busy_timeout rather than failing at once
    assert snapshot(database) == before
    assert integrity(database) == "ok"


async def test_cli_on_a_full_disk_fails_in_one_line(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small") as mounted:
        if mounted:  # a real full filesystem: ENOSPC
            database = await loaded_database(tmp_path / "small" / "full.db")
            config = write_config(tmp_path / "c.toml", database=database)
            before = snapshot(database)
            filler = fill(tmp_path / "small")
            done = await asyncio.to_thread(status_set, config)
            filler.unlink()
        else:  # the child cannot grow any file: EFBIG
            database = await loaded_database(tmp_path / "full.db")
            config = write_config(tmp_path / "c.toml", database=database)
            before = snapshot(database)
            done = await asyncio.to_thread(status_set, config, preexec_fn=no_file_growth)
        assert_one_line_error(done, f"database error on {database}: ")
        assert snapshot(database) == before
        assert integrity(database) == "ok"
        check = await asyncio.to_thread(run_cli, "db", "check", config=config)
        assert check.returncode == 0, check.stderr
        again = await asyncio.to_thread(status_set, config)  # space again: it works
        assert again.returncode == 0, again.stderr
        assert rows(database, "SELECT count(*) FROM status_history") == [(1,)]


# -- the bot --------------------------------------------------------------------------


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


def visible(result: InteractionResult) -> str:
    texts = [embed_text(result.message)] if result.message else []
    texts += [embed_text(f) for f in result.followups]
    return "\n".join(texts)


def private(result: InteractionResult) -> bool:
    return result.ephemeral and all(f["flags"] & (1 << 6) for f in result.followups)


async def still_answering(w: World, bot: PledgeBot) -> None:
    assert not bot.is_closed()
    about = await w.emu.run_command(w.guild, "about", user=w.member)
    assert "Status vocabulary" in visible(about)


@pytest.mark.e2e
async def test_bot_on_a_read_only_database_apologises_and_keeps_running(w: World) -> None:
    database = w.config.database_path
    async with running_bot(w):
        pass  # first start: content loaded, commands synced (both write)
    before = snapshot(database)
    with read_only(database):
        async with running_bot(w) as bot:  # starts: nothing to write
            shown = await w.emu.run_command(
                w.guild, "pledge show", options={"pledge": "europol-partnership"}, user=w.member
            )
            refused = await w.emu.run_command(
                w.guild, "briefing timezone", options={"tz": "Europe/London"}, user=w.moderator
            )
            await still_answering(w, bot)
    assert "New partnership with Europol" in visible(shown)  # reading works
    assert private(refused)
    assert APOLOGY in visible(refused) and "error id" in visible(refused)
    assert leaks(visible(refused)) == []
    assert w.emu.violations == []
    assert snapshot(database) == before
    assert integrity(database) == "ok"
    async with running_bot(w):  # writable again: the same command works
        done = await w.emu.run_command(
            w.guild, "briefing timezone", options={"tz": "Europe/London"}, user=w.moderator
        )
    assert "Europe/London" in visible(done)


@pytest.mark.e2e
async def test_the_bot_refuses_to_start_on_a_read_only_new_database(tmp_path: Path) -> None:
    database = tmp_path / "new.db"
    store = await Store.open(database)  # migrated, no content: starting must write
    await store.close()
    before = snapshot(database)
    async with Emulator() as emu:
        emu.add_guild("Demo")
        config = write_config(tmp_path / "c.toml", database=database, emulator=emu)
        bot = BotProcess(tmp_path, config, emu.token)
        with read_only(database):
            await bot.start()
            try:
                code = await bot.wait(30)
            finally:
                await bot.stop()
    assert code == 1, bot.tail()
    lines = [line for line in bot.stderr().splitlines() if line.startswith("pledgebot:")]
    assert lines == [
        f"pledgebot: database error on {database}: attempt to write a readonly database"
    ]
    assert "Traceback" not in bot.output()
    assert snapshot(database) == before
    assert integrity(database) == "ok"


@pytest.mark.e2e
async def test_bot_starts_with_a_missing_database_directory(w: World, tmp_path: Path) -> None:
    database = tmp_path / "new" / "dir" / "bot.db"
    async with running_bot(w, with_config(w, database_path=database)) as bot:
        await still_answering(w, bot)
    assert integrity(database) == "ok"


LOCKED_COMMANDS = {
    # answered through commands.ui.answer (defers after 1.5 s)
    "operator status": {
        "pledge": "europol-partnership",
        "status": "stalled",
        "note": "locked test",
        "evidence": EVIDENCE,
    },
    # the moderator command that creates a schedule
    "briefing schedule": {"time": "09:00", "content": "digest"},
}


@pytest.mark.e2e
@pytest.mark.parametrize("command", list(LOCKED_COMMANDS))
async def test_bot_on_a_locked_database_answers_privately_in_time(w: World, command: str) -> None:
    operator = w.emu.add_user("operator", permissions=ADMINISTRATOR | (1 << 5))
    options: dict[str, Any] = dict(LOCKED_COMMANDS[command])
    if command == "briefing schedule":
        options["channel"] = w.briefings
    config = with_config(w, operator_ids=frozenset({operator.id}))
    database = w.config.database_path
    async with running_bot(w, config) as bot:
        before = snapshot(database)
        with exclusive_lock(database):
            try:
                result = await w.emu.run_command(
                    w.guild, command, options=options, user=operator, timeout=8
                )
            except TimeoutError as exc:
                pytest.fail(
                    f"/{command} got no answer while the database was locked ({exc}); "
                    f"what Discord saw: {w.emu.violations}"
                )
        after = snapshot(database)
        again = await w.emu.run_command(w.guild, command, options=options, user=operator)
        await still_answering(w, bot)
    assert private(result)
    assert APOLOGY in visible(result), visible(result)
    assert leaks(visible(result)) == []
    assert after == before
    assert w.emu.violations == []
    assert APOLOGY not in visible(again)  # lock gone: the same command works
    assert integrity(database) == "ok"


@pytest.mark.e2e
async def test_bot_on_a_full_database_apologises_and_recovers(w: World) -> None:
    operator = w.emu.add_user("operator", permissions=ADMINISTRATOR)
    config = with_config(w, operator_ids=frozenset({operator.id}))
    database = w.config.database_path
    statuses = ("stalled", "in-progress")
    recorded = 0
    async with running_bot(w, config) as bot:
        assert bot.services is not None
        conn = bot.services.store.db.writer  # SQLite's own connection
        async with conn.execute("PRAGMA page_count") as cursor:
            (pages,) = await cursor.fetchone()  # type: ignore[misc]
        await conn.execute(f"PRAGMA max_page_count = {pages}")
        for attempt in range(60):  # each change adds ~500 bytes: a page fills up soon
            before = snapshot(database)
            options = {
                "pledge": "europol-partnership",
                "status": statuses[attempt % 2],
                "note": f"{attempt} {LONG_NOTE}",
                "evidence": EVIDENCE,
            }
            result = await w.emu.run_command(
                w.guild, "operator status", options=options, user=operator
            )
            if APOLOGY in visible(result):
                break
            recorded += 1
        else:
            pytest.fail("60 status changes fitted in a database that could not grow")
        assert private(result)
        assert leaks(visible(result)) == []
        assert snapshot(database) == before  # the refused change left nothing behind
        await still_answering(w, bot)
        await conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        again = await w.emu.run_command(w.guild, "operator status", options=options, user=operator)
        assert APOLOGY not in visible(again)
    assert integrity(database) == "ok"
    async with running_bot(w, config):  # restart
        history = await w.emu.run_command(
            w.guild, "pledge history", options={"pledge": "europol-partnership"}, user=w.member
        )
    assert visible(history).count(LONG_NOTE[:50]) >= 1
    assert rows(database, "SELECT count(*) FROM status_history") == [(recorded + 1,)]
    assert w.emu.violations == []
