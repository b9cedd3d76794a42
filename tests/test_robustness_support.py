"""Helpers shared by the robustness tests (`tests/test_robustness_*.py`); no tests here.

The bot runs either in-process (`tests.e2e.running_bot`) or, where a test must kill it,
watch its exit code or read everything it prints, as a real `python -m bot run` subprocess
(`BotProcess`) whose config points `[discord]` at an emulator running in the test's own event
loop. Everything stays on 127.0.0.1. The benchmarks' bot processes are `BotProcess`es too
(`bench.procs.MilestoneBot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bot.local import Emulator
from tests.conftest import DATA_DIR, REPO

# What a user must never see: Python's traceback lines, and raw exception names or reprs.
LEAK_PATTERNS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"\n]*", line \d+'),
    re.compile(r"\b[A-Z]\w*(?:Error|Exception)(?::|\()"),  # ValueError: / KeyError(
    # module-qualified exception names: sqlite3.OperationalError, discord.errors.NotFound
    re.compile(r"\b(?:sqlite3|aiosqlite|discord|aiohttp|asyncio)(?:\.\w+)*\.[A-Z]\w*"),
)
APOLOGY = "something went wrong on our side"


def leaks(text: str, allowed: Any = ()) -> list[str]:
    """Traceback or exception text in `text`, ignoring matches that are the user's own input."""
    found = []
    for pattern in LEAK_PATTERNS:
        for match in pattern.finditer(text):
            if not any(isinstance(a, str) and match.group(0) in a for a in allowed):
                found.append(match.group(0))
    return found


async def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.02,
    explain: Callable[[], str] | None = None,
) -> None:
    """Poll `predicate` until it holds; a TimeoutError names what never happened (and
    `explain()` adds what the processes involved said)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def write_config(
    path: Path,
    *,
    database: Path | str,
    content: Path = DATA_DIR,
    emulator: Emulator | None = None,
    log_level: str = "INFO",
    extra: str = "",
) -> Path:
    """A pledgebot config file: `database` a SQLite file's path, or a PostgreSQL URL; with
    `emulator`, [discord] points at it."""
    where = f'path = "{database}"' if isinstance(database, Path) else f'url = "{database}"'
    text = (
        f'[database]\n{where}\n[content]\ndirectory = "{content}"\n'
        f'[logging]\nlevel = "{log_level}"\n'
    )
    if emulator is not None:
        text += (
            f'[discord]\napi_base_url = "{emulator.base_url}"\n'
            f'gateway_url = "{emulator.gateway_url}"\n'
        )
    path.write_text(text + extra, encoding="utf-8")
    return path


@contextlib.contextmanager
def no_collection_pauses() -> Iterator[None]:
    """No garbage collection in this process meanwhile, after one now.

    The emulator stamps each request when its event loop gets to it, and holds them to
    Discord's 50/s over any second. A full collection in this test process (earlier tests'
    garbage: emulators with thousands of objects) stopped that loop for 300-600 ms in
    suite runs; the requests that queued meanwhile were then stamped together and refused
    as a burst the bots never sent. Reference counting still frees everything else.
    (bench's `RigPauses` freezes the heap instead and unfreezes it after, which here would
    also hand back what tests/conftest.py froze for the whole run.)
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# For real bot processes sharing the emulator's strict 50/s: pace below it. The emulator
# stamps a request when its event loop gets to it, and on a loaded machine that loop and
# the bots' stall for tens of milliseconds and bunch requests into one second. The bots'
# own headroom (7%, sized so a fan-out still takes at most 1.1x the bound) covers 75 ms of
# that; pacing at 40 covers about 340 ms. Sharing is still what is tested: two processes
# at 40 each without the shared budget would send about 74 a second.
SHARED_PACING = "[schedules]\nglobal_rate_per_second = 40\n"


def cli_env(config: Path | None, token: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "PLEDGEBOT_CONFIG")}
    if config is not None:
        env["PLEDGEBOT_CONFIG"] = str(config)
    if token is not None:
        env["DISCORD_TOKEN"] = token
    env.update(extra)
    return env


