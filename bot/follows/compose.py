"""The words of an alert: events in, a message within Discord's limits and its buttons out.

Pure functions, like `bot.briefings.compose`. A status is a rating recorded by this bot's
operators with its evidence; a pledge's words are attributed to its statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.briefings.compose import Briefing, fit_message
from bot.follows.follows import FollowKind
from bot.pledges import cards
from bot.pledges.cards import Card, Field

# Discord allows 5 buttons a row; one row shows pledges, one stops alerts.
BUTTONS_PER_ROW = 5
SHOW_PREFIX = "follow:show:"
STOP_PREFIX = "follow:stop:"
RATED_BY_OPERATORS = (
    "Statuses are ratings recorded by this bot's operators, with evidence; "
    "pledges are quoted from their statement."
)


@dataclass(frozen=True)
class Event:
    """One change to a pledge, as the store recorded it (`pledge_events`)."""

    id: int
    kind: str  # "status", "added" or "summary"
    recorded_at: str
    pledge_slug: str
    pledge_title: str
    pledge_summary: str
    statement_slug: str
    statement_title: str
    from_status: str | None = None
    to_status: str | None = None
    changed_at: str | None = None
    note: str = ""
    evidence_url: str = ""
    changed_by: str = ""


@dataclass(frozen=True)
class StopButton:
    kind: FollowKind
    slug: str
    label: str


@dataclass(frozen=True)
class MemberAlert:
    """A DM: the message, the pledges it can show, and the follows it can stop."""

    message: Briefing
    show: tuple[tuple[str, str], ...]  # (pledge slug, button label)
    stop: tuple[StopButton, ...]


def show_id(pledge_slug: str) -> str:
    return f"{SHOW_PREFIX}{pledge_slug}"


def stop_id(kind: FollowKind, slug: str) -> str:
    return f"{STOP_PREFIX}{kind}:{slug}"


# A content edition's news of a pledge: (title, what the edition did).
EDITION_NEWS = {
    "added": ("New pledge", "adds this pledge."),
    "summary": ("Summary changed", "changes this pledge's summary. It now reads:"),
}


def event_card(event: Event) -> Card:
    footer = cards.shorten(
        f"From “{event.statement_title}”. {RATED_BY_OPERATORS}", cards.FOOTER_LIMIT
    )
    title = cards.shorten(event.pledge_title, cards.TITLE_LIMIT)
    if event.kind in EDITION_NEWS:
        heading, what = EDITION_NEWS[event.kind]
        return Card(
            title=cards.shorten(f"{heading}: {event.pledge_title}", cards.TITLE_LIMIT),
            description=cards.shorten(
                f"A new edition of “{event.statement_title}” {what}\n\n{event.pledge_summary}",
                1500,
            ),
            footer=footer,
        )
    fields = [
        Field(
            "Rated",
            f"{cards.discord_date(event.changed_at or event.recorded_at)} by "
            f"{cards.rater(event.changed_by)}",
            inline=True,
        )
    ]
    if event.note:
        fields.append(Field("Note", cards.shorten(event.note, 1000)))
    fields.append(Field("Evidence", event.evidence_url or "none recorded"))
    return Card(
        title=title,
        description=(
            f"Status: {cards.status_label(event.from_status or '')} → "
            f"**{cards.status_label(event.to_status or '')}**"
        ),
        fields=tuple(fields),
        footer=footer,
    )


def member_alert(events: Sequence[Event], stops: Sequence[StopButton]) -> MemberAlert:
    """One DM for every change the member had waiting, oldest first."""
    count = len(events)
    content = (
        "🔔 A pledge you follow changed."
        if count == 1
        else f"🔔 {count} changes to what you follow."
    )
    message = Briefing(
        content,
        fit_message([event_card(e) for e in events], "Use /pledge history for the rest"),
    )
    shown: dict[str, str] = {}
    for event in events:
        shown.setdefault(event.pledge_slug, event.pledge_title)
    show = tuple(
        (slug, "Show pledge" if len(shown) == 1 else cards.shorten(f"Show: {title}", 80))
        for slug, title in list(shown.items())[:BUTTONS_PER_ROW]
    )
    stop = tuple(stops[:BUTTONS_PER_ROW])
    if len(stop) == 1:
        stop = (StopButton(stop[0].kind, stop[0].slug, "Stop alerts for this"),)
    return MemberAlert(message, show, stop)


def server_alert(event: Event, role_id: int | None) -> Briefing:
    """A status change posted into a server's alert channel; the chosen role the only ping."""
    ping = f"<@&{role_id}> " if role_id else ""
    return Briefing(
        f"{ping}🔔 **Pledge status change**",
        fit_message([event_card(event)], "Use /pledge history for the rest"),
    )
