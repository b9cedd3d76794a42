"""Members' suggestions: a status with an evidence link, for operators to accept or reject.

A member suggests (`/pledge suggest`); another member handing in the same pledge and link
backs that suggestion instead of making a new one. Operators review (the CLI or
`/operator suggestions`): Accept records the status through the rating method in the same
transaction as the decision, the operator as who rated it and the history entry naming the
suggestion; Reject keeps the suggestion with its reason. Nothing is deleted. Each member who
suggested or backed it is told the outcome once (`Notice`): by DM when they take one, else
privately after their next command.

Limits, said plainly when reached: `OPEN_LIMIT` suggestions a member waiting for review,
and `DAILY_LIMIT` handed in within 24 hours. Backing another member's suggestion counts
towards the day's (operators read each backing's note) but not the open ones (nothing new
waits). A link already decided for that pledge is answered with the decision; nothing is
recorded then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.errors import UserError
from bot.models import STATUS_BY_SLUG, StatusChange
from bot.pledges import cards
from bot.pledges.cards import Card, Field
from bot.pledges.ratings import link_problem, rating_problem
from bot.pledges.services import Services
from bot.storage import Database, Row, Transaction
from bot.store import record_status

Clock = Callable[[], datetime]

OPEN_LIMIT = 3
DAILY_LIMIT = 10
DAY = timedelta(hours=24)
NOTE_LIMIT = 500
EVIDENCE_LIMIT = 500
REASON_LIMIT = 500
# A DM claimed this long ago and never recorded (its process died mid-send) is sent again,
# by a process that first looks for it in the member's DMs (its footer marker), so once.
STALE_SENDING = timedelta(minutes=2)
INTERRUPTED = "interrupted while sending the DM"
LARGEST_ID = 2**63 - 1  # ids and Discord snowflakes fit a signed 64-bit integer
NOTHING_RECORDED = "Nothing was recorded."
BLOCKED = (
    "pledgebot's operators have stopped taking suggestions from you, so this one was not "
    "recorded. Suggestions you made before are kept and still reviewed."
)
WHAT_IS_KEPT = (
    "Kept: your user id, the server you suggested in, the pledge, status, link and note, and "
    "when. Operators see who suggested what; the public record never names you."
)
TOLD_HOW = (
    "You'll be told the outcome by direct message, or privately after your next command if "
    "your DMs are closed."
)


def utc_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Backer:
    """Another member who handed in the same pledge and link."""

    user_id: int
    guild_id: int | None
    status: str
    note: str
    created_at: str


@dataclass(frozen=True)
class Suggestion:
    id: int
    pledge_slug: str
    pledge_title: str
    pledge_status: str  # the pledge's status when read
    status: str
    evidence_url: str
    note: str
    user_id: int
    guild_id: int | None
    created_at: str
    state: str  # open, accepted, rejected
    decided_at: str | None = None
    decided_by: str | None = None
    reason: str | None = None
    history_id: int | None = None
    backers: tuple[Backer, ...] = ()


@dataclass(frozen=True)
class Submitted:
    """What `suggest` recorded: a new suggestion, or a backing of another member's."""

    suggestion: Suggestion
    backed: bool
    open_count: int  # the member's suggestions now waiting for review
    today_count: int  # handed in within the last 24 hours, this one included


@dataclass(frozen=True)
class Decision:
    suggestion: Suggestion
    change: StatusChange | None = None  # the status change an accept recorded
    told: int = 0  # members to tell of it


@dataclass(frozen=True)
class Notice:
    """An outcome one member is to hear of: as the author, or as a backer."""

    suggestion_id: int
    user_id: int
    pledge_title: str
    status: str
    outcome: str  # accepted or rejected
    reason: str | None
    backed: bool
    # A process died while sending it: the DM may have gone out, so it is looked for first.
    interrupted: bool = False


@dataclass(frozen=True)
class NoticeState:
    """How telling one member ended so far (for operators: `suggestions show`)."""

    user_id: int
    state: str  # pending, sending, waiting (for their next command), dm, command
    updated_at: str
    error: str | None


@dataclass(frozen=True)
class ReviewPage:
    """One page of /operator suggestions: a suggestion (None when nothing waits)."""

    card: Card
    suggestion_id: int | None
    index: int
    total: int


NoticeSend = Callable[[Notice], Awaitable[str | None]]


