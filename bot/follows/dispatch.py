"""Delivering events to followers and alert channels, exactly once, event-driven.

Every few seconds each process asks the store which (recipient, event) pairs have no
delivery row yet, among the recipients it owns: a member's DMs by `Shards.owns(user_id)`,
a server's alert channel by its guild id, so each is sent by exactly one process. For a
member, every change waiting is claimed at once under one batch (one DM, however many
statuses an operator recorded in a row), once the newest has been quiet for
`QUIET_FOR` or the oldest has waited `HOLD_AT_MOST`. A claim is a row per (recipient,
event), unique in the store, written before anything is sent; the send carries a nonce
from the batch, and a re-send after Discord may have forgotten that nonce first looks for
the post. Every ending is recorded: sent, failed, skipped (alerts paused) or missed
(older than `ALERT_WINDOW` when first seen, say after a long downtime). A claim names the
process that made it; each process beats in `alert_workers`, and the claims of one that
stopped beating (killed mid-send) are taken over, once, by a process owning the recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.briefings.compose import Briefing
from bot.briefings.planner import ALL_SHARDS, Shards
from bot.briefings.sender import DeliveryFailure
from bot.follows.compose import Event, MemberAlert, StopButton, member_alert, server_alert
from bot.follows.follows import AlertChannel, FollowKind, Follows
from bot.rate_budget import RateBudget
from bot.storage import Database, Row, Transaction

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

POLL_SECONDS = 2.0
# Coalescing: a member's changes wait until the newest is this old (an operator recording
# several in a row), but never longer than HOLD_AT_MOST after the oldest.
QUIET_FOR = timedelta(seconds=3)
HOLD_AT_MOST = timedelta(seconds=20)
SETTLE_SLACK = 0.05  # seconds after a member's changes settle before the round that sends
# A change first seen later than this (the bot was down) is recorded missed, not sent.
ALERT_WINDOW = timedelta(hours=6)
# How far back a process looks for changes nobody dealt with, to record them missed.
LOOK_BACK = timedelta(days=7)
# A process beats in `alert_workers` with each claim and every BEAT_SECONDS while claims
# are in progress; a claim whose process has not beaten for DEAD_AFTER (it died, or was
# killed) is taken over by another, or by the same host's next start; on the same host, a
# process that no longer exists is known dead at once. A live process's claims are never
# touched, however long its retries.
BEAT_SECONDS = 5.0
DEAD_AFTER = timedelta(seconds=30)
PROCESS_GONE = "its process no longer exists on this host"
HEARTBEAT_STOPPED = "its heartbeat stopped"
FORGET_WORKERS_AFTER = timedelta(days=1)
NONCE_TRUST = timedelta(seconds=60)
RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0)
SENDING_AT_ONCE = 4

# Which follows an event reaches: a statement's follows hear of every change to its
# pledges; a pledge's and a power's (through the pledges it serves) of status changes.
# One row per (member, event, follow that it reached), with what sending needs of the
# member (a pause, the DM channel), so a fan-out to thousands reads each member once here.
_MEMBER_PENDING = """
SELECT f.user_id AS recipient_id, e.id AS event_id, e.recorded_at,
    f.kind AS follow_kind, f.slug AS follow_slug, fl.paused_reason, fl.dm_channel_id
FROM pledge_events e
JOIN pledges p ON p.id = e.pledge_id
JOIN statements s ON s.id = p.statement_id
JOIN follows f ON f.after_event < e.id AND (
    (f.kind = 'statement' AND f.slug = s.slug)
    OR (e.kind = 'status' AND f.kind = 'pledge' AND f.slug = p.slug)
    OR (e.kind = 'status' AND f.kind = 'power' AND f.slug IN (
        SELECT w.slug FROM powers w JOIN power_pledges pp ON pp.power_id = w.id
        WHERE pp.pledge_id = p.id)))
