"""Platform-neutral replies and Discord's size limits.

Every reply the bot shows is built here as a `Card` (a title, text, fields, footer), so
the wording and the limits are tested without Discord. `paginate` splits long content
into cards that each fit an embed, at paragraph or sentence boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bot.models import STATUSES, Claim, Pledge, Power, SearchHit, Statement, StatusChange
from bot.models import status_of as status_record

# Discord's documented limits for one embed and one message.
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_COUNT_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
CONTENT_LIMIT = 2000
AUTOCOMPLETE_CHOICES = 25
CHOICE_NAME_LIMIT = 100

# Our own, tighter budget for one page, so pages stay readable on a phone.
PAGE_BUDGET = 3500
PAGE_FIELDS = 10
PLEDGES_PER_PAGE = 6

COLOUR = 0x2B6CB0
ATTRIBUTION = "Summaries are pledgebot's own words; quotes are verbatim from the statement."


@dataclass(frozen=True)
class Field:
    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True)
class Card:
    title: str
    description: str = ""
    fields: tuple[Field, ...] = ()
    footer: str = ""
    url: str = ""
    colour: int = COLOUR

    def size(self) -> int:
        """Characters as Discord counts them towards the 6000 total."""
        return (
            len(self.title)
            + len(self.description)
            + len(self.footer)
            + sum(len(f.name) + len(f.value) for f in self.fields)
        )

    def within_limits(self) -> bool:
        return (
            0 < len(self.title) <= TITLE_LIMIT
            and len(self.description) <= DESCRIPTION_LIMIT
            and len(self.fields) <= FIELD_COUNT_LIMIT
            and all(
                0 < len(f.name.strip()) <= FIELD_NAME_LIMIT
                and 0 < len(f.value.strip()) <= FIELD_VALUE_LIMIT
                for f in self.fields
            )
            and len(self.footer) <= FOOTER_LIMIT
            and self.size() <= EMBED_TOTAL_LIMIT
        )


_MARKDOWN = re.compile(r"([\\*_~`|>#\[\]()<:-])")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def escape_markdown(text: str) -> str:
    """Show user text literally: no formatting, links or headings sneak in."""
    return _MARKDOWN.sub(r"\\\1", text)


def shorten(text: str, limit: int) -> str:
    """Fit `text` in `limit` characters, ending at a word with an ellipsis if cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:\n") + "…"


def split_text(text: str, limit: int) -> list[str]:
    """Split into chunks of at most `limit` characters.

    Paragraphs first, then sentences; only a single sentence longer than the limit is
    broken, at a word where it can be.
    """
    chunks: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        pieces = [paragraph] if len(paragraph) <= limit else _sentences(paragraph, limit)
        for piece in pieces:
            joiner = "\n\n" if current and piece is pieces[0] else " "
            if current and len(current) + len(joiner) + len(piece) <= limit:
                current += joiner + piece
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks or [""]


def _sentences(paragraph: str, limit: int) -> list[str]:
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", limit // 2, limit)
            cut = cut if cut > 0 else limit
            out.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if sentence:
            out.append(sentence)
    return out


def long_field(name: str, text: str) -> list[Field]:
    """One logical field, split into as many embed fields as its text needs."""
    parts = split_text(text, FIELD_VALUE_LIMIT)
    name = shorten(name, FIELD_NAME_LIMIT - len(" (cont.)")) or "—"  # Discord needs a name
    return [
        Field(name if i == 0 else f"{name} (cont.)", part or "—") for i, part in enumerate(parts)
    ]


def paginate(card: Card) -> list[Card]:
    """Split a card whose description or fields exceed one page into several pages.

    A page holds at most PAGE_BUDGET characters, but never fewer than one field, so
    every page is within Discord's limits whatever the content.
    """
    suffix = " (99/99)"
    title = shorten(card.title, TITLE_LIMIT - len(suffix)) or "pledgebot"
    blank = replace(
        card, title=title, footer=shorten(card.footer, FOOTER_LIMIT), description="", fields=()
    )
    limit = PAGE_BUDGET - len(suffix)
    description_limit = min(DESCRIPTION_LIMIT, max(500, limit - blank.size()))
    descriptions = split_text(card.description, description_limit)
    pages = [replace(blank, description=d) for d in descriptions if d] or [blank]
    for part in (part for f in card.fields for part in long_field(f.name, f.value)):
        page = pages[-1]
        full = (
            len(page.fields) >= PAGE_FIELDS
            or page.size() + len(part.name) + len(part.value) > limit
        )
        if full and page != blank:
            page = blank
            pages.append(page)
        pages[-1] = replace(page, fields=(*page.fields, part))
    if len(pages) > 1:
        pages = [replace(p, title=f"{title} ({i}/{len(pages)})") for i, p in enumerate(pages, 1)]
    return pages


def quote_block(quotes: Iterable[str]) -> str:
    return "\n".join(f"> “{q}”" for q in quotes)


def source_footer(statement: Statement) -> str:
    return f"Source: {statement.title} ({statement.author}). {ATTRIBUTION}"


def status_label(slug: str) -> str:
    status = status_record(slug)
    return f"{status.emoji} {status.label}"


# -- renderers ---------------------------------------------------------------------


def pledge_card(pledge: Pledge, statement: Statement) -> Card:
    status = status_label(pledge.status)
    if pledge.status_changed_at:
        status += f" — since {discord_date(pledge.status_changed_at)}: {pledge.status_note}"
    fields = [
        Field("Status", status),
        Field("Scope", pledge.scope, inline=True),
        Field("Who delivers it", ", ".join(pledge.actors) or "Not named in the statement", True),
        Field("In detail", pledge.detail),
        Field("What the statement says", quote_block(pledge.quotes)),
    ]
    return Card(
        title=pledge.title,
        description=pledge.summary,
        fields=tuple(fields),
        footer=source_footer(statement) + f" · /pledge show {pledge.slug}",
    )


