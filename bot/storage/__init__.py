"""Storage: the database interface, one module per backend, the schema, the file's tools.

- `base`: `Database` and `Transaction`, all the layers above speak;
- `sqlite` and `postgres`: the two backends (asyncpg is imported only when used);
- `schema`: one ordered list of migration steps for both, and the runner;
- `files`: the SQLite file's in-use lock, online backup and restore;
- `copy`: `db copy`, every row from one database into another, either way.

`open_database(location)` is the one way in: a `Path` or `sqlite:///FILE` is a SQLite file,
`postgresql://...` a PostgreSQL database; either is opened and migrated.
"""

from __future__ import annotations

from pathlib import Path

from bot.errors import StoreError
from bot.storage.base import Database, Row, Transaction

__all__ = ["Database", "Row", "Transaction", "database_location", "open_database"]

_PG_SCHEMES = ("postgresql://", "postgres://")


def database_location(location: Path | str) -> Path | str:
    """A SQLite file's `Path`, or a PostgreSQL DSN (a `str`), from a path or a URL.

    `sqlite:///data/p.db` is the relative path `data/p.db` and `sqlite:////srv/p.db` the
    absolute `/srv/p.db` (SQLAlchemy's spelling); `postgresql://` and `postgres://` URLs
    (the scheme in any case) are returned as they are; any other string is a path.
    """
    if isinstance(location, Path):
        return location
    lowered = location.lower()
    if lowered.startswith(_PG_SCHEMES):
        return location
    if lowered.startswith("sqlite:"):
        rest = location[len("sqlite:") :]
        if not rest.startswith("///") or len(rest) == 3:
            raise StoreError(f"a SQLite URL is sqlite:///path, not {location!r}")
        return Path(rest[3:])
    if "://" in location:
        raise StoreError(f"unknown database URL scheme: {location.split('://', 1)[0]!r}")
    return Path(location)


async def open_database(location: Path | str) -> Database:
    """Open (creating a SQLite file if needed) and migrate the database at `location`."""
    where = database_location(location)
    if isinstance(where, Path):
        from bot.storage.sqlite import SQLiteDatabase

        return await SQLiteDatabase.open(where)
    from bot.storage.postgres import PostgresDatabase  # asyncpg only when it is used

    return await PostgresDatabase.open(where)
