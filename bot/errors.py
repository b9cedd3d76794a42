"""Errors whose message is meant for a person: the member who caused them, or an operator."""

from __future__ import annotations

import sqlite3
import sys


class UserError(Exception):
    """Bad input or a refused action: shown privately to the user, never logged as a bug."""


class OperatorError(Exception):
    """A failure of a `pledgebot` command, reported in one line with no traceback."""


class StoreError(Exception):
    """A store problem worth showing to an operator (bad path, newer schema, ...)."""


def driver_errors() -> tuple[type[Exception], ...]:
    """The database drivers' own errors: sqlite3's, and asyncpg's once it is loaded.

    Only a PostgreSQL store loads asyncpg (about 4 MiB a SQLite bot need not carry), and
    until it is loaded none of its errors can be raised. A function, not a constant, so
    `except driver_errors()` sees asyncpg from the moment it is loaded.
    """
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return (sqlite3.Error,)
    # a server error (lock timeout, lost connection, ...) and a misused or closed connection
    return (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError)


def store_errors() -> tuple[type[Exception], ...]:
    """What a failing store raises on either backend (a lock held past its timeout, a full
    disk, a lost connection): `except store_errors()` treats them alike. With PostgreSQL,
    also the socket's own errors while the pool reconnects."""
    found = driver_errors()
    return (*found, OSError) if "asyncpg" in sys.modules else found
