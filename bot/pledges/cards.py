"""Platform-neutral replies and Discord's size limits.

Every reply the bot shows is built here as a `Card` (a title, text, fields, footer), so
the wording and the limits are tested without Discord. `paginate` splits long content
into cards that each fit an embed, at paragraph or sentence boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bot.charts.spec import ChartSpec
from bot.models import (
    DEFAULT_STATUS,
    STATUSES,
    Claim,
    Pledge,
    Power,
    SearchHit,
    Statement,
    StatusChange,
)
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
NOT_FACT = "Claims are what the statement says, not established fact."
UNDATED = "undated"


@dataclass(frozen=True)
class Field:
    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True)
class Picture:
    """An image sent with a card as an attachment; the card's embed shows it by filename."""

    filename: str
    data: bytes
    alt_text: str


@dataclass(frozen=True)
class Card:
    title: str
    description: str = ""
    fields: tuple[Field, ...] = ()
    footer: str = ""
    url: str = ""
    colour: int = COLOUR
    # What to draw (cached answers keep this), then the drawn picture (`draw_charts`).
    chart: ChartSpec | None = None
    picture: Picture | None = None

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
        card,
        title=title,
        footer=shorten(card.footer, FOOTER_LIMIT),
        description="",
        fields=(),
        chart=None,  # a chart or picture stays with the first page only
        picture=None,
    )
    limit = PAGE_BUDGET - len(suffix)
    base = blank.size()
    description_limit = min(DESCRIPTION_LIMIT, max(500, limit - base))
    # Each page as [description, fields, size]; Cards are built once at the end.
    pages: list[tuple[str, list[Field], list[int]]] = [
        (d, [], [base + len(d)]) for d in split_text(card.description, description_limit) if d
    ] or [("", [], [base])]
    for part in (part for f in card.fields for part in long_field(f.name, f.value)):
        description, fields, size = pages[-1]
        part_size = len(part.name) + len(part.value)
        full = len(fields) >= PAGE_FIELDS or size[0] + part_size > limit
        if full and (description or fields):
            pages.append(("", [], [base]))
            description, fields, size = pages[-1]
        fields.append(part)
        size[0] += part_size
    numbered = len(pages) > 1
    return [
        replace(
            blank,
            title=f"{title} ({i}/{len(pages)})" if numbered else title,
            description=description,
            fields=tuple(fields),
            chart=card.chart if i == 1 else None,
            picture=card.picture if i == 1 else None,
        )
        for i, (description, fields, _) in enumerate(pages, 1)
    ]


def with_chart(pages: Sequence[Card], chart: ChartSpec | None) -> list[Card]:
    """The chart goes on the first page only; paging away leaves it behind."""
    if chart is None or not pages:
        return list(pages)
    return [replace(pages[0], chart=chart), *pages[1:]]


async def draw_charts(
    found: Sequence[Card], draw: Callable[[ChartSpec], Awaitable[bytes | None]]
) -> list[Card]:
    """Each card's chart drawn into its picture. A chart that cannot be drawn (`draw` gives
    None, having logged why) is left out: the card goes without it, never with an error."""
    drawn = list(found)
    for index, card in enumerate(drawn):
        if card.chart is not None and card.picture is None:
            data = await draw(card.chart)
            if data is not None:
                picture = Picture(card.chart.filename, data, card.chart.alt_text)
                drawn[index] = replace(card, picture=picture)
    return drawn


def quote_block(quotes: Iterable[str]) -> str:
    return "\n".join(f"> “{q}”" for q in quotes)


def source_line(statement: Statement) -> str:
    """The statement as a reader would cite it: title, publisher, date or "undated"."""
    return f"{statement.title} ({statement.author}, {statement.date or UNDATED})"


def source_footer(statement: Statement) -> str:
    return f"Source: {source_line(statement)}. {ATTRIBUTION}"


def sources_footer(statements: Iterable[Statement], tail: str) -> str:
    """One footer naming every statement a card draws on, then `tail`."""
    lines = "; ".join(dict.fromkeys(source_line(s) for s in statements))
    prefix = f"Source: {lines}. " if lines else ""
    return shorten(f"{prefix}{tail}", FOOTER_LIMIT)


def status_label(slug: str) -> str:
    status = status_record(slug)
    return f"{status.emoji} {status.label}"


def rater(changed_by: str) -> str:
    """Who recorded a rating: a Discord user as a mention (embeds never ping), else the name."""
    kind, _, name = changed_by.partition(":")
    if kind == "discord" and name.isdigit():
        return f"<@{name}>"
    if kind == "operator" and name:
        return f"{escape_markdown(name)} (operator)"
    return escape_markdown(changed_by) or "an operator"


