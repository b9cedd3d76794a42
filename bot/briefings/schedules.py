"""Schedules, deliveries and their change log in the store.

Every query a command makes is scoped by guild id, so no command from one server can
read or touch another server's schedules.

Every change to a schedule adds a row to `schedule_changes`, the log every process's
engine reads to replan. On PostgreSQL the same transaction also sends a NOTIFY on
`CHANGES_CHANNEL` (delivered only when it commits), so other processes look at the log
at once instead of at their next poll.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import UserError
from bot.storage import Row, Transaction
from bot.store import Store, utc_now

# LISTEN/NOTIFY channel of schedule changes (PostgreSQL); the payload is the schedule id
CHANGES_CHANNEL = "pledgebot_schedule_changes"
MAX_ID = 2**63 - 1  # above every row id, on both backends (64-bit signed)

EDITABLE = (
    "channel_id",
    "timezone",
    "time_of_day",
    "days",
    "cron",
    "run_date",
    "content",
    "role_id",
)


@dataclass(frozen=True)
class Schedule:
    id: int
    guild_id: int
    channel_id: int
    created_by: int
    timezone: str
    time_of_day: str | None
    days: str | None
    cron: str | None
    run_date: str | None
    content: str
    role_id: int | None
    state: str
    pause_reason: str | None
    cursor: int  # spotlight: the next record; changes: the last status change posted
    last_error: str | None
    active_since: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Delivery:
    schedule_id: int
    slot: str
    state: str
    claimed_at: str
    finished_at: str | None
    message_id: int | None
    late: bool
    manual: bool
    error: str | None
    attempted_at: str | None  # when a send of this slot may first have reached Discord


@dataclass(frozen=True)
class Change:
    changed_by: int
    changed_at: str
    action: str
    detail: str


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    timezone: str | None
    moderator_role_id: int | None


def _schedule(row: Row) -> Schedule:
    return Schedule(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (Row has no __iter__ of keys)


def _delivery(row: Row) -> Delivery:
    return Delivery(
        row["schedule_id"],
        row["slot"],
        row["state"],
        row["claimed_at"],
        row["finished_at"],
        row["message_id"],
        bool(row["late"]),
        bool(row["manual"]),
        row["error"],
        row["attempted_at"],
    )


class Schedules:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- schedules ----------------------------------------------------------------

    async def create(
        self, *, guild_id: int, created_by: int, limit: int, fields: Mapping[str, Any]
    ) -> Schedule:
        """Insert a schedule unless the server is at its limit (checked in the same transaction)."""
        now = utc_now()
        values = {k: fields.get(k) for k in EDITABLE}
        async with self.store.transaction() as tx:
            count = await tx.scalar(
                "SELECT count(*) FROM schedules "
                "WHERE guild_id = ? AND state IN ('active', 'paused')",
                (guild_id,),
            )
            if count >= limit:
                raise UserError(
                    f"This server already has {count} briefings, the most allowed ({limit}). "
                    "Cancel one first."
                )
            columns = [
                "guild_id",
                "created_by",
                *values,
                "active_since",
                "created_at",
                "updated_at",
            ]
            inserted = await tx.scalar(
                f"INSERT INTO schedules ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))}) RETURNING id",
                [guild_id, created_by, *values.values(), now, now, now],
            )
            assert inserted is not None
            schedule_id = int(inserted)
            await self._log_change(tx, schedule_id, created_by, now, "created", values)
        schedule = await self.get(guild_id, schedule_id)
        assert schedule is not None
        return schedule

    async def get(self, guild_id: int, schedule_id: int) -> Schedule | None:
        rows = await self.store.rows(
            "SELECT * FROM schedules WHERE id = ? AND guild_id = ? AND state != 'cancelled'",
            (schedule_id, guild_id),
        )
        return _schedule(rows[0]) if rows else None

    async def require(self, guild_id: int, schedule_id: int) -> Schedule:
        schedule = await self.get(guild_id, schedule_id)
        if schedule is None:
            raise UserError(
                f"There is no briefing #{schedule_id} in this server. See /briefing list."
            )
        return schedule

    async def by_id(self, schedule_id: int) -> Schedule | None:
        rows = await self.store.rows("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
        return _schedule(rows[0]) if rows else None

    async def in_guild(self, guild_id: int) -> list[Schedule]:
        rows = await self.store.rows(
            "SELECT * FROM schedules WHERE guild_id = ? AND state != 'cancelled' ORDER BY id",
            (guild_id,),
        )
        return [_schedule(r) for r in rows]

    async def active(self) -> list[Schedule]:
        rows = await self.store.rows("SELECT * FROM schedules WHERE state = 'active' ORDER BY id")
        return [_schedule(r) for r in rows]

    async def update(
        self, guild_id: int, schedule_id: int, changes: Mapping[str, Any], *, by: int, action: str
    ) -> Schedule:
        """Apply edits or a state change, logging who changed what."""
        allowed = {*EDITABLE, "state", "pause_reason", "last_error", "active_since", "cursor"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        now = utc_now()
        async with self.store.transaction() as tx:
            assignments = ", ".join(f"{k} = ?" for k in changes)
            updated_rows = await tx.execute(
                f"UPDATE schedules SET {assignments}, updated_at = ? "
                "WHERE id = ? AND guild_id = ? AND state != 'cancelled'",
                [*changes.values(), now, schedule_id, guild_id],
            )
            if updated_rows == 0:
                raise UserError(f"There is no briefing #{schedule_id} in this server.")
            await self._log_change(tx, schedule_id, by, now, action, dict(changes))
        updated = await self.by_id(schedule_id)
        assert updated is not None
        return updated

    async def set_last_error(self, schedule_id: int, error: str) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE schedules SET last_error = ? WHERE id = ?", (error, schedule_id)
            )

    async def set_cursor(self, schedule_id: int, cursor: int) -> None:
        async with self.store.transaction() as tx:
            await tx.execute("UPDATE schedules SET cursor = ? WHERE id = ?", (cursor, schedule_id))

    async def changed_since(self, change_id: int) -> tuple[dict[int, int], int]:
        """Schedules changed (by any process) after change `change_id`, each with its first
        change id after it (oldest first), and the latest change id.

        The change log is the store's change counter: one indexed read, however many
        schedules there are. Its ids become visible in order on both backends, because
        write transactions take turns (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's writer
        lock), so nothing committed later can appear below an id already read.
        """
        rows = await self.store.rows(
            "SELECT schedule_id, min(id) AS first, max(id) FROM schedule_changes WHERE id > ? "
            "GROUP BY schedule_id ORDER BY first",
            (change_id,),
        )
        return {r[0]: r[1] for r in rows}, max((r[2] for r in rows), default=change_id)

    async def latest_change(self) -> int:
        rows = await self.store.rows("SELECT coalesce(max(id), 0) FROM schedule_changes")
        return int(rows[0][0])

    async def changes(self, schedule_id: int) -> list[Change]:
        rows = await self.store.rows(
            "SELECT changed_by, changed_at, action, detail FROM schedule_changes "
            "WHERE schedule_id = ? ORDER BY id",
            (schedule_id,),
        )
        return [Change(r[0], r[1], r[2], r[3]) for r in rows]

    # -- deliveries ---------------------------------------------------------------

    async def claim(
        self,
        schedule_id: int,
        slot: str,
        *,
        late: bool,
        manual: bool = False,
        now: str | None = None,
    ) -> bool:
        """Claim a slot for posting; False when it, or a later scheduled slot, was claimed
        before (by anyone), so slots only ever move forward."""
        now = now or utc_now()
        async with self.store.transaction() as tx:
            claimed = await tx.execute(
                "INSERT INTO deliveries(schedule_id, slot, state, claimed_at, attempted_at, "
                "late, manual) SELECT ?, ?, 'claimed', ?, ?, ?, ? WHERE ? = 1 OR NOT EXISTS "
                "(SELECT 1 FROM deliveries WHERE schedule_id = ? AND manual = 0 AND slot >= ?) "
                "ON CONFLICT(schedule_id, slot) DO NOTHING",
                (
                    schedule_id,
                    slot,
                    now,
                    now,
                    int(late),
                    int(manual),
                    int(manual),
                    schedule_id,
                    slot,
                ),
            )
            return claimed == 1

    async def mark_attempt(self, schedule_id: int, slot: str, now: str) -> None:
        """A send is about to start after earlier ones were checked to have not landed."""
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE deliveries SET attempted_at = ? WHERE schedule_id = ? AND slot = ?",
                (now, schedule_id, slot),
            )

    async def record(
        self, schedule_id: int, slot: str, state: str, *, error: str | None = None
    ) -> bool:
        """Record a slot that was not posted (missed, skipped) unless already claimed."""
        async with self.store.transaction() as tx:
            now = utc_now()
            recorded = await tx.execute(
                "INSERT INTO deliveries(schedule_id, slot, state, claimed_at, finished_at, error) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(schedule_id, slot) DO NOTHING",
                (schedule_id, slot, state, now, now, error),
            )
            if recorded:
                await self._end_one_off(tx, schedule_id, slot, state, now)
            return recorded == 1

    async def finish(
        self,
        schedule_id: int,
        slot: str,
        state: str,
        *,
        message_id: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a claimed slot ended (sent, failed, skipped)."""
        now = utc_now()
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE deliveries SET state = ?, finished_at = ?, message_id = ?, error = ? "
                "WHERE schedule_id = ? AND slot = ?",
                (state, now, message_id, error, schedule_id, slot),
            )
            await tx.execute(
                "UPDATE schedules SET last_error = ? WHERE id = ?", (error, schedule_id)
            )
            await self._end_one_off(tx, schedule_id, slot, state, now)

    async def _end_one_off(
        self, tx: Transaction, schedule_id: int, slot: str, outcome: str, now: str
    ) -> None:
        """A one-off has a single scheduled slot: however that slot ended, the briefing is
        finished, in the same transaction, so none stays active with nothing planned.
        A manual post never ends it; a cancelled one stays cancelled."""
        ended = await tx.execute(
            "UPDATE schedules SET state = 'finished', updated_at = ? "
            "WHERE id = ? AND run_date IS NOT NULL AND state IN ('active', 'paused') "
            "AND EXISTS (SELECT 1 FROM deliveries WHERE schedule_id = ? AND slot = ? "
            "AND manual = 0)",
            (now, schedule_id, schedule_id, slot),
        )
        if ended:
            await self._log_change(
                tx, schedule_id, 0, now, "finished", {"state": "finished", "outcome": outcome}
            )

    async def delivery(self, schedule_id: int, slot: str) -> Delivery | None:
        rows = await self.store.rows(
            "SELECT * FROM deliveries WHERE schedule_id = ? AND slot = ?", (schedule_id, slot)
        )
        return _delivery(rows[0]) if rows else None

    async def last_delivery(
        self, schedule_id: int, *, sent_only: bool = False, scheduled_only: bool = False
    ) -> Delivery | None:
        where = ("AND state = 'sent' " if sent_only else "") + (
            "AND manual = 0" if scheduled_only else ""
        )
        rows = await self.store.rows(
            f"SELECT * FROM deliveries WHERE schedule_id = ? {where} ORDER BY id DESC LIMIT 1",
            (schedule_id,),
        )
        return _delivery(rows[0]) if rows else None

    async def last_slot(self, schedule_id: int) -> str | None:
        """The latest scheduled slot dealt with in any way (manual posts excluded)."""
        rows = await self.store.rows(
            "SELECT max(slot) FROM deliveries WHERE schedule_id = ? AND manual = 0",
            (schedule_id,),
        )
        return rows[0][0] if rows else None

    async def last_slots(self, first: int = 0, last: int | None = None) -> dict[int, str]:
        """`last_slot` for many schedules at once: those with ids from `first` to `last`
        (start-up reads them a chunk at a time, see `Planner.plan_all`), or every one."""
        rows = await self.store.rows(
            "SELECT schedule_id, max(slot) FROM deliveries WHERE manual = 0 "
            "AND schedule_id BETWEEN ? AND ? GROUP BY schedule_id",
            (first, MAX_ID if last is None else last),
        )
        return {r[0]: r[1] for r in rows}

    async def unfinished(self, schedule_id: int | None = None) -> list[Delivery]:
        """Slots claimed and never finished: every schedule's, or one schedule's only (a
        retry after a failed firing, which thousands may make at once)."""
        where, params = ("AND schedule_id = ? ", (schedule_id,)) if schedule_id else ("", ())
        rows = await self.store.rows(
            f"SELECT * FROM deliveries WHERE state = 'claimed' {where}ORDER BY id", params
        )
        return [_delivery(r) for r in rows]

    async def deliveries(self, schedule_id: int) -> list[Delivery]:
        rows = await self.store.rows(
            "SELECT * FROM deliveries WHERE schedule_id = ? ORDER BY id", (schedule_id,)
        )
        return [_delivery(r) for r in rows]

    # -- the change log -------------------------------------------------------------

    async def _log_change(
        self,
        tx: Transaction,
        schedule_id: int,
        by: int,
        when: str,
        action: str,
        detail: Mapping[str, Any],
    ) -> None:
        """Log a change in the change's own transaction, and on PostgreSQL wake every
        listening process when it commits (a rolled-back change sends nothing)."""
        await tx.execute(
            "INSERT INTO schedule_changes(schedule_id, changed_by, changed_at, action, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (schedule_id, by, when, action, json.dumps(detail, sort_keys=True, default=str)),
        )
        if self.store.db.dialect == "postgresql":
            await tx.execute("SELECT pg_notify(?, ?)", (CHANGES_CHANNEL, str(schedule_id)))

    # -- per-server settings ------------------------------------------------------

    async def settings(self, guild_id: int) -> GuildSettings:
        rows = await self.store.rows("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        if not rows:
            return GuildSettings(guild_id, None, None)
        return GuildSettings(guild_id, rows[0]["timezone"], rows[0]["moderator_role_id"])

    async def moderator_roles(self) -> list[GuildSettings]:
        """Every server's settings that name a moderator role (`pledgebot doctor`)."""
        rows = await self.store.rows(
            "SELECT * FROM guild_settings WHERE moderator_role_id IS NOT NULL ORDER BY guild_id"
        )
        return [GuildSettings(r["guild_id"], r["timezone"], r["moderator_role_id"]) for r in rows]

    async def save_settings(self, settings: GuildSettings) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO guild_settings(guild_id, timezone, moderator_role_id) "
                "VALUES (?, ?, ?) "
                "ON CONFLICT(guild_id) DO UPDATE SET timezone = excluded.timezone, "
                "moderator_role_id = excluded.moderator_role_id",
                (settings.guild_id, settings.timezone, settings.moderator_role_id),
            )