def run_cli(
    *args: str,
    config: Path | None,
    token: str | None = None,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` to completion (the operator CLI; no Discord involved)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=cli_env(config, token),
        preexec_fn=preexec_fn,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit code 1, one `pledgebot: ...` line on stderr, no traceback, naming `expected`."""
    shown = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 1, shown
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    assert lines[0].startswith("pledgebot: "), shown
    assert "Traceback" not in done.stderr + done.stdout, shown
    for text in expected:
        assert text in done.stderr, shown


# What `BotProcess` runs unless told otherwise: the bot as an operator runs it.
BOT_RUN = ("-m", "bot", "run")


class BotProcess:
    """A bot as a child process: `python ARGV` (by default `-m bot run`) in the repository,
    with `config` and `token` in its environment.

    Each `start` is a run, numbered from 1. A run's stderr goes to WORKDIR/NAME-RUN-err.log
    and its stdout to NAME-RUN-out.log: files, because a pipe nobody reads fills up and
    blocks the bot. A subclass that reads stdout while the bot runs spawns it with
    `pipe_stdout` (`bench.procs.MilestoneBot`). `async with` starts and stops it.
    """

    grace = 10.0  # seconds `stop` waits after SIGTERM before SIGKILL

    def __init__(
        self,
        workdir: Path,
        config: Path,
        token: str,
        name: str = "bot",
        *,
        argv: Sequence[str] = BOT_RUN,
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.token = token
        self.name = name
        self.argv = tuple(argv)
        self.runs = 0
        self.spawned_at = 0.0  # time.monotonic() just before the latest run was spawned
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def stdout_path(self, run: int | None = None) -> Path:
        return self.workdir / f"{self.name}-{run or self.runs}-out.log"

    def stderr_path(self, run: int | None = None) -> Path:
        return self.workdir / f"{self.name}-{run or self.runs}-err.log"

    @property
    def log_paths(self) -> list[Path]:
        """Every run's log files, first run first."""
        return [
            path
            for run in range(1, self.runs + 1)
            for path in (self.stderr_path(run), self.stdout_path(run))
            if path.exists()
        ]

    async def start(self) -> None:
        await self._spawn()

    async def _spawn(self, *, pipe_stdout: bool = False, pipe_stdin: bool = False) -> None:
        """The next run. Its stderr goes to its file, and so does its stdout unless
        `pipe_stdout` (then the caller must read `proc.stdout` as the bot runs); stdin is
        empty unless `pipe_stdin`."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.runs += 1
        with contextlib.ExitStack() as files:
            stderr = files.enter_context(self.stderr_path().open("wb"))
            stdout = (
                asyncio.subprocess.PIPE
                if pipe_stdout
                else files.enter_context(self.stdout_path().open("wb"))
            )
            self.spawned_at = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.argv,
                cwd=REPO,
                env=cli_env(self.config, self.token),
                stdout=stdout,
                stderr=stderr,
                stdin=asyncio.subprocess.PIPE if pipe_stdin else subprocess.DEVNULL,
            )

    async def kill(self) -> None:
        """kill -9 this child (by its pid) and reap it."""
        assert self.proc is not None
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM, then SIGKILL if it lingers `grace` s; returns the exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.grace)
            except TimeoutError:
                await self.kill()
        assert proc.returncode is not None
        return proc.returncode

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def output(self) -> str:
        """Everything every run wrote to its log files."""
        return "".join(p.read_text("utf-8", errors="replace") for p in self.log_paths)

    def stderr(self, run: int | None = None) -> str:
        """What a run (by default the latest) wrote to stderr; OSError if it never started."""
        return self.stderr_path(run).read_text("utf-8", errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]


def snapshot(database: Path, tables: tuple[str, ...] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table (FTS internals excepted), read through a separate connection."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        if tables is None:
            tables = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'search_index_%' ORDER BY name"
                )
            )
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    finally:
        conn.close()


def integrity(database: Path) -> str:
    conn = sqlite3.connect(database, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def rows(database: Path, sql: str, params: Mapping[str, Any] | tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
