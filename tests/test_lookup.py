"""Autocomplete and name resolution, without Discord."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import UserError
from bot.pledges.lookup import Catalog

CATALOG = Catalog(
    "pledge",
    [
        ("europe-security-agreement", "Seek a new Security Agreement with Europe"),
        ("europol-partnership", "New partnership with Europol on migrant smuggling"),
        ("police-officers-to-europol", "More UK police officers posted to Europol"),
        ("organised-crime-strategy", "New Serious and Organised Crime Strategy"),
    ],
)
BIG = Catalog(
    "pledge", [(f"pledge-{i}", f"{'Long title words ' * 18}{i}"[:300]) for i in range(500)]
)


def test_slug_prefix_comes_first() -> None:
    assert CATALOG.choices("europol")[0] == (
        "New partnership with Europol on migrant smuggling",
        "europol-partnership",
    )


def test_words_match_anywhere_in_the_title() -> None:
    slugs = [value for _, value in CATALOG.choices("police europ")]
    assert slugs == ["police-officers-to-europol"]


def test_empty_input_lists_the_first_records() -> None:
    assert len(CATALOG.choices("")) == 4


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5000))
def test_choices_are_within_discord_limits(text: str) -> None:
    choices = BIG.choices(text)
    assert len(choices) <= 25
    for name, value in choices:
        assert 1 <= len(name) <= 100
        assert 1 <= len(value) <= 100


def test_big_catalog_returns_25_choices() -> None:
    assert len(BIG.choices("long")) == 25


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("europol-partnership", "europol-partnership"),
        ("  europol-partnership ", "europol-partnership"),
        ("More UK police officers posted to Europol", "police-officers-to-europol"),
        ("security agreement", "europe-security-agreement"),
    ],
)
def test_resolve(text: str, slug: str) -> None:
    assert CATALOG.resolve(text) == slug


def test_ambiguous_names_list_the_candidates() -> None:
    with pytest.raises(UserError, match="matches more than one pledge") as caught:
        CATALOG.resolve("europol")
    assert "europol-partnership" in str(caught.value)
    assert "police-officers-to-europol" in str(caught.value)


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(UserError, match="No pledge called") as caught:
        CATALOG.resolve("europol-partnershp")
    assert "europol-partnership" in str(caught.value)


def test_nothing_close_points_to_the_list() -> None:
    with pytest.raises(UserError, match="/pledge list"):
        CATALOG.resolve("zzzz")


_VOCAB = ("cut", "coastal", "community", "border", "security", "checks", "gen", "flood", "fund")
WIDE = Catalog(
    "pledge",
    [
        (f"gen-{i:05d}", f"{_VOCAB[i % 9]} {_VOCAB[(i * 7) % 9]} commitment {i}".title())
        for i in range(3_000)
    ],
)

SHUFFLED = Catalog(
    "pledge",
    random.Random(5).sample(
        [
            (f"gen-{i:05d}", f"{_VOCAB[i % 9]} {_VOCAB[(i * 7) % 9]} commitment {i}")
            for i in range(3_000)
        ],
        3_000,
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["c", "co", "gen", "b", "se", "fl", "fund", "17", "x"]),
        min_size=1,
        max_size=4,
    )
)
def test_word_prefixes_find_the_first_records_whatever_the_words_spread(typed: list[str]) -> None:
    """Rare and common words together (a word of every record beside one of a few), one
    word or many, give the records in display order, as testing each record would,
    wherever they lie: in slug order or shuffled."""
    for catalog in (WIDE, SHUFFLED):
        expected = [
            entry.slug
            for entry in catalog._entries
            if all(any(word.startswith(t) for word in entry.words) for t in typed)
        ][:25]
        found = [catalog._entries[p].slug for p in catalog._word_prefix_matches(typed, 25)]
        assert found == expected


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(WIDE._entries).flatmap(
        lambda e: st.tuples(st.just(f"{e.slug} {e.folded}"), st.integers(0, 40), st.integers(1, 14))
    ),
    st.sampled_from(["", "x", "q", "zz"]),
)
def test_substrings_are_found_through_trigrams_as_a_scan_finds_them(
    picked: tuple[str, int, int], noise: str
) -> None:
    """Any piece of a record's slug and title (across the space between them too), or a
    piece that is nowhere: the trigram index finds what a scan of every record finds."""
    line, start, length = picked
    query = (line[start : start + length] + noise).strip() or "ab"
    assert WIDE._substring_matches(query, 25) == WIDE._scanned_matches(query, 25)


@pytest.mark.parametrize(
    "typed", ["g", "gen-0", "gen-01", "gen-002", "gen-0029", "c", "co", "coastal f", "fund co"]
)
def test_prefixes_give_the_first_records_in_display_order_narrow_or_wide(typed: str) -> None:
    """A slug or title prefix matching a few records (sorted) or thousands (walked), in a
    display order unlike the slugs' order: the first 25 in display order either way."""
    by_slug = [e.slug for e in SHUFFLED._entries if e.slug.startswith(typed)]
    by_title = [e.slug for e in SHUFFLED._entries if e.folded.startswith(typed)]
    assert by_slug or by_title
    assert [e.slug for e in SHUFFLED.matches(typed)] == (by_slug or by_title)[:25]