def input_problem(status: str, evidence: str, note: str) -> str | None:
    """Why a suggestion cannot be recorded as typed, in words for the member; None if it can."""
    if status not in STATUS_BY_SLUG:
        return "Unknown status. Pick one from the list."
    if not evidence:
        return "A suggestion needs evidence: a link (http:// or https://) to where it is reported."
    if "\x00" in evidence or "\x00" in note:
        return "Your link or note holds a NUL character, which cannot be stored."
    if len(evidence) > EVIDENCE_LIMIT:
        return f"That link is {len(evidence)} characters long; at most {EVIDENCE_LIMIT} fit."
    if problem := link_problem(evidence):
        return f"The evidence link was refused: {problem}."
    if len(note) > NOTE_LIMIT:
        return (
            f"Your note is {len(note)} characters long; at most {NOTE_LIMIT} fit. "
            "Shorten it and suggest again."
        )
    return None


def defused(text: str) -> str:
    """A member's words as the public record shows them: no mention syntax survives
    (a zero-width space after each @ and #), whatever later shows the text."""
    return text.replace("@", "@\u200b").replace("<#", "<#\u200b")


def history_note(suggestion: Suggestion) -> str:
    """The note an accepted suggestion's history entry carries, unless the operator gives one."""
    return defused(suggestion.note) if suggestion.note else "Evidence suggested by a member."


def valid_id(number: int) -> bool:
    return 0 < number <= LARGEST_ID