LEFT JOIN followers fl ON fl.user_id = f.user_id
WHERE e.recorded_at >= ?
AND NOT EXISTS (
    SELECT 1 FROM alert_deliveries d WHERE d.recipient = 'member'
    AND d.recipient_id = f.user_id AND d.event_id = e.id)
ORDER BY f.user_id, e.id
"""
_SERVER_PENDING = """
SELECT a.guild_id AS recipient_id, e.id AS event_id, e.recorded_at
FROM pledge_events e
JOIN pledges p ON p.id = e.pledge_id
JOIN statements s ON s.id = p.statement_id
JOIN alert_channels a ON a.after_event < e.id
    AND (a.statement_slug IS NULL OR a.statement_slug = s.slug)
WHERE e.kind = 'status' AND e.recorded_at >= ?
AND NOT EXISTS (
    SELECT 1 FROM alert_deliveries d WHERE d.recipient = 'server'
    AND d.recipient_id = a.guild_id AND d.event_id = e.id)
ORDER BY a.guild_id, e.id
"""
_EVENTS = """
SELECT e.id, e.kind, e.recorded_at, p.slug AS pledge_slug, p.title AS pledge_title,
    p.summary AS pledge_summary, s.slug AS statement_slug, s.title AS statement_title,
    h.from_status, h.to_status, h.changed_at, h.note, h.evidence_url, h.changed_by
FROM pledge_events e
JOIN pledges p ON p.id = e.pledge_id
JOIN statements s ON s.id = p.statement_id
LEFT JOIN status_history h ON h.id = e.history_id
WHERE e.id IN ({marks})
ORDER BY e.id
"""


def utc_clock() -> datetime:
    return datetime.now(UTC)


def nonce_for(batch: str) -> str:
    return batch[:25]  # Discord's limit on a nonce


def marker_for(batch: str) -> str:
    """Printed in the alert's footer: how a later re-send finds out it went through."""
    return f"Alert {batch[:12]}"


class AlertSender(Protocol):
    """How alerts reach Discord: `bot.client.delivery.DiscordSender`, faked in tests."""

    async def open_dm(self, user_id: int) -> int: ...

    async def send_dm(
        self, channel_id: int, alert: MemberAlert, *, nonce: str, marker: str
    ) -> int: ...

    async def channel_problem(self, guild_id: int, channel_id: int) -> str | None: ...

    async def post(
        self, channel_id: int, briefing: Briefing, *, nonce: str, role_id: int | None, marker: str
    ) -> int: ...

    async def find_post(self, channel_id: int, marker: str, *, since: datetime) -> int | None: ...

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None: ...


@dataclass
class Waiting:
    """What a member has waiting: events (id -> recorded at), the follows they reached,
    and the member's pause and DM channel as the pending query found them."""

    events: dict[int, str] = field(default_factory=dict)
    reached: dict[tuple[FollowKind, str], None] = field(default_factory=dict)
    paused_reason: str | None = None
    dm_channel_id: int | None = None


@dataclass(frozen=True)
class Claim:
    recipient: str  # "member" or "server"
    recipient_id: int
    batch: str
    event_ids: tuple[int, ...]
    claimed_at: str
    attempted_at: str | None = None


