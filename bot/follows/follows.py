"""Members' follows, their alert state, and servers' alert channels, in the store.

A follow is a user id and an item (a pledge, a power or a whole statement) and the event
it starts after: nothing else about the member is kept. A follower row holds the DM
channel once Discord opened it (so the next alert is one request) and a pause with its
reason (closed DMs); `clear` deletes all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.storage import Database, Row, Transaction

FOLLOW_LIMIT = 50
FollowKind = Literal["pledge", "power", "statement"]
FOLLOW_KINDS: tuple[FollowKind, ...] = ("pledge", "power", "statement")
AddOutcome = Literal["added", "already", "limit"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Follow:
    kind: FollowKind
    slug: str
    created_at: str


@dataclass(frozen=True)
class Pause:
    reason: str
    since: str


@dataclass(frozen=True)
class AlertChannel:
    guild_id: int
    channel_id: int
    role_id: int | None
    statement_slug: str | None
    paused_reason: str | None
    set_by: int
    set_at: str


LATEST_EVENT = "SELECT coalesce(max(id), 0) FROM pledge_events"


class Follows:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- a member's follows ---------------------------------------------------------

    async def add(self, user_id: int, kind: FollowKind, slug: str) -> AddOutcome:
        """Follow from now on: only events recorded after this alert the member."""
        async with self.db.transaction() as tx:
            if await tx.scalar(
                "SELECT 1 FROM follows WHERE user_id = ? AND kind = ? AND slug = ?",
                (user_id, kind, slug),
            ):
                return "already"
            count = await tx.scalar("SELECT count(*) FROM follows WHERE user_id = ?", (user_id,))
            if int(count) >= FOLLOW_LIMIT:
                return "limit"
            await tx.execute(
                "INSERT INTO follows(user_id, kind, slug, after_event, created_at) "
                f"VALUES (?, ?, ?, ({LATEST_EVENT}), ?)",
                (user_id, kind, slug, utc_now()),
            )
        return "added"

    async def remove(self, user_id: int, kind: FollowKind, slug: str) -> bool:
        async with self.db.transaction() as tx:
            removed = await tx.execute(
                "DELETE FROM follows WHERE user_id = ? AND kind = ? AND slug = ?",
                (user_id, kind, slug),
            )
        return removed > 0

    async def of(self, user_id: int) -> list[Follow]:
        rows = await self.db.rows(
            "SELECT kind, slug, created_at FROM follows WHERE user_id = ? "
            "ORDER BY created_at, kind, slug",
            (user_id,),
        )
        return [Follow(r["kind"], r["slug"], r["created_at"]) for r in rows]

    async def clear(self, user_id: int) -> int:
        """Everything stored about the member's follows: follows, DM channel, pause, and
        the record of alerts sent to them. Returns how many follows there were."""
        async with self.db.transaction() as tx:
            removed = await tx.execute("DELETE FROM follows WHERE user_id = ?", (user_id,))
            await tx.execute("DELETE FROM followers WHERE user_id = ?", (user_id,))
            await tx.execute(
                "DELETE FROM alert_deliveries WHERE recipient = 'member' AND recipient_id = ? "
                "AND state != 'claimed'",
                (user_id,),
            )
        return removed

    # -- a member's alert state -------------------------------------------------------

    async def pause_of(self, user_id: int) -> Pause | None:
        rows = await self.db.rows(
            "SELECT paused_reason, paused_at FROM followers WHERE user_id = ? "
            "AND paused_reason IS NOT NULL",
            (user_id,),
        )
        return Pause(rows[0]["paused_reason"], rows[0]["paused_at"]) if rows else None

    async def pause(self, user_id: int, reason: str) -> None:
        async with self.db.transaction() as tx:
            await _follower_row(tx, user_id)
            await tx.execute(
                "UPDATE followers SET paused_reason = ?, paused_at = ?, pause_told = 0 "
                "WHERE user_id = ?",
                (reason, utc_now(), user_id),
            )

    async def resume(self, user_id: int) -> bool:
        """Alerts again from the next event (those while paused were recorded skipped)."""
        async with self.db.transaction() as tx:
            resumed = await tx.execute(
                "UPDATE followers SET paused_reason = NULL, paused_at = NULL, pause_told = 0 "
                "WHERE user_id = ? AND paused_reason IS NOT NULL",
                (user_id,),
            )
        return resumed > 0

    async def pause_to_tell(self, user_id: int) -> Pause | None:
        """The pause the member has not been told of yet, now marked told (once only).
        Asked after every command, so it writes only when there is something to tell."""
        if not await self.db.scalar(
            "SELECT 1 FROM followers WHERE user_id = ? AND paused_reason IS NOT NULL "
            "AND pause_told = 0",
            (user_id,),
        ):
            return None
        async with self.db.transaction() as tx:
            rows = await tx.rows(
                "UPDATE followers SET pause_told = 1 WHERE user_id = ? "
                "AND paused_reason IS NOT NULL AND pause_told = 0 "
                "RETURNING paused_reason, paused_at",
                (user_id,),
            )
        return Pause(rows[0]["paused_reason"], rows[0]["paused_at"]) if rows else None

    async def dm_channel(self, user_id: int) -> int | None:
        found = await self.db.scalar(
            "SELECT dm_channel_id FROM followers WHERE user_id = ?", (user_id,)
        )
        return None if found is None else int(found)

    async def remember_dm_channel(self, user_id: int, channel_id: int) -> None:
        async with self.db.transaction() as tx:
            await _follower_row(tx, user_id)
            await tx.execute(
                "UPDATE followers SET dm_channel_id = ? WHERE user_id = ?", (channel_id, user_id)
            )

    # -- servers' alert channels ----------------------------------------------------------

    async def set_alert_channel(
        self,
        guild_id: int,
        channel_id: int,
        *,
        role_id: int | None,
        statement_slug: str | None,
        by: int,
    ) -> None:
        """Post each status change from now on (a change of channel starts afresh)."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO alert_channels(guild_id, channel_id, role_id, statement_slug, "
                f"after_event, paused_reason, set_by, set_at) VALUES (?, ?, ?, ?, ({LATEST_EVENT}),"
                " NULL, ?, ?) ON CONFLICT(guild_id) DO UPDATE SET channel_id = excluded.channel_id,"
                " role_id = excluded.role_id, statement_slug = excluded.statement_slug,"
                " after_event = excluded.after_event, paused_reason = NULL,"
                " set_by = excluded.set_by, set_at = excluded.set_at",
                (guild_id, channel_id, role_id, statement_slug, by, utc_now()),
            )

    async def alert_channel(self, guild_id: int) -> AlertChannel | None:
        rows = await self.db.rows("SELECT * FROM alert_channels WHERE guild_id = ?", (guild_id,))
        return _alert_channel(rows[0]) if rows else None

    async def active_alert_channels(self) -> list[AlertChannel]:
        """Every server's alert channel that is not paused (`pledgebot doctor`)."""
        rows = await self.db.rows(
            "SELECT * FROM alert_channels WHERE paused_reason IS NULL ORDER BY guild_id"
        )
        return [_alert_channel(r) for r in rows]

    async def remove_alert_channel(self, guild_id: int) -> bool:
        async with self.db.transaction() as tx:
            removed = await tx.execute("DELETE FROM alert_channels WHERE guild_id = ?", (guild_id,))
        return removed > 0

    async def pause_alert_channel(self, guild_id: int, channel_id: int, reason: str) -> bool:
        """Pause the server's alerts, if they still post into that channel."""
        async with self.db.transaction() as tx:
            paused = await tx.execute(
                "UPDATE alert_channels SET paused_reason = ? WHERE guild_id = ? "
                "AND channel_id = ? AND paused_reason IS NULL",
                (reason, guild_id, channel_id),
            )
        return paused > 0


def _alert_channel(r: Row) -> AlertChannel:
    return AlertChannel(
        int(r["guild_id"]),
        int(r["channel_id"]),
        None if r["role_id"] is None else int(r["role_id"]),
        r["statement_slug"],
        r["paused_reason"],
        int(r["set_by"]),
        r["set_at"],
    )


async def _follower_row(tx: Transaction, user_id: int) -> None:
    await tx.execute(
        "INSERT INTO followers(user_id) VALUES (?) ON CONFLICT(user_id) DO NOTHING", (user_id,)
    )