class Suggestions:
    """Suggestions, their backers, blocked users and outcome notices, in the store."""

    def __init__(self, db: Database, *, clock: Clock = utc_clock) -> None:
        self.db = db
        self.clock = clock

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC)

    # -- members --------------------------------------------------------------------

    async def suggest(
        self,
        user_id: int,
        guild_id: int | None,
        pledge_slug: str,
        status: str,
        evidence: str,
        note: str = "",
    ) -> Submitted:
        """Record a suggestion (or back the open one with the same pledge and link), or
        raise UserError saying plainly why not."""
        evidence, note = evidence.strip(), note.strip()
        if await self.is_blocked(user_id):
            raise UserError(BLOCKED)
        if problem := input_problem(status, evidence, note):
            raise UserError(f"{problem} {NOTHING_RECORDED}")
        now = self._now()
        stamp = _stamp(now)
        async with self.db.transaction() as tx:
            found = await tx.rows(
                "SELECT id, title, status FROM pledges WHERE slug = ?", (pledge_slug,)
            )
            if not found:
                raise UserError("That pledge was removed a moment ago; try again.")
            pledge = found[0]
            same = await tx.rows(
                "SELECT id FROM suggestions WHERE pledge_id = ? AND evidence_url = ? "
                "ORDER BY id DESC",
                (pledge["id"], evidence),
            )
            open_ids = await _open_ids(tx, user_id)
            handed_in = await _handed_in_since(tx, user_id, _stamp(now - DAY))
            if same:
                existing = await _read(tx, int(same[0]["id"]))
                assert existing is not None
                _check_can_back(existing, user_id)
                _check_daily(handed_in, now)
                backed = Backer(user_id, guild_id, status, note, stamp)
                await tx.execute(
                    "INSERT INTO suggestion_backers(suggestion_id, user_id, guild_id, status, "
                    "note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (existing.id, user_id, guild_id, status, note, stamp),
                )
                suggestion = replace(existing, backers=(*existing.backers, backed))
                return Submitted(suggestion, True, len(open_ids), len(handed_in) + 1)
            if pledge["status"] == status:
                raise UserError(
                    f"**{pledge['title']}** is already rated {cards.status_label(status)}: "
                    f"suggest a different status, or nothing needs changing. {NOTHING_RECORDED}"
                )
            if len(open_ids) >= OPEN_LIMIT:
                waiting = ", ".join(f"#{i}" for i in open_ids)
                raise UserError(
                    f"You have {len(open_ids)} suggestions waiting for review ({waiting}), the "
                    f"most one member can have open. Suggest again once one is decided; "
                    f"you'll be told when. {NOTHING_RECORDED}"
                )
            _check_daily(handed_in, now)
            suggestion_id = await tx.scalar(
                "INSERT INTO suggestions(pledge_id, status, evidence_url, note, user_id, "
                "guild_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (pledge["id"], status, evidence, note, user_id, guild_id, stamp),
            )
            made = await _read(tx, int(suggestion_id))
        assert made is not None
        return Submitted(made, False, len(open_ids) + 1, len(handed_in) + 1)

    async def is_blocked(self, user_id: int) -> bool:
        if not valid_id(user_id):
            return False
        found = await self.db.scalar(
            "SELECT 1 FROM suggestion_blocks WHERE user_id = ?", (user_id,)
        )
        return found is not None

    # -- operators --------------------------------------------------------------------

    async def get(self, suggestion_id: int) -> Suggestion | None:
        if not valid_id(suggestion_id):
            return None
        rows = await self.db.rows(f"{_SELECT} WHERE s.id = ?", (suggestion_id,))
        if not rows:
            return None
        return _suggestion(rows[0], await _backers(self.db, [suggestion_id]))

    async def waiting(self) -> list[Suggestion]:
        """Every open suggestion, oldest first."""
        rows = await self.db.rows(f"{_SELECT} WHERE s.state = 'open' ORDER BY s.id")
        backers = await _backers(self.db, [int(r["id"]) for r in rows])
        return [_suggestion(r, backers) for r in rows]

    async def review_page(self, index: int, notice: str = "") -> ReviewPage:
        """The `index`th open suggestion, oldest first (the last one if fewer wait)."""
        total = int(await self.db.scalar("SELECT count(*) FROM suggestions WHERE state = 'open'"))
        if total == 0:
            text = "Nothing waits for review: every suggestion has been decided."
            card = Card(
                title="Suggestions to review",
                description="\n\n".join(filter(None, [notice, text])),
            )
            return ReviewPage(card, None, 0, 0)
        index = max(0, min(index, total - 1))
        rows = await self.db.rows(
            f"{_SELECT} WHERE s.state = 'open' ORDER BY s.id LIMIT 1 OFFSET ?", (index,)
        )
        if not rows:  # some were decided between the two reads: count again
            return await self.review_page(index, notice)
        suggestion = _suggestion(rows[0], await _backers(self.db, [int(rows[0]["id"])]))
        card = review_card(suggestion, index, total, notice)
        return ReviewPage(card, suggestion.id, index, total)

    async def accept(self, suggestion_id: int, *, by: str, note: str = "") -> Decision:
        """Record the suggested status as `by`'s rating, and the decision, in one
        transaction; the history entry names the suggestion."""
        stamp = _stamp(self._now())
        async with self.db.transaction() as tx:
            suggestion = await _open_one(tx, suggestion_id)
            if problem := rating_problem(suggestion.status, suggestion.evidence_url):
                raise UserError(f"Not recorded: {problem}.")
            change = await record_status(
                tx,
                suggestion.pledge_slug,
                suggestion.status,
                note=note.strip() or history_note(suggestion),
                changed_by=by,
                evidence_url=suggestion.evidence_url,
                when=stamp,
                suggestion_id=suggestion.id,
            )
            await tx.execute(
                "UPDATE suggestions SET state = 'accepted', decided_at = ?, decided_by = ?, "
                "history_id = ? WHERE id = ? AND state = 'open'",
                (stamp, by, change.id, suggestion.id),
            )
            told = await _notices_for(tx, suggestion, stamp)
        decided = replace(
            suggestion, state="accepted", decided_at=stamp, decided_by=by, history_id=change.id
        )
        return Decision(decided, change, told)

    async def reject(self, suggestion_id: int, *, by: str, reason: str) -> Decision:
        """Decline it with a reason the member is told; the suggestion is kept."""
        reason = reason.strip()
        if not reason:
            raise UserError("Say why it is rejected: the member is told the reason.")
        if len(reason) > REASON_LIMIT:
            raise UserError(
                f"The reason is {len(reason)} characters long; at most {REASON_LIMIT} fit."
            )
        if "\x00" in reason:
            raise UserError("The reason holds a NUL character, which cannot be stored.")
        stamp = _stamp(self._now())
        async with self.db.transaction() as tx:
            suggestion = await _open_one(tx, suggestion_id)
            await tx.execute(
                "UPDATE suggestions SET state = 'rejected', decided_at = ?, decided_by = ?, "
                "reason = ? WHERE id = ? AND state = 'open'",
                (stamp, by, reason, suggestion.id),
            )
            told = await _notices_for(tx, suggestion, stamp)
        decided = replace(
            suggestion, state="rejected", decided_at=stamp, decided_by=by, reason=reason
        )
        return Decision(decided, None, told)

    async def block(self, user_id: int, *, by: str) -> bool:
        """Refuse the user's suggestions from now on; False if already blocked."""
        if not valid_id(user_id):
            raise UserError(f"{user_id} is not a Discord user id.")
        async with self.db.transaction() as tx:
            added = await tx.execute(
                "INSERT INTO suggestion_blocks(user_id, blocked_at, blocked_by) VALUES (?, ?, ?) "
                "ON CONFLICT(user_id) DO NOTHING",
                (user_id, _stamp(self._now()), by),
            )
        return added > 0

    async def unblock(self, user_id: int) -> bool:
        """Take the user's suggestions again; False if they were not blocked."""
        if not valid_id(user_id):
            raise UserError(f"{user_id} is not a Discord user id.")
        async with self.db.transaction() as tx:
            removed = await tx.execute(
                "DELETE FROM suggestion_blocks WHERE user_id = ?", (user_id,)
            )
        return removed > 0

    async def open_count_of(self, user_id: int) -> int:
        return int(
            await self.db.scalar(
                "SELECT count(*) FROM suggestions WHERE user_id = ? AND state = 'open'",
                (user_id,),
            )
        )

    async def notice_states(self, suggestion_id: int) -> list[NoticeState]:
        rows = await self.db.rows(
            "SELECT user_id, state, updated_at, error FROM suggestion_notices "
            "WHERE suggestion_id = ? ORDER BY user_id",
            (suggestion_id,),
        )
        return [
            NoticeState(int(r["user_id"]), r["state"], r["updated_at"], r["error"]) for r in rows
        ]

    # -- the public record ---------------------------------------------------------------

    async def record(self) -> tuple[int, int, int]:
        """How many suggestions were received, accepted and rejected (never who made them)."""
        rows = await self.db.rows("SELECT state, count(*) FROM suggestions GROUP BY state")
        by_state = {r[0]: int(r[1]) for r in rows}
        return sum(by_state.values()), by_state.get("accepted", 0), by_state.get("rejected", 0)

    # -- telling members the outcome -------------------------------------------------------

    async def deliver_notices(self, owns: Callable[[int], bool], send: NoticeSend) -> int:
        """DM each pending notice of the members this process owns: claimed before the send,
        recorded after; a DM that fails waits for the member's next command. Returns how
        many were sent by DM."""
        await self._release_stale()
        rows = await self.db.rows(
            f"{_NOTICES} WHERE n.state = 'pending' "
            "ORDER BY n.updated_at, n.suggestion_id, n.user_id"
        )
        sent = 0
        for notice in (_notice(r) for r in rows):
            if not owns(notice.user_id) or not await self._claim(notice):
                continue
            try:
                error = await send(notice)
            except Exception as failure:  # recorded, never lost: the next command tells it
                error = f"could not send the DM: {failure!r}"[:500]
            await self._finish(notice, "waiting" if error else "dm", error)
            sent += error is None
        return sent

    async def notices_to_tell(self, user_id: int) -> list[Notice]:
        """The member's outcomes whose DM failed, now marked shown after a command (once).
        Asked after every command, so it writes only when there is something to tell."""
        if not await self.db.scalar(
            "SELECT 1 FROM suggestion_notices WHERE user_id = ? AND state = 'waiting'",
            (user_id,),
        ):
            return []
        async with self.db.transaction() as tx:
            rows = await tx.rows(
                "UPDATE suggestion_notices SET state = 'command', updated_at = ? "
                "WHERE user_id = ? AND state = 'waiting' RETURNING suggestion_id",
                (_stamp(self._now()), user_id),
            )
        ids = sorted(int(r[0]) for r in rows)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        found = await self.db.rows(
            f"{_NOTICES} WHERE n.user_id = ? AND n.suggestion_id IN ({marks}) "
            "ORDER BY n.suggestion_id",
            (user_id, *ids),
        )
        return [_notice(r) for r in found]

    async def not_told(self, notices: Sequence[Notice], error: str) -> None:
        """Showing them after a command failed: they wait for the next command again."""
        async with self.db.transaction() as tx:
            await tx.executemany(
                "UPDATE suggestion_notices SET state = 'waiting', updated_at = ?, error = ? "
                "WHERE suggestion_id = ? AND user_id = ? AND state = 'command'",
                [(_stamp(self._now()), error, n.suggestion_id, n.user_id) for n in notices],
            )

    async def _claim(self, notice: Notice) -> bool:
        async with self.db.transaction() as tx:
            claimed = await tx.execute(
                "UPDATE suggestion_notices SET state = 'sending', updated_at = ? "
                "WHERE suggestion_id = ? AND user_id = ? AND state = 'pending'",
                (_stamp(self._now()), notice.suggestion_id, notice.user_id),
            )
        return claimed > 0

    async def _finish(self, notice: Notice, state: str, error: str | None) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE suggestion_notices SET state = ?, updated_at = ?, error = ? "
                "WHERE suggestion_id = ? AND user_id = ? AND state = 'sending'",
                (state, _stamp(self._now()), error, notice.suggestion_id, notice.user_id),
            )

    async def _release_stale(self) -> None:
        """DMs claimed by a process that died mid-send: sent again, once the DM channel
        has been searched for the first attempt (`Notice.interrupted`)."""
        cutoff = _stamp(self._now() - STALE_SENDING)
        if not await self.db.scalar(
            "SELECT 1 FROM suggestion_notices WHERE state = 'sending' AND updated_at < ?",
            (cutoff,),
        ):
            return
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE suggestion_notices SET state = 'pending', updated_at = ?, error = ? "
                "WHERE state = 'sending' AND updated_at < ?",
                (_stamp(self._now()), INTERRUPTED, cutoff),
            )


