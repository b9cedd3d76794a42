"""Issue 19, item 5: the content corrections from a line-by-line audit against the source.

Each test reads the shipped content (data/, never ../shared) or a private copy of it; the
store tests and the end-to-end test run on both backends (`[sqlite]`, `[postgresql]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.briefings.compose import credit
from bot.models import Claim, Pledge, Statement, StatementContent
from bot.pledges import cards
from bot.pledges.content import load_content, read_content
from bot.pledges.editorial import Sentence, clauses, coverage, coverage_report, sentences
from bot.store import Store
from tests.conftest import DATA_DIR
from tests.e2e import World, embed_text, running_bot, world_on_both_backends
from tests.test_cli import run

__all__ = ["world_on_both_backends"]  # the `w` fixture, on both backends

OPENING_CLAUSE = "and stronger powers for our enforcement agencies in the UK"
NEXT_GOVERNMENT = "The next Labour government will roll up our sleeves"
UK_PLEDGES = (
    "organised-crime-strategy",
    "strengthened-civil-orders",
    "scpo-organised-immigration-crime",
)
SCPO_PLEDGE = "scpo-organised-immigration-crime"
SCPO_POWER = "serious-crime-prevention-orders"


def shipped() -> StatementContent:
    (content,) = read_content(DATA_DIR)
    return content


# -- coverage: a clause no record quotes ---------------------------------------------


def test_no_clause_of_a_quoted_sentence_goes_unquoted() -> None:
    """Before the fix, the opening sentence's last clause was quoted by no record."""
    content = shipped()
    gaps = [(row.sentence.text, c.text) for row in coverage(content) for c in row.unquoted_clauses]
    assert gaps == []
    opening = next(row for row in coverage(content) if OPENING_CLAUSE in row.sentence.text)
    for slug in UK_PLEDGES:
        assert f"pledge {slug}" in opening.quoted_by
    assert "0 clauses of quoted sentences quoted by no record" in coverage_report(content)[0]


def test_coverage_flags_the_clause_the_audit_found(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content_dir: Path
) -> None:
    """The content as it was before the fix (the clause quoted nowhere): `content
    coverage` names the clause under its sentence, though the sentence itself is quoted."""
    path = content_dir / "smuggling-gangs.toml"
    text = path.read_text("utf-8")
    whole_sentence = next(
        line
        for line in text.splitlines()
        if line.strip().startswith(f'"{NEXT_GOVERNMENT}') and OPENING_CLAUSE in line
    )
    assert text.count(whole_sentence + "\n") == len(UK_PLEDGES)
    path.write_text(text.replace(whole_sentence + "\n", ""), "utf-8")
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "cli.db"}"\n', "utf-8")

    code, out, err = run(
        capsys, "--config", str(config), "content", "coverage", "smuggling-gangs",
        "--dir", str(content_dir),
    )  # fmt: skip

    assert code == 0, err
    lines = out.splitlines()
    assert "14 sentences, 13 quoted, 1 quoted by no record" in lines[0]
    assert "1 clause of quoted sentences quoted by no record" in lines[0]
    opening = next(i for i, line in enumerate(lines) if line.startswith("  5. The next Labour"))
    assert lines[opening + 1].startswith("     quoted by: pledge europe-security-agreement")
    assert lines[opening + 2] == (f"     clause NOT QUOTED by any record: “{OPENING_CLAUSE}.”")
    assert sum("clause NOT QUOTED" in line for line in lines) == 1


def test_clauses_break_at_punctuation_dashes_and_and_but_not_inside_words() -> None:
    (sentence,) = sentences(
        "In the UK, we will act; first: 1,000 gang-leaders – then pre-conviction orders—"
        "and more and better parks."
    )
    assert [c.text for c in clauses(sentence)] == [
        "In the UK",
        "we will act",
        "first",
        "1,000 gang-leaders",
        "then pre-conviction orders",
        "and more",
        "and better parks.",
    ]
    for clause in clauses(sentence):
        assert sentence.text[clause.start - sentence.start :].startswith(clause.text)
    (single,) = sentences("Parks for all.")
    assert clauses(single) == [Sentence(single.start, single.end, "Parks for all.")]


SYNTHETIC = (
    "We will build homes, and we will cut taxes. Prices are rising – our plan fixes that.\n"
    "Our rivals failed.\n"
    "Trees; parks: woods.\n"
)


