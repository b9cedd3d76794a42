"""A throwaway PostgreSQL server for the test session, started from the system's binaries.

One server per pytest session (initdb into a temporary folder directly under /tmp, a free
port on 127.0.0.1, its own unix socket folder, fsync off); each test that needs a
database gets an empty one with `CREATE DATABASE` (`new_database`), or a migrated one
emptied after the test that had it before (`MigratedDatabases`).

initdb and postgres refuse to run as root, which is how CI runs: as root, both run as
the `postgres` account (Debian's package makes it) or else `nobody`. That account must be
able to enter the folder, which is why it is made with `tempfile.mkdtemp()` in /tmp and
not under pytest's tmp_path (/tmp/pytest-of-root is 0700).

Binaries: `PG_BINDIR` if set, else the newest /usr/lib/postgresql/N/bin, else `initdb`
on PATH. `.ci/run` installs Debian's `postgresql` when none is there.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

_PR_SET_PDEATHSIG = 1
_database_numbers = itertools.count(1)


class NoServer(Exception):
    """No PostgreSQL server could be started here; the message says why."""


def find_bindir() -> Path:
    """`PG_BINDIR`, else the newest /usr/lib/postgresql/N/bin, else `initdb` on PATH."""
    if env := os.environ.get("PG_BINDIR"):
        return Path(env)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(v) if (v := Path(p).parts[4]).isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    if which := shutil.which("initdb"):
        return Path(which).resolve().parent
    raise NoServer("no PostgreSQL server binaries: set PG_BINDIR or install postgresql")


def _run_as() -> dict[str, Any]:
    """Popen arguments that run a child as an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise NoServer("running as root and no `postgres` or `nobody` account to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, after the uid change: the server gets SIGQUIT if pytest dies.

    SIGQUIT is PostgreSQL's immediate shutdown. Best effort only (Linux, glibc).
    """
    with contextlib.suppress(Exception):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


_prctl: Any
try:  # resolved in the parent: nothing to load in the forked child
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


class TempPostgres:
    """initdb into a fresh folder under /tmp, then `postgres` as a child process."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        for exe in ("initdb", "postgres"):
            if not (self.bindir / exe).is_file():
                raise NoServer(f"{self.bindir / exe} does not exist")
        self.ids = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="pledgebot-pg-", dir="/tmp"))
        if self.ids:
            os.chown(self.root, self.ids["user"], self.ids["group"])
        self.data = self.root / "data"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # Only C, C.UTF-8 and POSIX locales are certain to exist.
        self.env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}

    def initdb(self) -> None:
        args = [
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
            "-T", "english",  # a C locale would otherwise default to 'simple'
            "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, check=False, **self.ids
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise NoServer(f"initdb failed ({done.returncode}): {output[-2000:]}")

    def start(self, timeout: float = 30.0) -> None:
        for _attempt in range(5):  # the free port can be taken between probe and bind
            self.port = _free_port()
            with open(self.root / "postgres.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(self.bindir / "postgres"), "-D", str(self.data),
                        "-c", "listen_addresses=127.0.0.1",
                        "-c", f"port={self.port}",
                        # Debian's default socket folder is writable by `postgres` only
                        "-c", f"unix_socket_directories={self.root}",
                        "-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off",
                        "-c", "max_connections=200",
                    ],
                    cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent if _prctl is not None else None,
                    **self.ids,
                )  # fmt: skip
            if self._wait_ready(timeout):
                return
        raise NoServer("postgres did not start:\n" + self.log()[-2000:])

    def _wait_ready(self, timeout: float) -> bool:
        """postmaster.pid's 8th line reads `ready` once connections are accepted."""
        assert self.proc is not None
        pidfile = self.data / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. the port was taken: the caller tries another
            try:
                lines = pidfile.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
            time.sleep(0.01)
        self.proc.kill()
        self.proc.wait()
        return False

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), immediate (SIGQUIT) after 15 s; then remove the folder."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.send_signal(signal.SIGQUIT)
                    self.proc.wait(10)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> TempPostgres:
    """A running server, or NoServer saying why there can be none."""
    server = TempPostgres()
    try:
        server.initdb()
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def with_database(dsn: str, name: str) -> str:
    """The same server's DSN with another database name."""
    return dsn.rsplit("/", 1)[0] + "/" + name


