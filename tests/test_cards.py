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
        quotes=tuple(quotes) or ("q",),
        pledged_by="Labour",
        partners=("Europol",),
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
        status_evidence="https://example.org/" + "e" * 300,
        status_changed_by="operator:" + title,
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
    pages = cards.pledge_list_pages([(STATEMENT, pledges)])
    assert len(pages) == 7
    assert sum(len(p.fields) for p in pages) == 40
    assert pages[0].title == "Pledges by Labour: Labour statement on criminal smuggling gangs (1/7)"
    assert all(p.within_limits() for p in pages)
    assert all(p.footer.startswith("Source: Labour statement on") for p in pages)


def test_list_pages_name_each_statement_and_party() -> None:
    """Issue 9, item 3: with two statements, every page says whose pledges it shows."""
    other = replace(STATEMENT, slug="other", title="Green statement on trees", publisher="Greens")
    greens = [replace(pledge_from("Plant trees", "s", "d", ["q"]), pledged_by="The Greens")]
    labour = [pledge_from(f"Pledge {i}", "s", "d", ["q"]) for i in range(7)]
    pages = cards.pledge_list_pages([(STATEMENT, labour), (other, greens)], "🔵 In progress")
    assert [p.title for p in pages] == [
        "Pledges by Labour: Labour statement on criminal smuggling gangs — 🔵 In progress (1/3)",
        "Pledges by Labour: Labour statement on criminal smuggling gangs — 🔵 In progress (2/3)",
        "Pledges by The Greens: Green statement on trees — 🔵 In progress (3/3)",
    ]
    assert "Green statement on trees (Greens, undated)" in pages[2].footer
    (empty,) = cards.pledge_list_pages([(other, [])], "🔴 Broken")
    assert empty.title == "Pledges: Green statement on trees — 🔴 Broken"
    assert empty.description == "No pledges match."
    assert "Green statement on trees (Greens, undated)" in empty.footer
    assert (
        "Labour statement on criminal smuggling gangs (publisher not stated, undated)"
        in pages[0].footer
    )


def test_search_card_echoes_the_query_escaped() -> None:
    card = cards.search_card("@everyone **x**", [])
    assert r"\*\*x\*\*" in card.description
    hit = SearchHit("claim", "c", "The statement says", "**profits** soaring", -1.0, "s")
    found = cards.search_card("profits", [hit], {"s": STATEMENT})
    assert found.fields[0].name == "Claim: The statement says"
    assert "Open it: `/claim show claim:c`" in found.fields[0].value
    assert "not established fact" in found.footer
    assert found.footer.startswith("Source: Labour statement on criminal smuggling gangs")


def test_power_card_shows_everything_with_attribution() -> None:
    (content,) = read_content(DATA_DIR)
    (power,) = content.powers
    card = cards.power_card(power, content.statement, content.pledges[-1:])
    names = [f.name for f in card.fields]
    for expected in (
        "Who can apply (according to the statement)",
        "Routes (according to the statement)",
        "Restrictions it can impose (according to the statement)",
        "History (according to the statement)",
        "The change pledged",
    ):
        assert expected in names
    assert "Related pledges" not in names  # the change pledged links its pledge instead
    change = next(f.value for f in card.fields if f.name == "The change pledged")
    assert f"/pledge show pledge:{content.pledges[-1].slug}" in change
    text = " ".join(f.value for f in card.fields) + card.description
    assert text.count("highest-harm") == 1  # the change pledged, said once
    assert card.footer.startswith("Source: Labour statement on criminal smuggling gangs")
    assert all(p.within_limits() for p in paginate(card))


def test_pledge_card_credits_who_pledged_and_shows_the_rating() -> None:
    """Issue 9, items 2 and 5: pledged by, partners, condition; rated when, by whom, on what."""
    (content,) = read_content(DATA_DIR)
    pledge = next(p for p in content.pledges if p.slug == "europol-partnership")
    rated = replace(
        pledge,
        status="in-progress",
        status_changed_at="2026-01-01T00:00:00+00:00",
        status_note="Talks opened",
        status_evidence="https://example.org/talks",
        status_changed_by="discord:42",
    )
    card = cards.pledge_card(rated, content.statement)
    fields = {f.name: f.value for f in card.fields}
    assert "Who delivers it" not in fields
    assert fields["Pledged by"] == "Labour"
    assert fields["Partners named"] == "European partners, Europol"
    assert "the next Labour government" in fields["Condition"]
    assert "Rated <t:1767225600:D> by <@42>" in fields["Status"]
    assert "Evidence: https://example.org/talks" in fields["Status"]
    assert "(publisher not stated, undated)" in card.footer
    unrated = dict((f.name, f.value) for f in cards.pledge_card(pledge, content.statement).fields)
    assert unrated["Status"] == "⚪ Not yet rated (no rating recorded yet)"


def test_discord_date_uses_a_timestamp_tag() -> None:
    assert cards.discord_date("2026-01-01T00:00:00+00:00") == "<t:1767225600:D>"
    assert cards.discord_date("not a date") == "not a date"


def test_about_card_lists_the_vocabulary() -> None:
    (content,) = read_content(DATA_DIR)
    card = cards.about_card([content.statement], content.claims, None)
    vocabulary = next(f.value for f in card.fields if f.name == "Status vocabulary")
    assert "Partly delivered" in vocabulary
    assert card.within_limits()


def test_about_card_states_provenance_and_the_rating_method_honestly() -> None:
    """Issue 9, items 4 and 5: undated, never a date we don't have; who rates, on what."""
    (content,) = read_content(DATA_DIR)
    card = cards.about_card([content.statement], content.claims, "2026-01-01T00:00:00+00:00")
    fields = {f.name: f.value for f in card.fields}
    provenance = fields["Statement: Labour statement on criminal smuggling gangs"]
    assert "Date: undated" in provenance
    assert "Link: none recorded" in provenance
    assert "Speaker: An unnamed speaker for Labour" in provenance
    assert "Content edition 3, edited 2026-12-07" in provenance
    assert "Content last updated" not in fields
    assert fields["Loaded into this bot's database"] == "<t:1767225600:D>"
    method = fields["How statuses are rated"]
    for promise in ("operators", "evidence", "http or https", "cannot be edited or deleted"):
        assert promise in method
    assert (
        "Every record (pledge, power and claim) carries verbatim quotes"
        in (fields["How summaries are written"])
    )


def test_claim_card_attributes_the_claim() -> None:
    (content,) = read_content(DATA_DIR)
    claim = next(c for c in content.claims if c.slug == "smuggling-convictions-plummeting")
    card = cards.claim_card(claim, content.statement)
    fields = {f.name: f.value for f in card.fields}
    assert card.title == (
        "The statement says convictions for people smuggling are plummeting "
        "on the Prime Minister's and Home Secretary's watch"
    )
    assert fields["Who says so"].startswith("The statement, for Labour")
    assert (
        "> “On the Prime Minister and the Home Secretary’s watch,"
        in (fields["What the statement says"])
    )
    assert "not established fact" in fields["Checked?"]
    assert card.footer.endswith("/claim show claim:smuggling-convictions-plummeting")
    assert all(p.within_limits() for p in paginate(card))