# -- what members and operators read -------------------------------------------------------


async def suggest(
    services: Services,
    suggestions: Suggestions,
    *,
    user_id: int,
    guild_id: int | None,
    pledge: str,
    status: str,
    evidence: str,
    note: str,
) -> list[Card]:
    """/pledge suggest's private answer."""
    await services.fresh()
    slug = services.pledges.resolve(pledge)
    done = await suggestions.suggest(user_id, guild_id, slug, status, evidence, note)
    services.changed()  # /about counts what was received
    return [submitted_card(done)]


def submitted_card(done: Submitted) -> Card:
    s = done.suggestion
    wanted = f"**{s.pledge_title}** is now {cards.status_label(s.status)}"
    if done.backed:
        title = f"Added to suggestion #{s.id}"
        text = (
            f"Another member already handed in this link for this pledge (#{s.id}, that "
            f"{wanted}): your backing and note were added to it, so operators see that "
            f"{1 + len(s.backers)} members point to it. It is not one of your open "
            f"suggestions. {TOLD_HOW}"
        )
    else:
        title = f"Suggestion #{s.id} received"
        text = (
            f"Thank you. You suggest that {wanted}. pledgebot's operators review each "
            "suggestion: they record the status (/pledge history marks it as from a member's "
            f"suggestion, without your name) or decline it with a reason. {TOLD_HOW}"
        )
    mine = s.backers[-1].note if done.backed else s.note
    fields = [Field("Your evidence", cards.shorten(s.evidence_url, cards.FIELD_VALUE_LIMIT))]
    if mine:
        fields.append(Field("Your note", _member_words(mine)))
    fields.append(
        Field(
            "Your limits",
            f"{done.open_count} of {OPEN_LIMIT} suggestions waiting for review · "
            f"{done.today_count} of {DAILY_LIMIT} handed in within 24 hours",
        )
    )
    return Card(title=title, description=text, fields=tuple(fields), footer=WHAT_IS_KEPT)