def rating_text(pledge: Pledge) -> str:
    """The status, and for a rating: when, by whom, why and on what evidence."""
    text = status_label(pledge.status)
    if not pledge.status_changed_at:
        return text + " (no rating recorded yet)"
    by = rater(pledge.status_changed_by)
    text += f"\nRated {discord_date(pledge.status_changed_at)} by {by}"
    if pledge.status_note:
        text += f"\nNote: {pledge.status_note}"
    if pledge.status_evidence:
        text += f"\nEvidence: {pledge.status_evidence}"
    elif pledge.status != DEFAULT_STATUS:
        text += "\nEvidence: none recorded (rated before evidence was required)"
    return shorten(text, FIELD_VALUE_LIMIT)


def open_command(kind: str, slug: str) -> str:
    """The command that opens a record in full, as a member would type it."""
    return f"/{kind} show {kind}:{slug}"


# -- renderers ---------------------------------------------------------------------


def pledge_card(pledge: Pledge, statement: Statement, powers: Sequence[Power] = ()) -> Card:
    """`powers`: those whose content links this pledge, opened from here as from there."""
    fields = [
        Field("Status", rating_text(pledge)),
        Field("Pledged by", pledge.pledged_by or "Not recorded", inline=True),
    ]
    if pledge.condition:
        fields.append(Field("Condition", pledge.condition, inline=True))
    if pledge.partners:
        fields.append(Field("Partners named", ", ".join(pledge.partners), inline=True))
    fields += [
        Field("Scope", pledge.scope, inline=True),
        Field("In detail", pledge.detail),
        Field("What the statement says", quote_block(pledge.quotes)),
    ]
    if powers:
        fields.append(
            Field(
                "Legal power" if len(powers) == 1 else "Legal powers",
                bullet(f"{power_name(p)}: {open_command('power', p.slug)}" for p in powers),
            )
        )
    return Card(
        title=pledge.title,
        description=pledge.summary,
        fields=tuple(fields),
        footer=source_footer(statement) + f" · {open_command('pledge', pledge.slug)}",
        url=statement.url,
    )


def pledged_by(pledges: Iterable[Pledge]) -> str:
    """Whose pledges these are, from the content (never assumed)."""
    return ", ".join(dict.fromkeys(p.pledged_by for p in pledges if p.pledged_by))


def list_heading(statement: Statement, pledges: Sequence[Pledge]) -> str:
    party = pledged_by(pledges)
    return f"Pledges by {party}: {statement.title}" if party else f"Pledges: {statement.title}"


def pledge_list_pages(
    groups: Sequence[tuple[Statement, Sequence[Pledge]]], filter_label: str = ""
) -> list[Card]:
    """Pages of pledges, statement by statement; each heading names the statement and
    party, and each footer its source."""
    suffix_label = f" — {filter_label}" if filter_label else ""
    drafts: list[Card] = []
    for statement, pledges in groups:
        heading = list_heading(statement, pledges) + suffix_label
        footer = sources_footer(
            [statement], f"{len(pledges)} pledges · /pledge show <pledge> for one in full"
        )
        if not pledges:
            drafts.append(Card(title=heading, description="No pledges match.", footer=footer))
        chunks = [
            pledges[i : i + PLEDGES_PER_PAGE] for i in range(0, len(pledges), PLEDGES_PER_PAGE)
        ]
        for chunk in chunks:
            fields = tuple(
                Field(
                    shorten(f"{status_record(p.status).emoji} {p.title}", FIELD_NAME_LIMIT),
                    shorten(f"{p.summary}\n`{p.slug}`", FIELD_VALUE_LIMIT),
                )
                for p in chunk
            )
            drafts.append(Card(title=heading, fields=fields, footer=footer))
    if not drafts:
        return [Card(title="Pledges" + suffix_label, description="No pledges match.")]
    if len(drafts) == 1:
        return [replace(drafts[0], title=shorten(drafts[0].title, TITLE_LIMIT))]
    return [
        replace(page, title=shorten(page.title, TITLE_LIMIT - len(counter)) + counter)
        for number, page in enumerate(drafts, 1)
        for counter in [f" ({number}/{len(drafts)})"]
    ]


KIND_LABELS = {"pledge": "Pledge", "power": "Power", "claim": "Claim"}