class AlertDispatcher:
    def __init__(
        self,
        db: Database,
        sender: AlertSender,
        budget: RateBudget,
        *,
        shards: Shards = ALL_SHARDS,
        clock: Clock = utc_clock,
        sleep: Sleep = asyncio.sleep,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.db = db
        self.follows = Follows(db)
        self.sender = sender
        self.budget = budget
        self.shards = shards
        self.clock = clock
        self.sleep = sleep
        self.poll_seconds = poll_seconds
        self._sending = asyncio.Semaphore(SENDING_AT_ONCE)
        self.worker = worker_name()  # this process, on its claims and heartbeat
        self._in_flight = 0  # recipients being claimed, sent and recorded right now
        self._next_settle: datetime | None = None  # the next member's changes to settle

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Deliver what is pending and take over what dead processes left claimed, forever,
        beating all along."""
        beating = asyncio.create_task(self._beat_forever())
        try:
            while True:
                try:
                    await self.recover_interrupted()
                    await self.deliver_pending()
                except Exception:
                    log.exception("alerts: delivering failed; trying again shortly")
                await asyncio.sleep(self.until_next_round())
        finally:
            beating.cancel()

    def until_next_round(self) -> float:
        """The poll interval, or less when a member's changes settle sooner: a change is
        sent `QUIET_FOR` after it was recorded, not at the next poll after that."""
        if self._next_settle is None:
            return self.poll_seconds
        wait = (self._next_settle - self.clock()).total_seconds()
        return min(self.poll_seconds, max(SETTLE_SLACK, wait + SETTLE_SLACK))

    async def beat(self) -> None:
        """This process is alive (its claims are in progress); long-gone ones are forgotten."""
        async with self.db.transaction() as tx:
            await self._beat_in(tx)

    async def _beat_in(self, tx: Transaction) -> None:
        now = self.clock()
        await tx.execute(
            "INSERT INTO alert_workers(worker, seen_at) VALUES (?, ?) "
            "ON CONFLICT(worker) DO UPDATE SET seen_at = excluded.seen_at",
            (self.worker, now.isoformat()),
        )
        await tx.execute(
            "DELETE FROM alert_workers WHERE seen_at < ?",
            ((now - FORGET_WORKERS_AFTER).isoformat(),),
        )

    async def _beat_forever(self) -> None:
        """Beat while claims are in progress (each claim beats too): an idle bot writes
        nothing, so its members' commands never queue behind a heartbeat."""
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            if not self._in_flight:
                continue
            try:
                await self.beat()
            except Exception as error:
                log.warning("alerts: could not record this process's heartbeat (%s)", error)

    async def deliver_pending(self) -> int:
        """One round: every pending alert this process owns, sent or recorded. Returns
        how many batches were sent or recorded."""
        now = self.clock()
        since = (now - LOOK_BACK).isoformat()
        members = await self._members_waiting(since)
        servers = await self._pending(_SERVER_PENDING, since)
        settling = {
            user_id: settles_at(waiting.events.values(), now)
            for user_id, waiting in members.items()
            if self.shards.owns(user_id)
        }
        ready = [user_id for user_id, at in settling.items() if at <= now]
        self._next_settle = min((at for at in settling.values() if at > now), default=None)
        wanted = {e for user_id in ready for e in members[user_id].events}
        known = {event.id: event for event in await self._events(sorted(wanted))}
        jobs = [
            self._one_at_a_time(self._member_batch(user_id, members[user_id], known, now))
            for user_id in ready
        ]
        jobs += [
            self._one_at_a_time(self._server_events(guild_id, events, now))
            for guild_id, events in servers.items()
            if self.shards.owns(guild_id)
        ]
        done = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                log.error("alerts: one delivery failed", exc_info=outcome)
        return sum(1 for outcome in done if outcome is True)

    async def _one_at_a_time(self, job: Awaitable[bool]) -> bool:
        """A few recipients at a time, each from its first read to its last write: with
        10,000 waiting, members' own queries never queue behind thousands of the
        dispatcher's, and a claim is only ever a send in progress."""
        async with self._sending:
            with self._working():
                return await job

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def _members_waiting(self, since: str) -> dict[int, Waiting]:
        found: dict[int, Waiting] = {}
        for r in await self.db.rows(_MEMBER_PENDING, (since,)):
            waiting = found.setdefault(int(r["recipient_id"]), Waiting())
            waiting.events[int(r["event_id"])] = r["recorded_at"]
            waiting.reached[(r["follow_kind"], r["follow_slug"])] = None
            waiting.paused_reason = r["paused_reason"]
            if r["dm_channel_id"] is not None:
                waiting.dm_channel_id = int(r["dm_channel_id"])
        return found

    async def _pending(self, sql: str, since: str) -> dict[int, list[tuple[int, str]]]:
        found: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for r in await self.db.rows(sql, (since,)):
            found[int(r["recipient_id"])].append((int(r["event_id"]), r["recorded_at"]))
        return found

    # -- members ------------------------------------------------------------------

    async def _member_batch(
        self, user_id: int, waiting: Waiting, known: dict[int, Event], now: datetime
    ) -> bool:
        """Claim and send one DM for all of the member's waiting changes (settled)."""
        events = sorted(waiting.events.items())
        fresh = [(e, at) for e, at in events if now - _instant(at) <= ALERT_WINDOW]
        stale = [e for e, at in events if now - _instant(at) > ALERT_WINDOW]
        if stale:
            await self._record("member", user_id, stale, "missed", "too late: the bot was offline")
        if not fresh:
            return bool(stale)
        event_ids = [e for e, _ in fresh]
        if waiting.paused_reason is not None:
            reason = f"alerts paused: {waiting.paused_reason}"
            await self._record("member", user_id, event_ids, "skipped", reason)
            return True
        claim = await self._claim("member", user_id, event_ids)
        if claim is None:
            return False
        claimed = [known[e] for e in claim.event_ids if e in known]
        stops = [
            StopButton(kind, slug, f"Stop: {_title(claimed, slug)}"[:80])
            for kind, slug in waiting.reached
        ]
        await self._send_member(claim, events=claimed, stops=stops, dm=waiting.dm_channel_id)
        return True

    async def _send_member(
        self,
        claim: Claim,
        *,
        recovering: bool = False,
        events: list[Event] | None = None,
        stops: list[StopButton] | None = None,
        dm: int | None = None,
    ) -> str:
        """One DM for a claimed batch. What the round already read is passed in; a
        recovery reads it here."""
        user_id = claim.recipient_id
        if events is None:
            events = await self._events(claim.event_ids)
        if not events:
            await self._finish(claim, "skipped", error="the pledges were removed")
            return "skipped"
        if stops is None:
            stops = await self._stops(user_id, events)
        alert = member_alert(events, stops)

        async def send(channel_id: int, nonce: str, marker: str) -> int:
            return await self.sender.send_dm(channel_id, alert, nonce=nonce, marker=marker)

        async def pause(reason: str) -> None:
            await self.follows.pause(user_id, reason)
            await self._finish(claim, "failed", error=reason)
            log.info("alerts for member %s paused: %s", user_id, reason)

        async def channel() -> int:
            return dm if dm is not None else await self._dm_channel(user_id)

        return await self._send(claim, channel, send, pause, recovering=recovering)

    async def _send(
        self,
        claim: Claim,
        channel: Callable[[], Awaitable[int]],
        send: Callable[[int, str, str], Awaitable[int]],
        pause: Callable[[str], Awaitable[None]],
        *,
        recovering: bool,
    ) -> str:
        """Send a claimed batch, retrying what may pass (same nonce), and record how it
        ended; a re-send first looks for the message once Discord may have forgotten the
        nonce. `send(channel_id, nonce, marker)` is the one request."""
        nonce, marker = nonce_for(claim.batch), marker_for(claim.batch)
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                channel_id = await channel()
                if attempt or recovering:
                    found = await self._posted_before(claim, channel_id, marker)
                    if found is not None:
                        await self._finish(claim, "sent", message_id=found)
                        return "sent"
                await self.budget.wait()
                async with self.budget.prepaid():
                    message_id = await send(channel_id, nonce, marker)
            except DeliveryFailure as failure:
                if failure.kind == "pause":
                    await pause(failure.reason)
                    return "paused"
                if failure.kind == "fail" or delay is None:
                    await self._finish(claim, "failed", error=failure.reason)
                    return "failed"
                await self.sleep(delay)
                continue
            await self._finish(claim, "sent", message_id=message_id)
            return "sent"
        raise AssertionError("unreachable")  # pragma: no cover

    async def _dm_channel(self, user_id: int) -> int:
        """The member's DM channel: kept once opened, so an alert is one request."""
        known = await self.follows.dm_channel(user_id)
        if known is not None:
            return known
        await self.budget.wait()
        async with self.budget.prepaid():
            channel_id = await self.sender.open_dm(user_id)
        await self.follows.remember_dm_channel(user_id, channel_id)
        return channel_id

    async def _stops(self, user_id: int, events: Sequence[Event]) -> list[StopButton]:
        """The member's follows that these events reached: what "Stop alerts" can stop."""
        pledges = {e.pledge_slug for e in events}
        statements = {e.statement_slug for e in events}
        statuses = {e.pledge_slug for e in events if e.kind == "status"}
        powers: set[str] = set()
        if statuses:
            marks = ", ".join("?" * len(statuses))
            rows = await self.db.rows(
                "SELECT DISTINCT w.slug FROM powers w JOIN power_pledges pp "
                "ON pp.power_id = w.id JOIN pledges p ON p.id = pp.pledge_id "
                f"WHERE p.slug IN ({marks})",
                tuple(statuses),
            )
            powers = {r[0] for r in rows}
        stops = []
        for follow in await self.follows.of(user_id):
            reached = {
                "pledge": follow.slug in pledges and follow.slug in statuses,
                "statement": follow.slug in statements,
                "power": follow.slug in powers,
            }[follow.kind]
            if reached:
                label = f"Stop: {_title(events, follow.slug)}"[:80]
                stops.append(StopButton(follow.kind, follow.slug, label))
        return stops

    # -- servers ------------------------------------------------------------------

    async def _server_events(
        self, guild_id: int, events: list[tuple[int, str]], now: datetime
    ) -> bool:
        """A server's changes one after another, so its channel reads them in order."""
        dealt = [await self._server_event(guild_id, e, at, now) for e, at in events]
        return any(dealt)

    async def _server_event(
        self, guild_id: int, event_id: int, recorded_at: str, now: datetime
    ) -> bool:
        if now - _instant(recorded_at) > ALERT_WINDOW:
            await self._record("server", guild_id, [event_id], "missed", "too late")
            return True
        setting = await self.follows.alert_channel(guild_id)
        if setting is None:
            return False
        if setting.paused_reason is not None:
            reason = f"alerts paused: {setting.paused_reason}"
            await self._record("server", guild_id, [event_id], "skipped", reason)
            return True
        claim = await self._claim("server", guild_id, [event_id])
        if claim is None:
            return False
        await self._send_server(claim, setting)
        return True

    async def _send_server(
        self, claim: Claim, setting: AlertChannel, *, recovering: bool = False
    ) -> str:
        events = await self._events(claim.event_ids)
        if not events:
            await self._finish(claim, "skipped", error="the pledge was removed")
            return "skipped"
        problem = await self.sender.channel_problem(setting.guild_id, setting.channel_id)
        if problem:
            await self._pause_server(claim, setting, problem)
            return "paused"
        briefing = server_alert(events[0], setting.role_id)

        async def channel() -> int:
            return setting.channel_id

        async def send(channel_id: int, nonce: str, marker: str) -> int:
            return await self.sender.post(
                channel_id, briefing, nonce=nonce, role_id=setting.role_id, marker=marker
            )

        async def pause(reason: str) -> None:
            await self._pause_server(claim, setting, reason)

        return await self._send(claim, channel, send, pause, recovering=recovering)

    async def _pause_server(self, claim: Claim, setting: AlertChannel, reason: str) -> None:
        """Like a briefing: the setting is kept, paused with its reason; moderators told."""
        await self._finish(claim, "failed", error=reason)
        if await self.follows.pause_alert_channel(setting.guild_id, setting.channel_id, reason):
            log.warning("alerts for guild %s paused: %s", setting.guild_id, reason)
            try:
                await self.sender.notify(
                    setting.guild_id,
                    f"⏸️ Pledge alerts for <#{setting.channel_id}> are paused: {reason}. "
                    "Fix it, then set them again with `/briefing alerts`.",
                    avoid_channel_id=setting.channel_id,
                )
            except DeliveryFailure as failure:
                log.warning("could not tell guild %s: %s", setting.guild_id, failure)

    # -- claims -------------------------------------------------------------------

    async def _claim(
        self, recipient: str, recipient_id: int, event_ids: Sequence[int]
    ) -> Claim | None:
        """Claim whichever of these nobody has: one batch, one send. None if none left."""
        batch = secrets.token_hex(12)
        now = self.clock().isoformat()
        async with self.db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO alert_deliveries(recipient, recipient_id, event_id, batch, state, "
                "claimed_at, attempted_at, claimed_by) VALUES (?, ?, ?, ?, 'claimed', ?, ?, ?) "
                "ON CONFLICT(recipient, recipient_id, event_id) DO NOTHING",
                [(recipient, recipient_id, e, batch, now, now, self.worker) for e in event_ids],
            )
            await self._beat_in(tx)
            rows = await tx.rows(
                "SELECT event_id FROM alert_deliveries WHERE batch = ? ORDER BY event_id",
                (batch,),
            )
        if not rows:
            log.debug("alerts for %s %s: already claimed", recipient, recipient_id)
            return None
        return Claim(recipient, recipient_id, batch, tuple(int(r[0]) for r in rows), now)

    async def _record(
        self, recipient: str, recipient_id: int, event_ids: Sequence[int], state: str, error: str
    ) -> None:
        """An ending without a send (missed, skipped), claimed and finished at once."""
        now = self.clock().isoformat()
        batch = secrets.token_hex(12)
        async with self.db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO alert_deliveries(recipient, recipient_id, event_id, batch, state, "
                "claimed_at, finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(recipient, recipient_id, event_id) DO NOTHING",
                [(recipient, recipient_id, e, batch, state, now, now, error) for e in event_ids],
            )

    async def _finish(
        self, claim: Claim, state: str, *, message_id: int | None = None, error: str | None = None
    ) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE alert_deliveries SET state = ?, message_id = ?, error = ?, "
                "finished_at = ? WHERE batch = ? AND state = 'claimed'",
                (state, message_id, error, self.clock().isoformat(), claim.batch),
            )

    async def _posted_before(self, claim: Claim, channel_id: int, marker: str) -> int | None:
        """Before a re-send: within the nonce window the nonce dedupes; beyond it, look."""
        attempted = await self.db.scalar(
            "SELECT min(attempted_at) FROM alert_deliveries WHERE batch = ?", (claim.batch,)
        )
        if attempted is None:
            return None
        first = datetime.fromisoformat(attempted)
        if self.clock() - first <= NONCE_TRUST:
            return None
        return await self.sender.find_post(channel_id, marker, since=first - timedelta(minutes=1))

    async def _events(self, event_ids: Sequence[int]) -> list[Event]:
        if not event_ids:
            return []
        marks = ", ".join("?" * len(event_ids))
        rows = await self.db.rows(_EVENTS.format(marks=marks), tuple(event_ids))
        return [_event(r) for r in rows]

    # -- recovery -----------------------------------------------------------------

    async def recover_interrupted(self) -> None:
        """Finish batches claimed by a process that stopped beating (it died mid-send),
        among this process's recipients: each taken over by one process only."""
        now = self.clock()
        dead_since = (now - DEAD_AFTER).isoformat()
        rows = await self.db.rows(
            "SELECT d.recipient, d.recipient_id, d.batch, d.claimed_by, w.seen_at, "
            "min(d.claimed_at) AS claimed_at, min(d.attempted_at) AS attempted_at "
            "FROM alert_deliveries d LEFT JOIN alert_workers w ON w.worker = d.claimed_by "
            "WHERE d.state = 'claimed' AND d.claimed_by != ? "
            "GROUP BY d.recipient, d.recipient_id, d.batch, d.claimed_by, w.seen_at",
            (self.worker,),
        )
        for r in rows:
            recipient_id = int(r["recipient_id"])
            if not self.shards.owns(recipient_id):
                continue
            beaten = r["seen_at"] is not None and r["seen_at"] >= dead_since
            gone = gone_from_this_host(r["claimed_by"])
            if beaten and not gone:
                continue  # its process may still be sending it
            why = PROCESS_GONE if gone else HEARTBEAT_STOPPED
            try:
                claim = await self._take_over(r, why)
                if claim is not None:
                    await self._recover(claim, now)
            except Exception:
                log.exception("alerts: recovering batch %s failed", r["batch"])

    async def _take_over(self, r: Row, why: str) -> Claim | None:
        """The dead process's batch, now this one's; None if another process took it."""
        async with self.db.transaction() as tx:
            await self._beat_in(tx)
            taken = await tx.execute(
                "UPDATE alert_deliveries SET claimed_by = ? WHERE batch = ? "
                "AND state = 'claimed' AND claimed_by = ?",
                (self.worker, r["batch"], r["claimed_by"]),
            )
            ids = await tx.rows(
                "SELECT event_id FROM alert_deliveries WHERE batch = ? AND state = 'claimed' "
                "AND claimed_by = ? ORDER BY event_id",
                (r["batch"], self.worker),
            )
        if not taken or not ids:
            return None
        log.info("alerts: taking over batch %s from a process that stopped (%s)", r["batch"], why)
        return Claim(
            r["recipient"],
            int(r["recipient_id"]),
            r["batch"],
            tuple(int(i[0]) for i in ids),
            r["claimed_at"],
            r["attempted_at"],
        )

    async def _recover(self, claim: Claim, now: datetime) -> None:
        if now - datetime.fromisoformat(claim.claimed_at) > ALERT_WINDOW:
            await self._finish(claim, "failed", error="interrupted and not re-sent")
            return
        if claim.recipient == "member":
            if await self.follows.pause_of(claim.recipient_id) is not None:
                await self._finish(claim, "skipped", error="alerts paused")
                return
            async with self._sending:
                with self._working():
                    await self._send_member(claim, recovering=True)
            return
        setting = await self.follows.alert_channel(claim.recipient_id)
        if setting is None or setting.paused_reason is not None:
            await self._finish(claim, "skipped", error="alerts stopped or paused")
            return
        async with self._sending:
            with self._working():
                await self._send_server(claim, setting, recovering=True)