def review_card(suggestion: Suggestion, index: int, total: int, notice: str = "") -> Card:
    """One suggestion as operators review it: who suggested it is shown here only."""
    s = suggestion
    where = f"in server {s.guild_id}" if s.guild_id else "in a direct message"
    change = f"{cards.status_label(s.pledge_status)} → {cards.status_label(s.status)}"
    fields = [
        Field("Evidence", cards.shorten(s.evidence_url, cards.FIELD_VALUE_LIMIT)),
        Field("Note", _member_words(s.note) or "(no note)"),
        Field(
            "Suggested by",
            f"<@{s.user_id}> (user id {s.user_id}), {where}, {_when(s.created_at)}",
        ),
    ]
    if s.backers:
        lines = [
            f"<@{b.user_id}> suggests {cards.status_label(b.status)}"
            + (f": {_member_words(b.note, 150)}" if b.note else "")
            for b in s.backers
        ]
        backing = cards.shorten("\n".join(lines), cards.FIELD_VALUE_LIMIT)
        fields.append(Field(f"Also handed in by {len(s.backers)}", backing))
    fields.append(
        Field(
            "If you accept",
            "The status is recorded as your rating, with this evidence and the note, and "
            "/pledge history marks it as from a member's suggestion (never who). Reject asks "
            "for a reason; the member is told either way.",
        )
    )
    return Card(
        title=cards.shorten(f"Suggestion #{s.id}: {s.pledge_title}", cards.TITLE_LIMIT),
        description="\n\n".join(filter(None, [notice, change])),
        fields=tuple(fields),
        footer=f"{index + 1} of {total} waiting, oldest first · only operators see this",
    )