def search_card(
    query: str, hits: Sequence[SearchHit], statements: Mapping[str, Statement] | None = None
) -> Card:
    shown = escape_markdown(shorten(query, 100))
    if not hits:
        return Card(
            title="No matches",
            description=f"Nothing matched “{shown}”. Try fewer or different words.",
        )
    fields = tuple(
        Field(
            shorten(f"{KIND_LABELS[h.kind]}: {h.title or h.slug}", FIELD_NAME_LIMIT),
            shorten(f"{h.snippet}\nOpen it: `{open_command(h.kind, h.slug)}`", FIELD_VALUE_LIMIT),
        )
        for h in hits
    )
    known = statements or {}
    sources = [known[h.statement_slug] for h in hits if h.statement_slug in known]
    return Card(
        title=f"Search: {shown}",
        fields=fields,
        footer=sources_footer(sources, f"Ranked by relevance. {NOT_FACT}"),
    )


def history_card(pledge: Pledge, changes: Sequence[StatusChange], statement: Statement) -> Card:
    footer = sources_footer([statement], open_command("pledge", pledge.slug))
    if not changes:
        description = f"No status changes recorded. Current status: {status_label(pledge.status)}."
        return Card(title=f"History: {pledge.title}", description=description, footer=footer)
    fields = tuple(
        Field(
            f"{discord_date(c.changed_at)}: {status_label(c.from_status)} → "
            f"{status_label(c.to_status)}",
            shorten(
                f"Rated by {rater(c.changed_by)}"
                + (f" · {from_suggestion(c.suggestion_id)}" if c.suggestion_id else "")
                + f"\n{c.note}"
                + (f"\nEvidence: {c.evidence_url}" if c.evidence_url else ""),
                FIELD_VALUE_LIMIT,
            ),
        )
        for c in changes
    )
    return Card(title=f"History: {pledge.title}", fields=fields, footer=footer)


def from_suggestion(suggestion_id: int) -> str:
    """A change's origin as the public record gives it: the suggestion, never who made it."""
    return f"from a member's suggestion (#{suggestion_id})"


SUGGESTIONS_METHOD = (
    "Any member can suggest a pledge's status with /pledge suggest and a link to public "
    "evidence. An operator accepts it, recording the status under the rating method above "
    "(the history marks it as from a member's suggestion), or rejects it with a reason the "
    "member is told. Only operators see who suggested what; members are never named."
)


def suggestions_field(received: int, accepted: int, rejected: int) -> Field:
    """/about: how suggestions work, and what became of those received so far."""
    waiting = received - accepted - rejected
    counts = (
        f"Received {received} · accepted {accepted} · rejected {rejected} · "
        f"waiting for review {waiting}"
    )
    return Field("How members' suggestions work", f"{SUGGESTIONS_METHOD}\n{counts}")


def power_name(power: Power) -> str:
    return f"{power.name} ({power.abbreviation})" if power.abbreviation else power.name


def power_card(power: Power, statement: Statement, related: Sequence[Pledge]) -> Card:
    change = power.change_pledged
    if related:
        change += "\n" + bullet(f"{open_command('pledge', p.slug)}" for p in related)
    said = "(according to the statement)"
    fields = [
        Field(f"Who can apply {said}", bullet(power.who_applies)),
        Field(f"Routes {said}", bullet(power.routes)),
        Field(f"Restrictions it can impose {said}", bullet(power.restrictions)),
        Field(f"History {said}", power.history),
        Field("The change pledged", change),
        Field("In detail", power.detail),
        Field("What the statement says", quote_block(power.quotes)),
    ]
    return Card(
        title=power_name(power),
        description=power.summary,
        fields=tuple(fields),
        footer=source_footer(statement) + f" · {open_command('power', power.slug)}",
        url=statement.url,
    )


def power_list_card(powers: Sequence[Power], statements: Mapping[str, Statement]) -> Card:
    if not powers:
        return Card(title="Legal powers", description="No powers are loaded.")
    fields = tuple(
        Field(
            shorten(power_name(p), FIELD_NAME_LIMIT),
            shorten(f"{p.summary}\n`{p.slug}`", FIELD_VALUE_LIMIT),
        )
        for p in powers
    )
    sources = [statements[p.statement_slug] for p in powers if p.statement_slug in statements]
    return Card(
        title="Legal powers",
        fields=fields,
        footer=sources_footer(sources, "/power show <power> for one in full"),
    )


def claim_card(claim: Claim, statement: Statement) -> Card:
    attribution = claim.attribution or f"The statement ({statement.author})"
    return Card(
        title=claim.title or claim.summary,
        description=claim.summary,
        fields=(
            Field("Who says so", attribution),
            Field("What the statement says", quote_block(claim.quotes)),
            Field(
                "Checked?",
                "No: this is what the statement says, not established fact. pledgebot "
                "shows it so you can see the case the statement makes.",
            ),
        ),
        footer=source_footer(statement) + f" · {open_command('claim', claim.slug)}",
        url=statement.url,
    )