def synthetic(*quoted: tuple[str, str]) -> StatementContent:
    """A small statement whose records quote `quoted` ((kind, text) pairs)."""
    statement = Statement("homes", "Homes", "", "", "", "s", SYNTHETIC)
    pledges = tuple(
        Pledge(f"p{i}", "homes", "t", "s", "d", "In the UK", (text,))
        for i, (kind, text) in enumerate(quoted)
        if kind == "pledge"
    )
    claims = tuple(
        Claim(f"c{i}", "homes", "t", "s", (text,))
        for i, (kind, text) in enumerate(quoted)
        if kind == "claim"
    )
    return StatementContent(statement, "sources/homes.txt", pledges, (), claims)


def test_coverage_of_a_small_statement_flags_sentences_and_clauses() -> None:
    content = synthetic(
        ("pledge", "We will build homes"),
        ("pledge", "our plan fixes that."),
        ("claim", "Trees; parks: woods."),
    )
    rows = {row.sentence.text: row for row in coverage(content)}
    homes = rows["We will build homes, and we will cut taxes."]
    assert homes.quoted_by == ("pledge p0",)
    assert [c.text for c in homes.unquoted_clauses] == ["and we will cut taxes."]
    prices = rows["Prices are rising – our plan fixes that."]
    assert [c.text for c in prices.unquoted_clauses] == ["Prices are rising"]
    rivals = rows["Our rivals failed."]
    assert rivals.quoted_by == () and rivals.unquoted_clauses == ()  # one gap, said once
    assert rows["Trees; parks: woods."].unquoted_clauses == ()

    report = coverage_report(content)
    assert report[0] == (
        "statement homes: 4 sentences, 3 quoted, 1 quoted by no record; "
        "2 clauses of quoted sentences quoted by no record"
    )
    assert report[1:4] == [
        "  1. We will build homes, and we will cut taxes.",
        "     quoted by: pledge p0",
        "     clause NOT QUOTED by any record: “and we will cut taxes.”",
    ]
    assert "     NOT QUOTED by any record: a pledge, power or claim left out?" in report

    # quoting the rest leaves nothing flagged
    whole = synthetic(
        ("pledge", "We will build homes, and we will cut taxes."),
        ("pledge", "Prices are rising – our plan fixes that."),
        ("claim", "Our rivals failed."),
        ("claim", "Trees; parks: woods."),
    )
    assert all(row.quoted_by and not row.unquoted_clauses for row in coverage(whole))


# -- the corrected content -------------------------------------------------------------


def test_the_next_labour_government_condition_is_supported_by_a_quote() -> None:
    """Five pledges carry the condition; each now quotes the sentence that says it, and
    the pledges made in the UK quote its clause on stronger powers in the UK."""
    pledges = {p.slug: p for p in shipped().pledges}
    conditioned = [p for p in pledges.values() if "the next Labour government" in p.condition]
    assert len(conditioned) == 5
    for pledge in conditioned:
        assert any(q.startswith(NEXT_GOVERNMENT) for q in pledge.quotes), pledge.slug
    for slug in UK_PLEDGES:
        assert any(OPENING_CLAUSE in q for q in pledges[slug].quotes), slug
        assert pledges[slug].scope == "In the UK"


def test_the_audit_wording_fixes() -> None:
    content = shipped()
    pledges = {p.slug: p for p in content.pledges}
    scpo = pledges[SCPO_PLEDGE]
    assert "the gang-leaders based in the UK orchestrating crossings" in scpo.summary
    assert "the gang-leaders based in the UK orchestrating crossings" in scpo.detail
    assert "UK-based" not in scpo.summary + scpo.detail
    assert scpo.detail.startswith("The statement says that, at present")
    civil = pledges["strengthened-civil-orders"]
    assert "ensure such powers can be used against" in civil.detail
    assert "change who" not in civil.detail
    police = pledges["police-officers-to-europol"]
    assert "existing force" not in police.detail and "proposed" not in police.summary
    claims = {c.slug: c for c in content.claims}
    watch = "on the Prime Minister's and Home Secretary's watch"
    for slug in (
        "smuggling-gang-profits-soaring",
        "smuggling-convictions-plummeting",
        "taxpayer-cash-seeping-away",
        "uk-security-under-threat",
    ):
        assert claims[slug].title.endswith(watch), slug
    summary = content.statement.summary
    assert "criticises the Conservatives" in summary and "/claim list" in summary


