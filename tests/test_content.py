"""Curated content: quotes verified, loading idempotent and all-or-nothing, round trip."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from bot.pledges.content import ContentError, export_content, load_content, read_content
from bot.store import Store
from tests.conftest import DATA_DIR, REPO

# The statement as published to us. A clone has nothing beside it, so the copy in data/
# is checked against the digest taken when it was compared with the seed, and against the
# seed itself wherever the seed is beside the checkout (as in CI).
SEED = REPO.parent / "shared" / "seeds" / "000_3f011282d69bbf78.txt"
SEED_SHA256 = "495fd07c9b0219265ed5ac9607c9aca6126d3b9c78189dbf889d4d650b1bd82c"


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, for before/after comparisons."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'search_index_%' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: sorted(conn.execute(f"SELECT rowid, * FROM {t}"), key=repr) for t in tables}
    finally:
        conn.close()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_source_text_is_the_seed_byte_for_byte() -> None:
    copy = (DATA_DIR / "sources" / "smuggling-gangs.txt").read_bytes()
    assert hashlib.sha256(copy).hexdigest() == SEED_SHA256
    if SEED.exists():
        assert copy == SEED.read_bytes()


def test_the_first_statement_is_curated_whole() -> None:
    (content,) = read_content(DATA_DIR)
    pledges = {p.slug: p for p in content.pledges}
    assert len(pledges) == 6
    assert {"Europol"} <= set(pledges["europol-partnership"].actors)
    assert {p.scope for p in content.pledges} == {"With European partners", "In the UK"}
    (power,) = content.powers
    assert power.abbreviation == "SCPO"
    assert any("NCA" in who for who in power.who_applies)
    assert len(power.routes) == 2
    assert any("High Court" in route for route in power.routes)
    restrictions = " ".join(power.restrictions).lower()
    for kind in ("communications", "bank", "travel", "vehicles"):
        assert kind in restrictions
    assert "2007" in power.history
    assert set(power.pledges) <= set(pledges)
    claims = " ".join(c.summary for c in content.claims).lower()
    for topic in ("profit", "conviction", "taxpayer", "security"):
        assert topic in claims
    assert all(c.summary.startswith("The statement says") for c in content.claims)


def test_every_record_quotes_its_statement_verbatim() -> None:
    for content in read_content(DATA_DIR):
        records = (*content.pledges, *content.powers, *content.claims)
        assert records
        for record in records:
            assert record.quotes, record.slug
            for quote in record.quotes:
                assert quote in content.statement.source_text


async def test_loading_twice_gives_the_same_rows(store: Store) -> None:
    await load_content(store, DATA_DIR)
    first = dump(store.path)
    report = await load_content(store, DATA_DIR)
    assert dump(store.path) == first
    assert (report.statements, report.pledges, report.powers) == (1, 6, 1)
    assert first["pledges"] and first["quotes"]


async def test_unchanged_content_is_skipped_when_asked(store: Store) -> None:
    await load_content(store, DATA_DIR)
    assert (await load_content(store, DATA_DIR, skip_if_unchanged=True)).skipped
    assert not (await load_content(store, DATA_DIR)).skipped


async def test_loading_never_touches_status_history(store: Store, content_dir: Path) -> None:
    await load_content(store, content_dir)
    await store.set_status("europol-partnership", "in-progress", note="n", changed_by="t")
    edit(content_dir / "smuggling-gangs.toml", 'title = "New partnership', 'title = "A partnership')
    await load_content(store, content_dir)
    pledge = await store.pledge("europol-partnership")
    assert pledge is not None
    assert pledge.title.startswith("A partnership")
    assert pledge.status == "in-progress"
    assert len(await store.status_history("europol-partnership")) == 1


BAD_EDITS = [
    (
        "Restrictions can be placed on the use of communications devices",
        "Restrictions may be placed on the use of communications devices",
        "quote not found in the statement's text",
    ),
    ('slug = "europol-partnership"', 'slug = "europe-security-agreement"', "duplicate pledge slug"),
    ("schema = 1", "schema = 1\nsurprise = true", "unknown top-level key 'surprise'"),
    ('scope = "In the UK"', 'scope = "In the UK"\ncolour = "red"', "unknown field 'colour'"),
    ('scope = "In the UK"', "scope = 7", "'scope' must be a string"),
    ('slug = "europol-partnership"', 'slug = "Europol Partnership"', "slug must be lowercase"),
    ('source = "sources/smuggling-gangs.txt"', 'source = "../../etc/passwd"', "inside the content"),
    ('source = "sources/smuggling-gangs.txt"', 'source = "sources/gone.txt"', "cannot be read"),
    ('slug = "europol-partnership"', 'slug = "europol-partnership"\n[oops', "not valid TOML"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_EDITS, ids=[m for *_, m in BAD_EDITS])
async def test_bad_content_is_rejected_and_nothing_changes(
    store: Store, content_dir: Path, old: str, new: str, message: str
) -> None:
    await load_content(store, content_dir)
    before = dump(store.path)
    path = content_dir / "smuggling-gangs.toml"
    edit(path, old, new)
    with pytest.raises(ContentError) as caught:
        await load_content(store, content_dir)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert dump(store.path) == before


async def test_a_bad_quote_is_named_with_its_record(store: Store, content_dir: Path) -> None:
    edit(
        content_dir / "smuggling-gangs.toml",
        '  "More UK police officers posted',
        '  "More officers',
    )
    with pytest.raises(ContentError) as caught:
        await load_content(store, content_dir)
    assert "pledge 'police-officers-to-europol'" in str(caught.value)
    assert "'More officers to Europol" in str(caught.value)
    assert (await store.counts())["pledges"] == 0


async def test_a_power_cannot_link_an_unknown_pledge(store: Store, content_dir: Path) -> None:
    edit(content_dir / "smuggling-gangs.toml", '"strengthened-civil-orders"]', '"nope"]')
    with pytest.raises(ContentError, match="unknown pledge 'nope'"):
        await load_content(store, content_dir)


async def test_the_store_holds_more_than_one_statement(store: Store, content_dir: Path) -> None:
    second = content_dir / "second.toml"
    (content_dir / "sources" / "second.txt").write_text("We will plant trees.", "utf-8")
    second.write_text(
        'schema = 1\n[statement]\nslug = "second"\ntitle = "T"\nauthor = "A"\n'
        'source = "sources/second.txt"\nsummary = "S"\n'
        '[[pledges]]\nslug = "plant-trees"\ntitle = "Plant trees"\nsummary = "s"\n'
        'detail = "d"\nscope = "Everywhere"\nquotes = ["plant trees"]\n',
        "utf-8",
    )
    await load_content(store, content_dir)
    assert [s.slug for s in await store.statements()] == ["second", "smuggling-gangs"]
    assert [p.slug for p in await store.pledges(statement="second")] == ["plant-trees"]
    assert (await store.search("trees"))[0].slug == "plant-trees"


async def test_export_then_load_round_trips(store: Store, tmp_path: Path) -> None:
    await load_content(store, DATA_DIR)
    exported = tmp_path / "exported"
    files = await export_content(store, exported)
    assert [f.name for f in files] == ["smuggling-gangs.toml"]
    assert read_content(exported) == read_content(DATA_DIR)

    second = await Store.open(tmp_path / "second.db")
    try:
        await load_content(second, exported)
        again = tmp_path / "again"
        await export_content(second, again)
    finally:
        await second.close()
    for path in sorted(exported.rglob("*")):
        if path.is_file():
            assert (again / path.relative_to(exported)).read_bytes() == path.read_bytes()
    assert {k: v for k, v in dump(tmp_path / "second.db").items() if k != "meta"} == {
        k: v for k, v in dump(store.path).items() if k != "meta"
    }
