"""Errors whose message is meant for a person: the member who caused them, or an operator."""


class UserError(Exception):
    """Bad input or a refused action: shown privately to the user, never logged as a bug."""


class OperatorError(Exception):
    """A failure of a `pledgebot` command, reported in one line with no traceback."""


class StoreError(Exception):
    """A store problem worth showing to an operator (bad path, newer schema, ...)."""


def _store_errors() -> tuple[type[Exception], ...]:
    """The database drivers' own errors: sqlite3's, and asyncpg's where it is installed."""
    import sqlite3

    found: list[type[Exception]] = [sqlite3.Error]
    try:
        import asyncpg
    except ImportError:  # a SQLite-only install
        pass
    else:
        # a server error (lock timeout, lost connection, ...), a misused or closed
        # connection, and the socket's own errors while the pool reconnects
        found += [asyncpg.PostgresError, asyncpg.InterfaceError, OSError]
    return tuple(found)


# What a failing store raises on either backend (a lock held past its timeout, a full
# disk, a lost connection): `except STORE_ERRORS` treats them alike.
STORE_ERRORS: tuple[type[Exception], ...] = _store_errors()