def test_the_publisher_is_not_stated_like_the_date() -> None:
    """The text never names a publisher: empty in the content, said plainly on cards."""
    statement = shipped().statement
    assert (statement.publisher, statement.date) == ("", "")
    assert "Labour" in statement.speaker  # the speaker writes for Labour; no more is said
    provenance = cards.statement_provenance(statement)
    assert "Publisher: not stated in the text" in provenance
    assert "Date: undated (the text gives no date)" in provenance
    footer = "Labour statement on criminal smuggling gangs (publisher not stated, undated)"
    assert footer in cards.source_footer(statement)
    assert "(publisher not stated)" in credit([statement])
    named = Statement("s", "Greens on trees", "Greens", "2024", "", "s", "t")
    assert cards.source_line(named) == "Greens on trees (Greens, 2024)"
    assert "Publisher: Greens" in cards.statement_provenance(named)


async def test_an_unstated_publisher_is_stored_as_unknown(any_store: Store) -> None:
    await load_content(any_store, DATA_DIR)
    (statement,) = await any_store.statements()
    assert statement.publisher == ""
    assert statement.author == "publisher not stated"


def test_counts_agree_with_their_nouns() -> None:
    assert [cards.counted(n, "power") for n in (0, 1, 2)] == ["0 powers", "1 power", "2 powers"]
    content = shipped()
    card = cards.statement_card(content.statement, {"pledges": 1, "powers": 1, "claims": 2})
    carried = next(f.value for f in card.fields if f.name == "What pledgebot carries from it")
    assert carried == "1 pledge, 1 power, 2 claims"
    about = cards.about_card([content.statement], content.claims[:1], None)
    claims = next(f.value for f in about.fields if f.name == "Claims the statements make")
    assert claims == "1 claim · /claim list"


def test_the_power_card_attributes_every_fact_and_the_pledge_card_links_it() -> None:
    content = shipped()
    (power,) = content.powers
    scpo = next(p for p in content.pledges if p.slug == SCPO_PLEDGE)
    power_card = cards.power_card(power, content.statement, [scpo])
    said = "(according to the statement)"
    names = [f.name for f in power_card.fields]
    for fact in ("Who can apply", "Routes", "Restrictions it can impose", "History"):
        assert f"{fact} {said}" in names, fact
    linked = {f.name: f.value for f in cards.pledge_card(scpo, content.statement, [power]).fields}
    assert linked["Legal power"] == (
        f"• Serious Crime Prevention Orders (SCPO): /power show power:{SCPO_POWER}"
    )
    unlinked = cards.pledge_card(scpo, content.statement)
    assert not any(f.name.startswith("Legal power") for f in unlinked.fields)


# -- end to end: what members see -------------------------------------------------------


def fields_of(message: dict[str, Any] | None) -> dict[str, str]:
    """The first embed's fields by name."""
    assert message is not None
    return {f["name"]: f["value"] for f in message["embeds"][0].get("fields", [])}


@pytest.mark.e2e
async def test_members_see_the_corrected_content(w: World) -> None:
    async def ask(command: str, **options: str) -> dict[str, Any] | None:
        result = await w.emu.run_command(w.guild, command, options=options, user=w.member)
        return result.message

    async with running_bot(w):
        scpo = await ask("pledge show", pledge=SCPO_PLEDGE)
        europol = await ask("pledge show", pledge="europol-partnership")
        power = await ask("power show", power=SCPO_POWER)
        about = await ask("about")
        statement = await ask("about", statement="smuggling-gangs")
        claims = await ask("claim list")

    # the SCPO pledge links the power card, as the power card links the pledge
    assert fields_of(scpo)["Legal power"].endswith(f"/power show power:{SCPO_POWER}")
    assert f"/pledge show pledge:{SCPO_PLEDGE}" in fields_of(power)["The change pledged"]
    assert "Legal power" not in fields_of(europol)  # no power is tied to it
    assert OPENING_CLAUSE in fields_of(scpo)["What the statement says"]
    assert NEXT_GOVERNMENT in fields_of(europol)["What the statement says"]
    for name in ("Routes", "Restrictions it can impose", "History"):
        assert f"{name} (according to the statement)" in fields_of(power)
    # publisher and plurals
    assert "Publisher: not stated in the text" in embed_text(about)
    assert "1 powers" not in embed_text(about) + embed_text(statement)
    assert fields_of(statement)["What pledgebot carries from it"] == (
        "6 pledges, 1 power, 8 claims"
    )
    assert "(publisher not stated, undated)" in embed_text(scpo)
    assert "/claim list" in embed_text(statement)
    assert (
        "convictions for people smuggling are plummeting on the Prime Minister's and "
        "Home Secretary's watch"
    ) in embed_text(claims)
    assert w.emu.violations == []
