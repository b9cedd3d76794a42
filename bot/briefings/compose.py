"""Composing a briefing: store rows and the time in, a message within Discord's limits out.

Pure functions: the composer (`bot.briefings.composer`) fetches the rows, these decide the words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bot.charts.spec import ChartSpec, status_bars
from bot.models import STATUSES, Pledge, Power, Statement, StatusChange, status_of
from bot.pledges import cards
from bot.pledges.cards import Card, Field

EMBEDS_PER_MESSAGE = 10
DIGEST_PLEDGES_PER_CARD = 12
CONTENT_KINDS = ("digest", "spotlight", "changes")
# Kept free in every message for the delivery marker the sender adds to the last footer
# (" · Briefing #id · slot"): without it a full message goes over Discord's 6,000.
MARKER_ROOM = 80
MESSAGE_BUDGET = cards.EMBED_TOTAL_LIMIT - MARKER_ROOM


@dataclass(frozen=True)
class Briefing:
    """What one post says. `None` from a composer means: nothing to post this time."""

    content: str
    cards: tuple[Card, ...]
    next_cursor: int | None = None


def heading(role_id: int | None, label: str, when: datetime) -> str:
    """The text line above the embeds; the role mention is the only ping a post carries."""
    ping = f"<@&{role_id}> " if role_id else ""
    return f"{ping}📰 **{label}** — <t:{int(when.timestamp())}:f>"


def at_a_glance(pledges: Sequence[Pledge]) -> str:
    counts = Counter(p.status for p in pledges)
    return " · ".join(f"{s.emoji} {s.label}: {counts[s.slug]}" for s in STATUSES if counts[s.slug])


def fit_message(found: Sequence[Card], overflow_note: str) -> tuple[Card, ...]:
    """Keep whole cards while the message stays within 10 embeds and 6000 characters,
    the delivery marker's room included."""
    kept: list[Card] = []
    total = 0
    for index, card in enumerate(found):
        room_for_note = index < len(found) - 1
        reserve = len(overflow_note) + 40 if room_for_note else 0
        if len(kept) == EMBEDS_PER_MESSAGE - (1 if room_for_note else 0) or (
            total + card.size() + reserve > MESSAGE_BUDGET
        ):
            remaining = len(found) - index
            kept.append(Card(title="More", description=f"{overflow_note} ({remaining} more)"))
            break
        kept.append(card)
        total += card.size()
    return tuple(kept)


def credit(statements: Sequence[Statement]) -> str:
    names = "; ".join(f"{s.title} ({s.author})" for s in statements)
    return cards.shorten(f"Source: {names}. {cards.ATTRIBUTION}", cards.FOOTER_LIMIT)


def digest(
    pledges: Sequence[Pledge], statements: Sequence[Statement], when: datetime, role_id: int | None
) -> Briefing:
    if not pledges:
        body = (Card(title="Pledge digest", description="No pledges are loaded yet."),)
        return Briefing(heading(role_id, "Pledge digest", when), body)
    chunks = [
        pledges[i : i + DIGEST_PLEDGES_PER_CARD]
        for i in range(0, len(pledges), DIGEST_PLEDGES_PER_CARD)
    ]
    found = []
    for number, chunk in enumerate(chunks, 1):
        lines = "\n".join(
            f"{status_of(p.status).emoji} **{cards.shorten(p.title, 120)}** — "
            f"{status_of(p.status).label} (`{p.slug}`)"
            for p in chunk
        )
        glance = (Field("At a glance", at_a_glance(pledges)),) if number == 1 else ()
        found.append(
            Card(
                title="Pledge digest" + (f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""),
                description=lines,
                fields=glance,
                footer=credit(statements),
            )
        )
    found[0] = replace(found[0], chart=digest_chart(pledges, statements))
    return Briefing(
        heading(role_id, "Pledge digest", when),
        fit_message(found, "Use /pledge list for the full list"),
    )


def digest_chart(pledges: Sequence[Pledge], statements: Sequence[Statement]) -> ChartSpec | None:
    """The picture of what a digest's first card counts "at a glance" (None: no pledges):
    the same for every slot until content or a status changes, so it can be drawn ahead."""
    subject = statements[0].title if len(statements) == 1 else "all statements carried"
    return status_bars(subject, [p.status for p in pledges])


def spotlight(
    records: Sequence[Pledge | Power],
    statements: dict[str, Statement],
    cursor: int,
    when: datetime,
    role_id: int | None,
) -> Briefing:
    """One pledge or power per briefing, in turn; the cursor survives restarts."""
    if not records:
        body = (Card(title="Spotlight", description="Nothing to spotlight yet."),)
        return Briefing(heading(role_id, "Spotlight", when), body, cursor)
    record = records[cursor % len(records)]
    return Briefing(
        heading(role_id, "Spotlight", when),
        fit_message(record_cards(record, statements), "Use /pledge show for the rest"),
        (cursor + 1) % len(records),
    )


def record_cards(
    record: Pledge | Power, statements: dict[str, Statement], related: Sequence[Pledge] = ()
) -> list[Card]:
    statement = statements[record.statement_slug]
    if isinstance(record, Pledge):
        return cards.paginate(cards.pledge_card(record, statement))
    return cards.paginate(cards.power_card(record, statement, related))


def single(
    record: Pledge | Power,
    statements: dict[str, Statement],
    when: datetime,
    role_id: int | None,
    related: Sequence[Pledge] = (),
) -> Briefing:
    label = "Pledge briefing" if isinstance(record, Pledge) else "Power briefing"
    return Briefing(
        heading(role_id, label, when),
        fit_message(record_cards(record, statements, related), "Use /pledge show for the rest"),
    )


def changes(
    changed: Sequence[StatusChange],
    titles: dict[str, str],
    since: str | None,
    when: datetime,
    role_id: int | None,
) -> Briefing | None:
    """Status changes since the previous briefing; None (nothing posted) when none."""
    if not changed:
        return None
    fields = tuple(
        Field(
            cards.shorten(titles.get(c.pledge_slug, c.pledge_slug), 200),
            cards.shorten(
                f"{cards.status_label(c.from_status)} → {cards.status_label(c.to_status)} "
                f"({cards.discord_date(c.changed_at)})\n{c.note}",
                cards.FIELD_VALUE_LIMIT,
            ),
        )
        for c in changed
    )
    since_text = f" since {cards.discord_date(since)}" if since else ""
    found = cards.paginate(
        Card(title=f"Status changes{since_text}", fields=fields, footer=cards.ATTRIBUTION)
    )
    return Briefing(
        heading(role_id, "Pledge status changes", when),
        fit_message(found, "Use /pledge history for the rest"),
    )