def settles_at(recorded: Iterable[str], now: datetime) -> datetime:
    """When a member's waiting changes travel together: once the newest has been quiet
    for `QUIET_FOR`, or the oldest has waited `HOLD_AT_MOST`. Changes that are all older
    than `ALERT_WINDOW` (to be recorded missed) are due at once."""
    fresh = sorted(at for at in map(_instant, recorded) if now - at <= ALERT_WINDOW)
    if not fresh:
        return now
    return min(fresh[-1] + QUIET_FOR, fresh[0] + HOLD_AT_MOST)


def worker_name() -> str:
    """host/pid/random: unique, and telling a later process on the same host whether the
    one that made a claim is still running (a restart after `kill -9` takes over at once)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def gone_from_this_host(worker: str) -> bool:
    """The worker ran on this host and its process no longer exists."""
    host, _, rest = worker.partition("/")
    pid, _, _ = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user has that pid now
    return False


def _title(events: Sequence[Event], slug: str) -> str:
    """A followed item's name for its button: a pledge's or statement's title (a power's
    slug, which the events do not carry)."""
    for event in events:
        if event.pledge_slug == slug:
            return event.pledge_title
        if event.statement_slug == slug:
            return event.statement_title
    return slug


def _instant(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event(r: Row) -> Event:
    return Event(
        id=int(r["id"]),
        kind=r["kind"],
        recorded_at=r["recorded_at"],
        pledge_slug=r["pledge_slug"],
        pledge_title=r["pledge_title"],
        pledge_summary=r["pledge_summary"],
        statement_slug=r["statement_slug"],
        statement_title=r["statement_title"],
        from_status=r["from_status"],
        to_status=r["to_status"],
        changed_at=r["changed_at"],
        note=r["note"] or "",
        evidence_url=r["evidence_url"] or "",
        changed_by=r["changed_by"] or "",
    )