def claim_list_pages(claims: Sequence[Claim], statements: Mapping[str, Statement]) -> list[Card]:
    if not claims:
        return [Card(title="Claims", description="No claims match.")]
    by_statement = list(dict.fromkeys(c.statement_slug for c in claims))
    title = (
        f"Claims made in: {statements[by_statement[0]].title}"
        if len(by_statement) == 1 and by_statement[0] in statements
        else "Claims the statements make"
    )
    sources = [statements[slug] for slug in by_statement if slug in statements]
    card = Card(
        title=title,
        description=NOT_FACT,
        fields=tuple(
            Field(
                shorten(c.title or c.summary, FIELD_NAME_LIMIT),
                shorten(f"`{open_command('claim', c.slug)}`", FIELD_VALUE_LIMIT),
            )
            for c in claims
        ),
        footer=sources_footer(sources, f"{len(claims)} claims · /claim show <claim> for one"),
    )
    return paginate(card)


RATING_METHOD = (
    "pledgebot's operators rate each pledge's status; server moderators cannot. Any status "
    "other than Not yet rated needs a note and a link to public evidence (http or https), "
    "and each card shows when it was rated, by whom, and the evidence. Every change is "
    "kept: /pledge history shows them all, and the history cannot be edited or deleted."
)


def statement_provenance(statement: Statement) -> str:
    """What we know of where a statement comes from, and nothing we don't."""
    lines = [
        f"Speaker: {statement.speaker or 'not recorded'}",
        f"Publisher: {statement.publisher or 'not stated in the text'}",
        f"Date: {statement.date or UNDATED + ' (the text gives no date)'}",
        f"Link: {statement.url or 'none recorded'}",
        f"Content edition {statement.edition}"
        + (f", edited {statement.edited}" if statement.edited else ""),
        f"Full text: `/about statement:{statement.slug}`",
    ]
    return "\n".join(lines)


def about_card(
    statements: Sequence[Statement], claims: Sequence[Claim], loaded_at: str | None
) -> Card:
    fields = [
        Field(f"Statement: {shorten(s.title, 200)}", statement_provenance(s)) for s in statements
    ] or [Field("Statements carried", "None loaded yet.")]
    fields += [
        Field(
            "How summaries are written",
            "Summaries and details are written by pledgebot's editors in their own words and "
            "say nothing the statement does not. Every record (pledge, power and claim) "
            "carries verbatim quotes so you can check us. Factual claims are shown as what "
            "the statement says, never as established fact.",
        ),
        Field("How statuses are rated", RATING_METHOD),
        Field(
            "Status vocabulary",
            "\n".join(f"{s.emoji} **{s.label}**: {s.meaning}" for s in STATUSES),
        ),
    ]
    if claims:
        fields.append(
            Field(
                "Claims the statements make",
                f"{counted(len(claims), 'claim')} · /claim list",
                inline=True,
            )
        )
    if loaded_at:
        fields.append(
            Field("Loaded into this bot's database", discord_date(loaded_at), inline=True)
        )
    return Card(
        title="About pledgebot",
        description=(
            "pledgebot briefs this community on political pledges and the legal powers "
            "behind them. Try /pledge list, /pledge search, /power list, /claim list."
        ),
        fields=tuple(fields),
    )


def statement_card(statement: Statement, counts: Mapping[str, int]) -> Card:
    """A statement's provenance and its full text, word for word."""
    # counts are keyed by kind in the plural ("powers"), each kind a plain -s plural
    carried = ", ".join(counted(n, kind.removesuffix("s")) for kind, n in counts.items())
    return Card(
        title=statement.title,
        description=statement.summary,
        fields=(
            Field("Where it comes from", statement_provenance(statement).rsplit("\n", 1)[0]),
            Field("What pledgebot carries from it", carried or "Nothing yet"),
            Field(
                "Checking the text",
                f"SHA-256 of the text: `{statement.source_sha256}`",
            ),
            # each line its own paragraph, so pages break between lines, never inside
            Field("The full text, verbatim", "\n\n".join(statement.source_text.split("\n"))),
        ),
        footer=source_footer(statement),
        url=statement.url,
    )


def bullet(items: Iterable[str]) -> str:
    return "\n".join(f"• {item}" for item in items)


def counted(number: int, noun: str) -> str:
    """A count that agrees with its noun ("1 power", "2 powers"), for nouns that add -s."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def discord_date(iso: str) -> str:
    """An ISO timestamp as a Discord timestamp each reader sees in their own zone."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"<t:{int(moment.timestamp())}:D>"