def outcome_card(notices: Sequence[Notice]) -> Card:
    """What a member hears of their suggestions' outcomes (a DM, or after a command)."""
    lines = [_outcome_line(n) for n in notices]
    if len(notices) == 1:
        n = notices[0]
        word = "accepted" if n.outcome == "accepted" else "not accepted"
        title = f"Your suggestion #{n.suggestion_id}: {word}"
    else:
        title = "What became of your suggestions"
    text = "\n\n".join(lines)
    return Card(
        title=title,
        description=cards.shorten(text, cards.DESCRIPTION_LIMIT),
        footer="Thank you for handing in evidence. Suggest more with /pledge suggest.",
    )


def _outcome_line(n: Notice) -> str:
    yours = "the suggestion you backed" if n.backed else "your suggestion"
    wanted = f"**{n.pledge_title}** is {cards.status_label(n.status)}"
    if n.outcome == "accepted":
        return (
            f"✅ Accepted: {yours} (#{n.suggestion_id}) that {wanted}. /pledge history shows "
            "the change as from a member's suggestion; your name is not shown."
        )
    reason = cards.shorten(n.reason or "none given", 600)
    return (
        f"❌ Not accepted: {yours} (#{n.suggestion_id}) that {wanted}. The operator's "
        f"reason: {reason}"
    )


def _member_words(text: str, limit: int = cards.FIELD_VALUE_LIMIT) -> str:
    """What a member wrote, shown literally (no formatting, no mentions)."""
    return cards.shorten(defused(cards.escape_markdown(" ".join(text.split()))), limit)


def _when(stamp: str) -> str:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    return f"<t:{int(moment.timestamp())}:f>"


def _check_can_back(existing: Suggestion, user_id: int) -> None:
    """UserError if the member cannot back `existing`: decided, or theirs already."""
    if existing.state != "open":
        when = (existing.decided_at or "")[:10]
        outcome = (
            f"accepted on {when}"
            if existing.state == "accepted"
            else f"rejected on {when} (the reason: {existing.reason})"
        )
        raise UserError(
            f"This link was already reviewed for this pledge: suggestion #{existing.id} was "
            f"{outcome}. {NOTHING_RECORDED} If there is newer evidence, suggest it with its "
            "own link."
        )
    if existing.user_id == user_id or any(b.user_id == user_id for b in existing.backers):
        raise UserError(
            f"You already handed in this link for this pledge (suggestion #{existing.id}); "
            f"it is waiting for review. {NOTHING_RECORDED}"
        )


def _check_daily(handed_in: Sequence[str], now: datetime) -> None:
    if len(handed_in) < DAILY_LIMIT:
        return
    frees_up = datetime.fromisoformat(sorted(handed_in)[len(handed_in) - DAILY_LIMIT]) + DAY
    raise UserError(
        f"You have handed in {len(handed_in)} suggestions within 24 hours, the most one "
        f"member can. You can suggest again <t:{int(frees_up.timestamp())}:R>. "
        f"{NOTHING_RECORDED}"
    )


