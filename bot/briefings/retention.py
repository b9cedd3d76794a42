"""Retention: old delivery rows are pruned, in small batches, once a day.

Every briefing slot leaves a row in `deliveries`, so the table grows forever without
this. Rows older than `[retention] deliveries_days` go, except those the bot still
reads: each schedule's latest scheduled slot (the engine plans and claims after it), its
latest row (`/briefing show`) and its latest sent post ("changes since the previous
briefing"). Rows still `claimed` are never touched: a post may be in flight. Alert
delivery rows go too, once older than the alert dispatcher's look-back. The audit of
schedule changes, the status history and the pledge events are never pruned.

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
FIRST_PRUNE_SECONDS = 60.0
# When the last prune ran, by any process: several processes on one database prune once.
LAST_PRUNE_KEY = "retention_last_run"

_FINISHED = "('sent', 'failed', 'missed', 'skipped')"
# The newest old row: batches walk the table by id up to here and no further.
_LAST_OLD = f"SELECT max(id) FROM deliveries WHERE state IN {_FINISHED} AND claimed_at < ?"
# What the bot reads, per schedule: its latest row, latest sent post, latest scheduled
# slot. Read once per prune: later rows only ever come after these, so they stay kept.
_KEPT = """
SELECT max(id) FROM deliveries GROUP BY schedule_id
UNION SELECT max(id) FROM deliveries WHERE state = 'sent' GROUP BY schedule_id
UNION SELECT d.id FROM deliveries d JOIN (
    SELECT schedule_id, max(slot) AS slot FROM deliveries WHERE manual = 0 GROUP BY schedule_id
) latest ON latest.schedule_id = d.schedule_id AND latest.slot = d.slot
"""
# The next batch of old finished rows, by id. `+state` keeps SQLite walking the primary
# key from where the last batch stopped, rather than collecting every old row from the
# state index and sorting them again for each batch. SQLite dialect (the unary `+`);
# PostgreSQL's planner needs no such hint, and has no unary `+` for text.
_OLD_ROWS = {
    dialect: f"""
SELECT id FROM deliveries
WHERE id > ? AND id <= ? AND {state} IN {_FINISHED} AND claimed_at < ?
ORDER BY id LIMIT ?
"""
    for dialect, state in (("sqlite", "+state"), ("postgresql", "state"))
}


async def prune_deliveries(
    store: Store,
    *,
    older_than: datetime,
    batch_rows: int = BATCH_ROWS,
    pause: float = PAUSE_BETWEEN_BATCHES,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Delete prunable delivery rows claimed before `older_than`; returns how many.

    The rows to keep are read first (a read, which takes no write lock); then each batch
    looks at `batch_rows` old rows and deletes those not kept, in one short transaction.
    """
    cutoff = older_than.astimezone(UTC).isoformat()  # the form claims are stamped in
    (row,) = await store.rows(_LAST_OLD, (cutoff,))
    if row[0] is None:
        return 0
    last = int(row[0])
    kept = {int(r[0]) for r in await store.rows(_KEPT)}
    old_rows = _OLD_ROWS[store.db.dialect]
    after, removed = 0, 0
    while True:
        async with store.transaction() as tx:
            old = [int(r[0]) for r in await tx.rows(old_rows, (after, last, cutoff, batch_rows))]
            doomed = [i for i in old if i not in kept]
            if doomed:
                await tx.execute(
                    f"DELETE FROM deliveries WHERE id IN ({','.join('?' * len(doomed))})", doomed
                )
        removed += len(doomed)
        if len(old) < batch_rows:
            return removed
        after = old[-1]
        await sleep(pause)


# Alert delivery rows are what keeps an alert from going out twice: the dispatcher looks
# back `bot.follows.dispatch.LOOK_BACK` (7 days) for changes without one, so rows are
# kept at least a day longer than that, whatever the retention setting.
ALERTS_KEPT_AT_LEAST = timedelta(days=8)
_OLD_ALERT_ROWS = (
    "SELECT id FROM alert_deliveries WHERE id > ? AND state != 'claimed' AND claimed_at < ? "
    "ORDER BY id LIMIT ?"
)


async def prune_alert_deliveries(
    store: Store,
    *,
    older_than: datetime,
    now: datetime,
    batch_rows: int = BATCH_ROWS,
    pause: float = PAUSE_BETWEEN_BATCHES,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Delete finished alert delivery rows claimed before `older_than` (and before the
    dispatcher's look-back); returns how many."""
    cutoff = min(older_than, now - ALERTS_KEPT_AT_LEAST).astimezone(UTC).isoformat()
    after, removed = 0, 0
    while True:
        async with store.transaction() as tx:
            old = [int(r[0]) for r in await tx.rows(_OLD_ALERT_ROWS, (after, cutoff, batch_rows))]
            if old:
                await tx.execute(
                    f"DELETE FROM alert_deliveries WHERE id IN ({','.join('?' * len(old))})", old
                )
        removed += len(old)
        if len(old) < batch_rows:
            return removed
        after = old[-1]
        await sleep(pause)


async def prune_if_due(store: Store, days: int, now: datetime) -> int | None:
    """Prune unless any process did within the last day; None when it was not due."""
    last = await store.get_meta(LAST_PRUNE_KEY)
    if last is not None and now - datetime.fromisoformat(last) < DAY - timedelta(minutes=5):
        return None
    removed = await prune_deliveries(store, older_than=now - timedelta(days=days))
    removed += await prune_alert_deliveries(store, older_than=now - timedelta(days=days), now=now)
    await store.set_meta(LAST_PRUNE_KEY, now.isoformat())
    if removed:
        log.info("retention: pruned %d delivery rows older than %d days", removed, days)
    return removed


async def prune_daily(
    store: Store,
    days: int,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """The bot's background task: the first prune a minute after start (start-up and
    catch-up come first), then daily.

    A failure (the database locked, say) is logged and tried again the next hour.
    """
    if days <= 0:
        return
    delay = FIRST_PRUNE_SECONDS
    while True:
        await asyncio.sleep(delay)
        try:
            await prune_if_due(store, days, clock())
            delay = DAY.total_seconds()
        except Exception as error:
            log.warning("retention: could not prune deliveries (%s); trying in an hour", error)
            delay = 3600.0
