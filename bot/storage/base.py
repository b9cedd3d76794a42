"""The database interface everything above storage speaks: `Database` and `Transaction`.

SQL is written once with SQLite's `?` and `?N` placeholders (`bot.storage.postgres`
translates them). What is bound to one dialect is chosen by `Database.dialect` where it
is used, side by side, and kept to a few places (search, JSON aggregates, migrations).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, overload

# How long a write waits for another process's lock, on either backend.
BUSY_TIMEOUT_MS = 5000


class Row(Protocol):
    """A result row, read by position (`r[0]`) or by column name (`r["slug"]`).

    aiosqlite's `Row` (sqlite3.Row) and asyncpg's `Record` both are one.
    """

    @overload
    def __getitem__(self, key: int, /) -> Any: ...
    @overload
    def __getitem__(self, key: str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def keys(self) -> Iterable[str]: ...


class Transaction(Protocol):
    """One write transaction, as `Database.transaction()` yields it."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None: ...

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query (a SELECT, or a write with RETURNING), inside the transaction."""
        ...

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        ...


class Database(Protocol):
    dialect: str  # "sqlite" or "postgresql": which SQL the few dialect-bound queries use

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a read, outside any write transaction."""
        ...

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a read, or None when there is no row."""
        ...

    async def rows_planned(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """`rows`, planned for these parameters' values: for a read whose best plan
        depends on them (a search's words). PostgreSQL otherwise settles, after five runs
        on a connection, on a generic plan that cannot see them. On SQLite, `rows`."""
        ...

    async def rows_inline(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """`rows`, for a read that is small by design (a search's bounded candidates). On
        SQLite it runs on the caller's own thread, where the trip to aiosqlite's would cost
        more than the read, and goes there after all if it runs long or the file is busy.
        On PostgreSQL, `rows`."""
        ...

    async def schema_version(self) -> int:
        """The last migration step applied (`bot.storage.schema`)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """One write transaction: committed on exit, rolled back whole on any error."""
        ...

    async def release_memory(self) -> None:
        """Give back what start-up read and later work seldom reads again (SQLite: each
        connection's page cache, filled by loading content and planning every schedule)."""
        ...

    async def close(self) -> None: ...
