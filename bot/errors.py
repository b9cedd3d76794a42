"""Errors whose message is meant for a person: the member who caused them, or an operator."""


class UserError(Exception):
    """Bad input or a refused action: shown privately to the user, never logged as a bug."""


class OperatorError(Exception):
    """A failure of a `pledgebot` command, reported in one line with no traceback."""


class StoreError(Exception):
    """A store problem worth showing to an operator (bad path, newer schema, ...)."""


def _driver_errors() -> tuple[type[Exception], ...]:
    """The database drivers' own errors: sqlite3's, and asyncpg's where it is installed."""
    import sqlite3

    found: list[type[Exception]] = [sqlite3.Error]
    try:
        import asyncpg
    except ImportError:  # a SQLite-only install
        pass
    else:
        # a server error (lock timeout, lost connection, ...) and a misused or closed
        # connection
        found += [asyncpg.PostgresError, asyncpg.InterfaceError]
    return tuple(found)


# What either driver raises on a failed statement.
DRIVER_ERRORS: tuple[type[Exception], ...] = _driver_errors()
# What a failing store raises on either backend (a lock held past its timeout, a full
# disk, a lost connection): `except STORE_ERRORS` treats them alike. With PostgreSQL, the
# socket's own errors while the pool reconnects too.
STORE_ERRORS: tuple[type[Exception], ...] = DRIVER_ERRORS + (
    (OSError,) if len(DRIVER_ERRORS) > 1 else ()
)
