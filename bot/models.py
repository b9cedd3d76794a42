"""Plain records shared by the store, the content loader and the card renderers.

They carry no behaviour and import nothing from Discord, so every layer can use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

RecordKind = Literal["statement", "pledge", "power", "claim"]


@dataclass(frozen=True)
class Status:
    slug: str
    label: str
    emoji: str
    meaning: str


# The documented vocabulary. Order is the order shown to users.
STATUSES: tuple[Status, ...] = (
    Status("not-yet-rated", "Not yet rated", "⚪", "No assessment has been recorded yet."),
    Status("in-progress", "In progress", "🔵", "Work towards the pledge has visibly started."),
    Status("stalled", "Stalled", "🟠", "Work started but has not moved for a long time."),
    Status("partly-delivered", "Partly delivered", "🟡", "Some of what was pledged is done."),
    Status("delivered", "Delivered", "🟢", "What was pledged has been done."),
    Status("broken", "Broken", "🔴", "The pledge was dropped or reversed."),
    Status("unclear", "Unclear", "⚫", "The evidence does not settle it either way."),
)
STATUS_BY_SLUG: dict[str, Status] = {s.slug: s for s in STATUSES}
DEFAULT_STATUS = "not-yet-rated"


def status_of(slug: str) -> Status:
    """The status record for a slug; unknown slugs (older data) degrade to 'unclear'."""
    return STATUS_BY_SLUG.get(slug, STATUS_BY_SLUG["unclear"])


@dataclass(frozen=True)
class Statement:
    """Where the records come from, said no more precisely than we know it.

    `publisher`, `date` and `url` stay empty when the text does not give them (shown as
    "publisher not stated" and "undated", never invented);
    `edition` and `edited` say when the curated content last changed, which is not when
    a database loaded it; `source_sha256` pins the source text so anyone can check it.
    """

    slug: str
    title: str
    publisher: str
    date: str
    url: str
    summary: str
    source_text: str
    speaker: str = ""
    source_sha256: str = ""
    edition: int = 1
    edited: str = ""

    @property
    def author(self) -> str:
        """Who footers and briefings credit: the publisher, or that the text names none."""
        return self.publisher or "publisher not stated"


@dataclass(frozen=True)
class Pledge:
    slug: str
    statement_slug: str
    title: str
    summary: str
    detail: str
    scope: str
    quotes: tuple[str, ...]
    pledged_by: str = ""  # the party, as the statement words it
    condition: str = ""  # e.g. "in government", as the statement puts it
    partners: tuple[str, ...] = ()  # partners the statement names, never who "delivers"
    status: str = DEFAULT_STATUS
    status_changed_at: str | None = None
    # the latest status change: its note, evidence link and who recorded it
    status_note: str = ""
    status_evidence: str = ""
    status_changed_by: str = ""


@dataclass(frozen=True)
class Power:
    slug: str
    statement_slug: str
    name: str
    abbreviation: str
    summary: str
    detail: str
    who_applies: tuple[str, ...]
    routes: tuple[str, ...]
    restrictions: tuple[str, ...]
    history: str
    change_pledged: str
    pledges: tuple[str, ...]
    quotes: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """Something the statement asserts: always shown as the statement's, never as fact."""

    slug: str
    statement_slug: str
    title: str  # in words, e.g. "The statement says convictions ... have plummeted"
    summary: str
    quotes: tuple[str, ...]
    attribution: str = ""  # who makes the claim, as the text gives it


@dataclass(frozen=True)
class StatusChange:
    pledge_slug: str
    from_status: str
    to_status: str
    changed_at: str
    note: str
    evidence_url: str
    changed_by: str
    id: int = 0  # its place in the history: a bookmark that no clock can reorder
    suggestion_id: int | None = None  # the member's suggestion it came from, if any


@dataclass(frozen=True)
class SearchHit:
    kind: RecordKind
    slug: str
    title: str
    snippet: str
    rank: float
    statement_slug: str = ""


@dataclass(frozen=True)
class StatementContent:
    """One statement and every record curated from it: the unit loaded and exported."""

    statement: Statement
    source_path: str
    pledges: tuple[Pledge, ...] = field(default=())
    powers: tuple[Power, ...] = field(default=())
    claims: tuple[Claim, ...] = field(default=())


# Scheduled slots are stored as their UTC instant to the minute ("2026-12-03T09:00Z"), so
# keys order like instants whatever the schedule's zone was when each was posted.
SLOT_FORMAT = "%Y-%m-%dT%H:%MZ"


def utc_slot(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime(SLOT_FORMAT)


def utc_slot_instant(key: str) -> datetime:
    """The instant a stored slot names; ValueError for other keys (manual posts)."""
    return datetime.strptime(key, SLOT_FORMAT).replace(tzinfo=UTC)
