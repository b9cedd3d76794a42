"""The database as a file: who is using it, online backup, restore, and copy.

Copying `pledgebot.db` while the bot runs loses whatever still sits in its `-wal` file, so
backups go through SQLite's online backup API instead: one consistent snapshot, taken
while the bot keeps writing (WAL readers never block writers).

Restore must not swap the file under a running bot. Every pledgebot process that opens
the database (the bot, the console, and the operator CLI) holds a shared `flock` on
`<database>.lock` for as long as it has the database open; `restore` takes that lock
exclusively, without waiting, and refuses if it cannot. The kernel drops a process's lock
when it exits, even on `kill -9`, so no stale lock file can block a restore.

Backup and restore are SQLite's: a PostgreSQL server has its own (`pg_dump`,
`pg_restore`). `bot.storage.copy` moves every row between any two pledgebot databases.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bot.errors import OperatorError, StoreError
from bot.storage.schema import SCHEMA_VERSION

# How long a backup or restore waits for another connection's lock (the bot's busy time).
BUSY_TIMEOUT_SECONDS = 30
# Tables every pledgebot database has: a file without them is not one of ours.
REQUIRED_TABLES = frozenset({"meta", "statements", "pledges", "schedules", "deliveries"})


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class DatabaseInUse:
    """A shared hold on the database file for as long as this process uses it."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the shared lock; refuse at once while a restore holds it exclusively."""
        if self._file is not None:
            return
        file = _open_lock_file(self.database)
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise StoreError(
                f"database {self.database} is being restored (`pledgebot db restore`); "
                "start again when it has finished"
            ) from None
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None


@contextlib.contextmanager
def in_use(database: Path) -> Iterator[None]:
    hold = DatabaseInUse(database)
    hold.acquire()
    try:
        yield
    finally:
        hold.release()


@contextlib.contextmanager
def exclusive(database: Path, doing: str = "restore") -> Iterator[None]:
    """The database to ourselves, or OperatorError naming why not (never waits)."""
    file = _open_lock_file(database)
    try:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperatorError(
                f"refusing to {doing}: a pledgebot process is using {database} "
                "(the bot, the console or another command); stop it first"
            ) from None
        yield
    finally:
        file.close()


def _open_lock_file(database: Path) -> IO[bytes]:
    """Opened read-only: a lock file left by another user (root running a restore for
    the bot's user, say) still works for every user who can read it."""
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT, 0o644), "rb")
    except OSError as error:
        raise StoreError(
            f"cannot open database {database}: cannot create its lock file {path} "
            f"({error.strerror or error})"
        ) from None


# -- backup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Copied:
    path: Path
    size: int
    schema_version: int
    deliveries: int


def backup(database: Path, target: Path) -> Copied:
    """Copy the live database to `target` with the online backup API.

    The copy is written under a temporary name beside `target`, checked with
    `integrity_check`, and only then renamed into place, so `target` is either the old
    file or a complete, verified copy, never half of one.
    """
    if not database.exists():
        raise OperatorError(f"there is no database at {database} to back up")
    if target.exists() and target.resolve() == database.resolve():
        raise OperatorError(f"refusing to back up {database} onto itself")
    if target.is_dir():
        raise OperatorError(f"{target} is a directory: name the backup file")
    with in_use(database):
        source = _connect(database, "rw")
        try:
            return _copy_verified(source, target)
        finally:
            source.close()


