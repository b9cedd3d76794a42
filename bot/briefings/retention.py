"""Retention: old delivery rows are pruned, in small batches, once a day.

Every briefing slot leaves a row in `deliveries`, so the table grows forever without
this. Rows older than `[retention] deliveries_days` go, except those the bot still
reads: each schedule's latest scheduled slot (the engine plans and claims after it), its
latest row (`/briefing show`) and its latest sent post ("changes since the previous
briefing"). Rows still `claimed` are never touched: a post may be in flight. The audit
of schedule changes and the status history are never pruned.

Each batch is one short write transaction with a pause after it, so member commands and
briefing posts never wait behind a large prune.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bot.store import Store

log = logging.getLogger(__name__)

BATCH_ROWS = 500
PAUSE_BETWEEN_BATCHES = 0.05  # seconds: other writers take their turn
DAY = timedelta(days=1)
# When the last prune ran, by any process: several processes on one database prune once.
LAST_PRUNE_KEY = "retention_last_run"

_FINISHED = "('sent', 'failed', 'missed', 'skipped')"
# The newest old row: batches walk the table by id up to here and no further.
_LAST_OLD = f"SELECT max(id) FROM deliveries WHERE state IN {_FINISHED} AND claimed_at < ?"
# A batch of rows that may go, oldest first, after the id where the previous batch
# stopped. `+d.state` keeps SQLite walking by id (the primary key) rather than
# collecting every old row from the state index and sorting them for each batch.
_PRUNABLE = f"""
SELECT d.id FROM deliveries d
WHERE d.id > :after AND d.id <= :last
  AND +d.state IN {_FINISHED}
  AND d.claimed_at < :cutoff
  AND d.id != (SELECT max(id) FROM deliveries WHERE schedule_id = d.schedule_id)
  AND d.id != coalesce(
      (SELECT max(id) FROM deliveries WHERE schedule_id = d.schedule_id AND state = 'sent'), 0)
  AND NOT (d.manual = 0 AND d.slot = (
      SELECT max(slot) FROM deliveries WHERE schedule_id = d.schedule_id AND manual = 0))
ORDER BY d.id
LIMIT :limit
"""


async def prune_deliveries(
    store: Store,
    *,
    older_than: datetime,
    batch_rows: int = BATCH_ROWS,
    pause: float = PAUSE_BETWEEN_BATCHES,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Delete prunable delivery rows claimed before `older_than`; returns how many."""
    cutoff = older_than.astimezone(UTC).isoformat(timespec="microseconds")
    (row,) = await store.rows(_LAST_OLD, (cutoff,))
    if row[0] is None:
        return 0
    after, last, removed = 0, int(row[0]), 0
    while True:
        async with store.transaction() as conn:
            ids = [
                r[0]
                for r in await conn.execute_fetchall(
                    _PRUNABLE,
                    {"after": after, "last": last, "cutoff": cutoff, "limit": batch_rows},
                )
            ]
            if ids:
                await conn.execute(
                    f"DELETE FROM deliveries WHERE id IN ({','.join('?' * len(ids))})", ids
                )
        removed += len(ids)
        if len(ids) < batch_rows:
            return removed
        after = ids[-1]
        await sleep(pause)


async def prune_if_due(store: Store, days: int, now: datetime) -> int | None:
    """Prune unless any process did within the last day; None when it was not due."""
    last = await store.get_meta(LAST_PRUNE_KEY)
    if last is not None and now - datetime.fromisoformat(last) < DAY - timedelta(minutes=5):
        return None
    removed = await prune_deliveries(store, older_than=now - timedelta(days=days))
    await store.set_meta(LAST_PRUNE_KEY, now.isoformat())
    if removed:
        log.info("retention: pruned %d delivery rows older than %d days", removed, days)
    return removed


async def prune_daily(
    store: Store,
    days: int,
    *,
    first_delay: float = 60.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """The bot's background task: the first prune a minute after start, then daily.

    A failure (the database locked, say) is logged and tried again the next hour.
    """
    if days <= 0:
        return
    delay = first_delay
    while True:
        await asyncio.sleep(delay)
        try:
            await prune_if_due(store, days, clock())
            delay = DAY.total_seconds()
        except Exception as error:
            log.warning("retention: could not prune deliveries (%s); trying in an hour", error)
            delay = 3600.0