def _stamp(moment: datetime) -> str:
    """Every stored time in one format, so the text compares as the instants do."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_SELECT = (
    "SELECT s.*, p.slug AS pledge_slug, p.title AS pledge_title, p.status AS pledge_status "
    "FROM suggestions s JOIN pledges p ON p.id = s.pledge_id"
)
_NOTICES = (
    "SELECT n.suggestion_id, n.user_id, s.user_id AS author_id, s.state, s.status, s.reason, "
    "n.error, p.title AS pledge_title FROM suggestion_notices n "
    "JOIN suggestions s ON s.id = n.suggestion_id JOIN pledges p ON p.id = s.pledge_id"
)


def _suggestion(r: Row, backers: dict[int, list[Backer]]) -> Suggestion:
    return Suggestion(
        id=int(r["id"]),
        pledge_slug=r["pledge_slug"],
        pledge_title=r["pledge_title"],
        pledge_status=r["pledge_status"],
        status=r["status"],
        evidence_url=r["evidence_url"],
        note=r["note"],
        user_id=int(r["user_id"]),
        guild_id=None if r["guild_id"] is None else int(r["guild_id"]),
        created_at=r["created_at"],
        state=r["state"],
        decided_at=r["decided_at"],
        decided_by=r["decided_by"],
        reason=r["reason"],
        history_id=None if r["history_id"] is None else int(r["history_id"]),
        backers=tuple(backers.get(int(r["id"]), ())),
    )


def _notice(r: Row) -> Notice:
    return Notice(
        suggestion_id=int(r["suggestion_id"]),
        user_id=int(r["user_id"]),
        pledge_title=r["pledge_title"],
        status=r["status"],
        outcome=r["state"],
        reason=r["reason"],
        backed=int(r["author_id"]) != int(r["user_id"]),
        interrupted=r["error"] == INTERRUPTED,
    )


async def _backers(db: Database | Transaction, ids: Sequence[int]) -> dict[int, list[Backer]]:
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    rows = await db.rows(
        "SELECT * FROM suggestion_backers WHERE suggestion_id IN "
        f"({marks}) ORDER BY created_at, user_id",
        tuple(ids),
    )
    found: dict[int, list[Backer]] = {}
    for r in rows:
        found.setdefault(int(r["suggestion_id"]), []).append(
            Backer(
                int(r["user_id"]),
                None if r["guild_id"] is None else int(r["guild_id"]),
                r["status"],
                r["note"],
                r["created_at"],
            )
        )
    return found


async def _read(tx: Transaction, suggestion_id: int) -> Suggestion | None:
    rows = await tx.rows(f"{_SELECT} WHERE s.id = ?", (suggestion_id,))
    if not rows:
        return None
    return _suggestion(rows[0], await _backers(tx, [suggestion_id]))


async def _open_one(tx: Transaction, suggestion_id: int) -> Suggestion:
    """The suggestion, if it still waits for a decision; UserError otherwise."""
    found = await _read(tx, suggestion_id) if valid_id(suggestion_id) else None
    if found is None:
        raise UserError(f"There is no suggestion #{suggestion_id}.")
    if found.state != "open":
        raise UserError(
            f"Suggestion #{found.id} was already {found.state} on {(found.decided_at or '')[:10]} "
            f"by {found.decided_by}; nothing changed."
        )
    return found


async def _open_ids(tx: Transaction, user_id: int) -> list[int]:
    rows = await tx.rows(
        "SELECT id FROM suggestions WHERE user_id = ? AND state = 'open' ORDER BY id", (user_id,)
    )
    return [int(r[0]) for r in rows]


async def _handed_in_since(tx: Transaction, user_id: int, since: str) -> list[str]:
    """When the member handed in each suggestion and backing after `since`."""
    rows = await tx.rows(
        "SELECT created_at FROM suggestions WHERE user_id = ? AND created_at > ? "
        "UNION ALL SELECT created_at FROM suggestion_backers WHERE user_id = ? AND created_at > ?",
        (user_id, since, user_id, since),
    )
    return [r[0] for r in rows]


async def _notices_for(tx: Transaction, suggestion: Suggestion, stamp: str) -> int:
    """One notice of the outcome for the member who suggested it and each who backed it."""
    members = [suggestion.user_id, *(b.user_id for b in suggestion.backers)]
    await tx.executemany(
        "INSERT INTO suggestion_notices(suggestion_id, user_id, state, updated_at) "
        "VALUES (?, ?, 'pending', ?) ON CONFLICT(suggestion_id, user_id) DO NOTHING",
        [(suggestion.id, member, stamp) for member in members],
    )
    return len(members)