async def new_database(server_dsn: str, *, template: str | None = None) -> str:
    """A fresh, empty database `t_<n>` on the server (or a copy of `template`); its DSN."""
    name = f"t_{next(_database_numbers)}"
    conn = await asyncpg.connect(server_dsn)
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return with_database(server_dsn, name)


async def drop_database(server_dsn: str, dsn: str) -> None:
    """Drop a database made by `new_database` (ending any session still on it)."""
    name = dsn.rsplit("/", 1)[1]
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


# What a migrated database's schema is, for telling whether a test changed it: every
# relation, column, constraint, index, trigger and function in `public`, and the rows of
# schema_version.
_SCHEMA_FINGERPRINT = """
SELECT md5(concat_ws('|',
  (SELECT string_agg(c.relname || ':' || c.relkind::text || ':' || coalesce(a.cols, ''), ','
                     ORDER BY c.relname)
     FROM pg_class c
     LEFT JOIN (SELECT attrelid, string_agg(attname || ' ' || format_type(atttypid, atttypmod)
                                            || ' ' || attnotnull, ',' ORDER BY attnum) AS cols
                  FROM pg_attribute WHERE attnum > 0 AND NOT attisdropped GROUP BY attrelid) a
       ON a.attrelid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace),
  (SELECT string_agg(conname || pg_get_constraintdef(oid), ',' ORDER BY conname)
     FROM pg_constraint WHERE connamespace = 'public'::regnamespace),
  (SELECT string_agg(pg_get_indexdef(indexrelid), ',' ORDER BY indexrelid::regclass::text)
     FROM pg_index WHERE indrelid::regclass::text NOT LIKE 'pg_%'),
  (SELECT string_agg(tgname || tgenabled::text, ',' ORDER BY tgname)
     FROM pg_trigger WHERE NOT tgisinternal),
  (SELECT string_agg(proname || md5(prosrc), ',' ORDER BY proname)
     FROM pg_proc WHERE pronamespace = 'public'::regnamespace),
  (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM schema_version t)
))
"""


class MigratedDatabases:
    """Migrated databases for one test session, emptied after each test and handed out
    again.

    `CREATE DATABASE ... TEMPLATE` copies a whole database (about 9 MB, catalogs included)
    and was most of the PostgreSQL server's CPU in a suite run; emptying the tables a test
    wrote to takes about a millisecond. A database comes back as a copy of the template
    would: every table empty but schema_version, every sequence at 1, no session left on
    it. One whose schema a test changed is dropped instead of reused.
    """

    def __init__(self, server_dsn: str, template: str) -> None:
        self.server_dsn = server_dsn
        self.template = template
        self.free: list[str] = []
        # Read from the first copy: the template's schema, and the statements that empty
        # a database with exactly that schema (the fingerprint vouches for the rest).
        self.fingerprint: str | None = None
        self.emptying: list[str] = []

    async def take(self) -> str:
        if self.free:
            return self.free.pop()
        dsn = await new_database(self.server_dsn, template=self.template)
        if self.fingerprint is None:
            conn = await asyncpg.connect(dsn)
            try:
                self.fingerprint = await conn.fetchval(_SCHEMA_FINGERPRINT)
                tables = await conn.fetch(
                    "SELECT quote_ident(tablename) FROM pg_tables"
                    " WHERE schemaname = 'public' AND tablename <> 'schema_version'"
                )
                sequences = await conn.fetch(
                    "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'"
                )
            finally:
                await conn.close()
            self.emptying = [";".join(f"DELETE FROM {t}" for (t,) in tables)]
            if sequences:
                resets = ", ".join(f"setval('{s}', 1, false)" for (s,) in sequences)
                self.emptying.append(f"SELECT {resets}")
        return dsn

    async def give_back(self, dsn: str) -> None:
        """Empty it for the next test, or drop it when that cannot be done safely."""
        if await self._emptied(dsn):
            self.free.append(dsn)
        else:
            await drop_database(self.server_dsn, dsn)

    async def _emptied(self, dsn: str) -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            # sessions a test left open (a bot process, a pool) go first, with their locks
            await conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if await conn.fetchval(_SCHEMA_FINGERPRINT) != self.fingerprint:
                return False
            async with conn.transaction():
                # no triggers (status_history refuses deletes) and no foreign-key checks
                await conn.execute("SET LOCAL session_replication_role = replica")
                for statement in self.emptying:
                    await conn.execute(statement)
            return True
        finally:
            await conn.close()