def _copy_verified(source: sqlite3.Connection, target: Path) -> Copied:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = sqlite3.connect(temporary, isolation_level=None)
        try:
            source.backup(copy)  # all pages in one step: one consistent snapshot
            # A single self-contained file: no -wal beside the copy to forget.
            copy.execute("PRAGMA journal_mode = DELETE")
            problems = _integrity_problems(copy)
            if problems:
                raise OperatorError(f"the copy failed integrity_check: {problems}")
            version = int(copy.execute("PRAGMA user_version").fetchone()[0])
            deliveries = _count(copy, "deliveries")
        finally:
            copy.close()
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except OSError as error:
        raise OperatorError(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return Copied(target, target.stat().st_size, version, deliveries)


# -- restore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    database: Path
    replaced: Path | None  # where the file it replaced was kept
    copied: Copied


def restore(backup_file: Path, database: Path, *, now: datetime | None = None) -> Restored:
    """Put `backup_file` in place of `database`, keeping the file it replaces.

    Refused while any pledgebot process uses the database. The backup is checked first
    (integrity, a pledgebot schema this version can read) and copied beside the
    database before anything is moved, so a bad backup changes nothing.
    """
    if not backup_file.is_file():
        raise OperatorError(f"there is no backup file at {backup_file}")
    if database.exists() and backup_file.resolve() == database.resolve():
        raise OperatorError(f"{backup_file} is the database itself")
    source = _connect(backup_file, "ro")
    try:
        _check_restorable(source, backup_file)
        with exclusive(database):
            incoming = _copy_verified(source, database.with_name(f".{database.name}.restoring"))
            try:
                if database.exists():
                    _same_owner_and_mode(incoming.path, database)
                replaced = _set_aside(database, now or datetime.now(UTC))
                os.replace(incoming.path, database)
                _fsync(database.parent)
            finally:
                incoming.path.unlink(missing_ok=True)
    finally:
        source.close()
    return Restored(database, replaced, incoming)


def _check_restorable(conn: sqlite3.Connection, path: Path) -> None:
    problems = _integrity_problems(conn)
    if problems:
        raise OperatorError(f"{path} failed integrity_check, not restoring: {problems}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = sorted(REQUIRED_TABLES - tables)
    if missing:
        raise OperatorError(f"{path} is not a pledgebot database (no table {', '.join(missing)})")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise OperatorError(
            f"{path} has schema version {version}, newer than this pledgebot "
            f"understands ({SCHEMA_VERSION}); upgrade pledgebot first"
        )


def _set_aside(database: Path, now: datetime) -> Path | None:
    """Keep the current database as `<name>.replaced-<UTC time>`, its WAL folded in.

    Leaving WAL mode checkpoints the `-wal` into the file and deletes it; it needs the
    last connection, so it also fails if anything outside pledgebot holds the file.
    """
    if not database.exists():
        return None
    conn = _connect(database, "rw")
    try:
        mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    finally:
        conn.close()
    if str(mode).lower() != "delete":
        raise OperatorError(f"cannot take {database} out of use: another program has it open")
    kept = _claim_name(database, now)
    try:
        os.replace(database, kept)
    except BaseException:
        kept.unlink(missing_ok=True)
        raise
    for sidecar in ("-wal", "-shm"):  # never left to be replayed into the restored file
        database.with_name(database.name + sidecar).unlink(missing_ok=True)
    return kept


def _claim_name(database: Path, now: datetime) -> Path:
    """`<name>.replaced-<UTC second>`, else with `-2`, `-3`... : a name no file has, made
    (O_EXCL) so that it is ours, so a second restore within the second never overwrites
    the database the first one kept."""
    stamp = f"{database.name}.replaced-{now.strftime('%Y%m%dT%H%M%SZ')}"
    number = 1
    while True:
        kept = database.with_name(stamp if number == 1 else f"{stamp}-{number}")
        try:
            os.close(os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return kept
        except FileExistsError:
            number += 1


# -- helpers ------------------------------------------------------------------------------


def _same_owner_and_mode(new: Path, old: Path) -> None:
    """The restored file stays usable by the bot's user, even when root ran the restore."""
    status = old.stat()
    os.chmod(new, status.st_mode & 0o777)
    with contextlib.suppress(PermissionError):  # only root may give a file away
        os.chown(new, status.st_uid, status.st_gid)


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode={mode}",
            uri=True,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_SECONDS,
        )
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # is it a database?
    except sqlite3.Error as error:
        raise OperatorError(f"cannot open {path}: {error}") from None
    return conn


def _integrity_problems(conn: sqlite3.Connection) -> str:
    found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    return "" if found == ["ok"] else "; ".join(found[:5])


def _count(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # an empty, unmigrated database
        return 0


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk before reporting success."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
