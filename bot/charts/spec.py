"""What a chart shows, as plain data: built from pledges and their status changes.

A `ChartSpec` is everything the drawing needs (labels, colours, counts, steps) and its alt
text, written from the same data, so the picture and the words never disagree. It goes to
the drawing process as JSON, and its digest names the picture: the same data is the same
picture, so it is drawn once however many answers and briefings show it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from bot.models import STATUSES, StatusChange, status_of

ChartKind = Literal["status-bars", "status-timeline"]

# Discord's limit for an attachment's description (the alt text screen readers read).
ALT_TEXT_LIMIT = 1024
# A statement or pledge title in a chart's title and alt text; longer ones are cut.
SUBJECT_LIMIT = 200
# The newest changes a timeline draws; older ones are counted in its alt text.
TIMELINE_STEPS = 16

BARS_FILENAME = "pledges-by-status.png"
TIMELINE_FILENAME = "status-timeline.png"

# One colour per status, in the spirit of its emoji in cards (⚪🔵🟠🟡🟢🔴⚫), dark enough
# to read on white.
STATUS_COLOURS = {
    "not-yet-rated": "#9ca3af",
    "in-progress": "#2563eb",
    "stalled": "#ea580c",
    "partly-delivered": "#ca8a04",
    "delivered": "#16a34a",
    "broken": "#dc2626",
    "unclear": "#374151",
}


@dataclass(frozen=True)
class Level:
    """One status as the chart shows it: a bar (with its count) or a timeline's row."""

    label: str
    colour: str
    count: int = 0


@dataclass(frozen=True)
class Step:
    """A timeline's point: the status from then on (`level`, an index into the levels),
    and the date it was recorded (empty for the status before the first change shown)."""

    level: int
    when: str


@dataclass(frozen=True)
class ChartSpec:
    kind: ChartKind
    title: str
    alt_text: str
    filename: str
    levels: tuple[Level, ...]
    steps: tuple[Step, ...] = ()

    def to_json(self) -> bytes:
        """The drawing process's input; canonical, so equal charts give equal bytes."""
        return json.dumps(
            asdict(self), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ChartSpec:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            kind=raw["kind"],
            title=str(raw["title"]),
            alt_text=str(raw["alt_text"]),
            filename=str(raw["filename"]),
            levels=tuple(Level(**level) for level in raw["levels"]),
            steps=tuple(Step(**step) for step in raw["steps"]),
        )

    @cached_property
    def key(self) -> str:
        """Names the picture: the same content and statuses give the same key."""
        return hashlib.sha256(self.to_json()).hexdigest()


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _levels(counts: Counter[str] | None = None) -> tuple[Level, ...]:
    counts = counts or Counter()
    return tuple(Level(s.label, STATUS_COLOURS[s.slug], counts[s.slug]) for s in STATUSES)


def status_bars(subject: str, statuses: Sequence[str]) -> ChartSpec | None:
    """A statement's pledges counted by status (`statuses`: one status slug a pledge);
    None when there are no pledges to count."""
    if not statuses:
        return None
    subject = _clip(subject, SUBJECT_LIMIT)
    counts = Counter(status_of(slug).slug for slug in statuses)
    levels = _levels(counts)
    counted = ", ".join(f"{level.count} {level.label}" for level in levels if level.count)
    total = len(statuses)
    alt = f"Pledges in {subject} by status: {counted} ({total} pledge{'s' * (total != 1)})."
    return ChartSpec(
        kind="status-bars",
        title=f"Pledges by status: {subject}",
        alt_text=_clip(alt, ALT_TEXT_LIMIT),
        filename=BARS_FILENAME,
        levels=levels,
    )


def day(iso: str) -> str:
    """A recorded time as the day a reader sees ("3 Dec 2026"); the text itself if odd."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso[:10]
    return f"{moment.day} {moment:%b %Y}"


def status_timeline(pledge_title: str, changes: Sequence[StatusChange]) -> ChartSpec | None:
    """A pledge's status over its recorded changes (oldest first); None for fewer than two,
    which a card says in words as well as a picture would."""
    if len(changes) < 2:
        return None
    index = {s.slug: i for i, s in enumerate(STATUSES)}
    shown = changes[-TIMELINE_STEPS:]
    steps = (
        Step(index[status_of(shown[0].from_status).slug], ""),
        *(Step(index[status_of(c.to_status).slug], day(c.changed_at)) for c in shown),
    )
    levels = _levels()
    subject = _clip(pledge_title, SUBJECT_LIMIT)
    path = "; ".join(
        levels[step.level].label + (f" from {step.when}" if step.when else "") for step in steps
    )
    earlier = len(changes) - len(shown)
    older = f" ({earlier} earlier change{'s' * (earlier != 1)} not shown)" if earlier else ""
    alt = f"Status timeline of {subject}, {len(changes)} changes{older}: {path}."
    return ChartSpec(
        kind="status-timeline",
        title=f"Status timeline: {subject}",
        alt_text=_clip(alt, ALT_TEXT_LIMIT),
        filename=TIMELINE_FILENAME,
        levels=levels,
        steps=steps,
    )
