"""Storage: the database interface, one module per backend, the schema, the file's tools.

- `base`: `Database` and `Transaction`, all the layers above speak;
- `sqlite` and `postgres`: the two backends (asyncpg is imported only when used);
- `schema`: one ordered list of migration steps for both, and the runner;
- `files`: the SQLite file's in-use lock, online backup and restore;
- `copy`: `db copy`, every row from one database into another, either way.

`open_database(location)` is the one way in: a `Path` or `sqlite:///FILE` is a SQLite file,
`postgresql://...` a PostgreSQL database; either is opened and migrated.
`open_database_as_is(location)` only looks: read-only, never created, never migrated.
"""

from __future__ import annotations

from pathlib import Path

from bot.config import parse_database_url
from bot.errors import StoreError
from bot.storage.base import Database, Row, Transaction

__all__ = [
    "Database",
    "Row",
    "Transaction",
    "database_location",
    "open_database",
    "open_database_as_is",
]


def database_location(location: Path | str) -> Path | str:
    """A SQLite file's `Path`, or a PostgreSQL DSN (a `str`), from a path or a URL.

    A URL is read as the config reads `[database] url` (`bot.config.parse_database_url`:
    `sqlite:///data/p.db` is the relative path `data/p.db`, `sqlite:////srv/p.db` the
    absolute `/srv/p.db`, and a PostgreSQL URL may carry no password); any other string
    is a path.
    """
    if isinstance(location, Path):
        return location
    if "://" not in location and not location.lower().startswith("sqlite:"):
        return Path(location)
    try:
        return parse_database_url(location)
    except ValueError as error:
        raise StoreError(str(error)) from None


async def open_database(location: Path | str) -> Database:
    """Open (creating a SQLite file if needed) and migrate the database at `location`."""
    where = database_location(location)
    if isinstance(where, Path):
        from bot.storage.sqlite import SQLiteDatabase

        return await SQLiteDatabase.open(where)
    from bot.storage.postgres import PostgresDatabase  # asyncpg only when it is used

    return await PostgresDatabase.open(where)


async def open_database_as_is(location: Path | str) -> Database:
    """Open the database at `location` to read only, as it is: a missing SQLite file is a
    StoreError (never created), and nothing is migrated (`schema_version()` says how far
    it is). For `pledgebot doctor`, which must change nothing."""
    where = database_location(location)
    if isinstance(where, Path):
        from bot.storage.sqlite import SQLiteDatabase

        return await SQLiteDatabase.open_as_is(where)
    from bot.storage.postgres import PostgresDatabase

    return await PostgresDatabase.open_as_is(where)
