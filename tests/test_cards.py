"""Replies stay inside Discord's limits whatever the content; wording attributes claims."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.models import Pledge, SearchHit
from bot.pledges import cards
from bot.pledges.cards import Card, Field, paginate, split_text
from bot.pledges.content import read_content
from tests.conftest import DATA_DIR

long_text = st.text(min_size=0, max_size=12_000)
words = st.lists(st.text(min_size=1, max_size=400), min_size=0, max_size=30)


def pledge_from(title: str, summary: str, detail: str, quotes: list[str]) -> Pledge:
    return Pledge(
        slug="p",
        statement_slug="s",
        title=title or "t",
        summary=summary,
        detail=detail,
        scope="In the UK",
        actors=("NCA",),
        quotes=tuple(quotes) or ("q",),
    )


STATEMENT = read_content(DATA_DIR)[0].statement


@settings(max_examples=150, deadline=None)
@given(title=st.text(max_size=600), summary=long_text, detail=long_text, quotes=words)
def test_pledge_pages_are_always_within_embed_limits(
    title: str, summary: str, detail: str, quotes: list[str]
) -> None:
    pledge = replace(
        pledge_from(title, summary, detail, quotes),
        status="broken",
        status_changed_at="2026-01-01T00:00:00+00:00",
        status_note=detail,
    )
    pages = paginate(cards.pledge_card(pledge, STATEMENT))
    assert pages
    for page in pages:
        assert page.within_limits(), page


@settings(max_examples=100, deadline=None)
@given(
    description=long_text,
    fields=st.lists(st.tuples(st.text(max_size=400), long_text), max_size=40),
    footer=st.text(max_size=3000),
)
def test_any_card_paginates_within_limits(
    description: str, fields: list[tuple[str, str]], footer: str
) -> None:
    card = Card(
        title="T",
        description=description,
        fields=tuple(Field(n or "n", v or "v") for n, v in fields),
        footer=footer,
    )
    pages = paginate(card)
    for page in pages:
        assert page.within_limits()
        assert len(page.fields) <= cards.PAGE_FIELDS
    # nothing is lost: every character of the description survives pagination
    assert "".join("".join(p.description.split()) for p in pages) == "".join(description.split())


@settings(max_examples=100, deadline=None)
@given(text=long_text, limit=st.integers(min_value=50, max_value=1024))
def test_split_text_keeps_every_word_and_each_chunk_fits(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert all(len(c) <= limit for c in chunks)
    assert "".join("".join(c.split()) for c in chunks) == "".join(text.split())


def test_split_text_cuts_between_sentences() -> None:
    text = "First sentence is here. " * 60
    for chunk in split_text(text, 200):
        assert chunk.endswith(".")


def test_shorten_ends_at_a_word() -> None:
    assert cards.shorten("alpha beta gamma delta", 13) == "alpha beta…"
    assert cards.shorten("short", 10) == "short"


def test_escape_markdown_neutralises_formatting() -> None:
    assert cards.escape_markdown("**bold** [x](http://e)") == r"\*\*bold\*\* \[x\]\(http\://e\)"


def test_list_pages_hold_every_pledge() -> None:
    pledges = [pledge_from(f"Pledge {i}", "s" * 300, "d", ["q"]) for i in range(40)]
    pages = cards.pledge_list_pages(pledges, "Pledges")
    assert len(pages) == 7
    assert sum(len(p.fields) for p in pages) == 40
    assert pages[0].title == "Pledges (1/7)"
    assert all(p.within_limits() for p in pages)


def test_search_card_echoes_the_query_escaped() -> None:
    card = cards.search_card("@everyone **x**", [])
    assert r"\*\*x\*\*" in card.description
    hit = SearchHit("claim", "c", "", "**profits** soaring", -1.0)
    found = cards.search_card("profits", [hit])
    assert found.fields[0].name.startswith("Claim:")
    assert "not established fact" in found.footer


def test_power_card_shows_everything_with_attribution() -> None:
    (content,) = read_content(DATA_DIR)
    (power,) = content.powers
    card = cards.power_card(power, content.statement, content.pledges[-1:])
    names = [f.name for f in card.fields]
    for expected in ("Who can apply", "Routes", "Restrictions it can impose", "History"):
        assert expected in names
    assert card.footer.startswith("Source: Labour statement on criminal smuggling gangs")
    assert all(p.within_limits() for p in paginate(card))


def test_discord_date_uses_a_timestamp_tag() -> None:
    assert cards.discord_date("2026-01-01T00:00:00+00:00") == "<t:1767225600:D>"
    assert cards.discord_date("not a date") == "not a date"


def test_about_card_lists_the_vocabulary() -> None:
    (content,) = read_content(DATA_DIR)
    card = cards.about_card([content.statement], content.claims, None)
    vocabulary = next(f.value for f in card.fields if f.name == "Status vocabulary")
    assert "Partly delivered" in vocabulary
    assert card.within_limits()