def pledge_list_pages(pledges: Sequence[Pledge], heading: str) -> list[Card]:
    if not pledges:
        return [Card(title=heading, description="No pledges match.")]
    pages = []
    chunks = [pledges[i : i + PLEDGES_PER_PAGE] for i in range(0, len(pledges), PLEDGES_PER_PAGE)]
    for number, chunk in enumerate(chunks, 1):
        fields = tuple(
            Field(
                shorten(f"{status_record(p.status).emoji} {p.title}", FIELD_NAME_LIMIT),
                shorten(f"{p.summary}\n`{p.slug}`", FIELD_VALUE_LIMIT),
            )
            for p in chunk
        )
        suffix = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
        pages.append(
            Card(
                title=shorten(heading, TITLE_LIMIT - len(suffix)) + suffix,
                fields=fields,
                footer=f"{len(pledges)} pledges · /pledge show <pledge> for one in full",
            )
        )
    return pages


def search_card(query: str, hits: Sequence[SearchHit]) -> Card:
    shown = escape_markdown(shorten(query, 100))
    if not hits:
        return Card(
            title="No matches",
            description=f"Nothing matched “{shown}”. Try fewer or different words.",
        )
    kinds = {"pledge": "Pledge", "power": "Power", "claim": "Claim"}
    fields = tuple(
        Field(
            shorten(f"{kinds[h.kind]}: {h.title or h.slug}", FIELD_NAME_LIMIT),
            shorten(f"{h.snippet}\n`{h.slug}`", FIELD_VALUE_LIMIT),
        )
        for h in hits
    )
    return Card(
        title=f"Search: {shown}",
        fields=fields,
        footer="Ranked by relevance. Claims are what the statement says, not established fact.",
    )


def history_card(pledge: Pledge, changes: Sequence[StatusChange]) -> Card:
    if not changes:
        description = f"No status changes recorded. Current status: {status_label(pledge.status)}."
        return Card(title=f"History: {pledge.title}", description=description)
    fields = tuple(
        Field(
            f"{discord_date(c.changed_at)}: {status_label(c.from_status)} → "
            f"{status_label(c.to_status)}",
            shorten(
                c.note + (f"\nEvidence: {c.evidence_url}" if c.evidence_url else ""),
                FIELD_VALUE_LIMIT,
            ),
        )
        for c in changes
    )
    return Card(
        title=f"History: {pledge.title}", fields=fields, footer=f"/pledge show {pledge.slug}"
    )


def power_card(power: Power, statement: Statement, related: Sequence[Pledge]) -> Card:
    name = f"{power.name} ({power.abbreviation})" if power.abbreviation else power.name
    fields = [
        Field("Who can apply", bullet(power.who_applies)),
        Field("Routes", bullet(power.routes)),
        Field("Restrictions it can impose", bullet(power.restrictions)),
        Field("History", power.history),
        Field("The change pledged", power.change_pledged),
        Field("In detail", power.detail),
    ]
    if related:
        fields.append(Field("Related pledges", bullet(f"{p.title} (`{p.slug}`)" for p in related)))
    fields.append(Field("What the statement says", quote_block(power.quotes)))
    return Card(
        title=name,
        description=power.summary,
        fields=tuple(fields),
        footer=source_footer(statement) + f" · /power show {power.slug}",
    )


def power_list_card(powers: Sequence[Power]) -> Card:
    if not powers:
        return Card(title="Legal powers", description="No powers are loaded.")
    fields = tuple(
        Field(
            shorten(f"{p.name} ({p.abbreviation})" if p.abbreviation else p.name, FIELD_NAME_LIMIT),
            shorten(f"{p.summary}\n`{p.slug}`", FIELD_VALUE_LIMIT),
        )
        for p in powers
    )
    return Card(title="Legal powers", fields=fields, footer="/power show <power> for one in full")


def about_card(
    statements: Sequence[Statement], claims: Sequence[Claim], updated_at: str | None
) -> Card:
    carried = bullet(
        f"**{s.title}** ({s.author}{', ' + s.date if s.date else ''})" for s in statements
    )
    vocabulary = "\n".join(f"{s.emoji} **{s.label}**: {s.meaning}" for s in STATUSES)
    fields = [
        Field("Statements carried", carried or "None loaded yet."),
        Field(
            "How summaries are written",
            "Summaries and details are written by pledgebot's editors in their own words and "
            "say nothing the statement does not. Every record carries verbatim quotes so you "
            "can check us. Factual claims are shown as what the statement says, never as "
            "established fact.",
        ),
        Field("Status vocabulary", vocabulary),
    ]
    if claims:
        fields.append(Field("Claims the statements make", str(len(claims)), inline=True))
    if updated_at:
        fields.append(Field("Content last updated", discord_date(updated_at), inline=True))
    return Card(
        title="About pledgebot",
        description=(
            "pledgebot briefs this community on political pledges and the legal powers "
            "behind them. Try /pledge list, /pledge search, /power list."
        ),
        fields=tuple(fields),
    )


def bullet(items: Iterable[str]) -> str:
    return "\n".join(f"• {item}" for item in items)


def discord_date(iso: str) -> str:
    """An ISO timestamp as a Discord timestamp each reader sees in their own zone."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"<t:{int(moment.timestamp())}:D>"
