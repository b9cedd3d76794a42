"""Curated content: quotes verified, loading idempotent and all-or-nothing, round trip.

The tests that load into a store run on both backends (`any_store`: `[sqlite]` and
`[postgresql]`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bot.models import Claim, Pledge, Power
from bot.pledges.content import (
    ContentError,
    export_content,
    load_content,
    read_content,
    verify_source,
)
from bot.store import Store
from tests.conftest import DATA_DIR

# The statement as published to us, by the digest taken when the copy in data/ was
# compared with it byte for byte. Nothing outside the checkout is read.
SEED_SHA256 = "495fd07c9b0219265ed5ac9607c9aca6126d3b9c78189dbf889d4d650b1bd82c"


async def dump(store: Store, *, rowid: bool = True) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, for before/after comparisons, on either backend.

    On SQLite each row leads with its rowid (hidden for tables without an integer key;
    `rowid=False` leaves it out, to compare with PostgreSQL). Search index rows are the
    indexed text, not PostgreSQL's derived tsvector.
    """
    sqlite = store.db.dialect == "sqlite"
    tables = [
        r[0]
        for r in await store.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'search_index_%' AND name NOT LIKE 'sqlite_%'"
            if sqlite
            else "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name <> 'schema_version'"
        )
    ]
    dumped = {}
    for table in tables:
        columns = "*"
        if table == "search_index":
            columns = "rowid AS n, kind, slug, title, body, quotes, statement"
        if sqlite and rowid:
            columns = f"rowid, {columns}"
        rows = await store.rows(f"SELECT {columns} FROM {table}")
        dumped[table] = sorted((tuple(r) for r in rows), key=repr)
    return dumped


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_source_text_is_the_seed_byte_for_byte() -> None:
    """The copy in data/, the digest its content file pins, and the seed's all agree."""
    copy = (DATA_DIR / "sources" / "smuggling-gangs.txt").read_bytes()
    assert hashlib.sha256(copy).hexdigest() == SEED_SHA256
    (content,) = read_content(DATA_DIR)
    assert content.statement.source_sha256 == SEED_SHA256
    assert verify_source(content.statement) is None


def test_the_first_statement_is_curated_whole() -> None:
    (content,) = read_content(DATA_DIR)
    pledges = {p.slug: p for p in content.pledges}
    assert len(pledges) == 6
    assert set(pledges["europol-partnership"].partners) == {"European partners", "Europol"}
    assert {p.scope for p in content.pledges} == {"With European partners", "In the UK"}
    (power,) = content.powers
    assert power.abbreviation == "SCPO"
    assert power.who_applies == ("The NCA",)
    assert len(power.routes) == 2
    assert any("High Court" in route for route in power.routes)
    restrictions = " ".join(power.restrictions).lower()
    for kind in ("communications", "bank", "travel", "vehicles"):
        assert kind in restrictions
    assert "2007" in power.history
    assert set(power.pledges) <= set(pledges)
    claims = " ".join(c.summary for c in content.claims).lower()
    for topic in ("profit", "conviction", "taxpayer", "security", "climate change"):
        assert topic in claims
    assert all(c.summary.startswith("The statement says") for c in content.claims)
    assert all(c.title and c.attribution for c in content.claims)


def test_pledges_are_credited_only_as_the_statement_does() -> None:
    """Issue 9, item 2: who pledged it and partners named, each in the statement's words."""
    (content,) = read_content(DATA_DIR)
    text = content.statement.source_text.casefold()
    for pledge in content.pledges:
        assert pledge.pledged_by == "Labour", pledge.slug
        assert pledge.condition, pledge.slug
        for partner in pledge.partners:
            assert partner.casefold() in text, (pledge.slug, partner)
        assert not {"NCA", "Cross-Border Police", "UK police"} & set(pledge.partners)
    police = next(p for p in content.pledges if p.slug == "police-officers-to-europol")
    # issue 19: "Labour's Cross-Border Police", as the statement says, and no more
    assert "Labour's Cross-Border Police" in police.summary
    assert "Labour's Cross-Border Police" in police.detail
    for unsaid in ("existing force", "proposed", "proposes"):
        assert unsaid not in police.summary + police.detail, unsaid
    first = next(p for p in content.pledges if p.slug == "europe-security-agreement")
    assert "in government" in first.condition.casefold()


def test_claims_are_titled_attributed_and_keep_their_lead_in() -> None:
    """Issue 9, item 1: every claim is in words, attributed, with its lead-in quoted."""
    (content,) = read_content(DATA_DIR)
    claims = {c.slug: c for c in content.claims}
    belief = claims["smashing-gangs-as-important-as-climate-and-terrorism"]
    assert "climate change and terrorism" in belief.title
    assert "I believe" in belief.attribution
    assert belief.quotes[0].startswith("I believe that smashing the smuggler gangs")
    watch = "On the Prime Minister and the Home Secretary’s watch"
    for slug in (
        "smuggling-gang-profits-soaring",
        "smuggling-convictions-plummeting",
        "taxpayer-cash-seeping-away",
        "uk-security-under-threat",
    ):
        assert all(q.startswith(watch) for q in claims[slug].quotes), slug
    # issue 19: its title keeps the lead-in, as its siblings' titles do
    for slug in ("smuggling-convictions-plummeting", "smuggling-gang-profits-soaring"):
        assert claims[slug].title.endswith("on the Prime Minister's and Home Secretary's watch")


def test_line_by_line_wording_fixes() -> None:
    """Issue 9, item 6, each checked against the statement."""
    (content,) = read_content(DATA_DIR)
    pledges = {p.slug: p for p in content.pledges}
    scpo = pledges["scpo-organised-immigration-crime"]
    assert "organised immigration crime" in scpo.title
    # issue 19: the statement does not say "only"; it "says", it does not "explain"
    assert "either after a conviction or before one (by application to the High Court)" in (
        scpo.detail
    )
    assert "only" not in scpo.detail and "explains" not in scpo.detail
    (power,) = content.powers
    assert power.pledges == ("scpo-organised-immigration-crime",)
    # the change pledged is said once: in its own field, not in the detail or quotes too
    assert "highest-harm" in power.change_pledged
    assert "highest-harm" not in power.detail
    assert not any("highest-harm" in q for q in power.quotes)
    civil = pledges["strengthened-civil-orders"]
    assert civil.quotes[0].startswith("In the UK, Labour will introduce a new Serious")
    assert "strengthened civil orders" in civil.quotes[0]


def test_every_record_quotes_its_statement_verbatim() -> None:
    for content in read_content(DATA_DIR):
        records: list[Pledge | Power | Claim] = [*content.pledges, *content.powers, *content.claims]
        assert records
        for record in records:
            assert record.quotes, record.slug
            for quote in record.quotes:
                assert quote in content.statement.source_text


async def test_loading_twice_gives_the_same_rows(any_store: Store) -> None:
    await load_content(any_store, DATA_DIR)
    first = await dump(any_store)
    report = await load_content(any_store, DATA_DIR)
    assert await dump(any_store) == first
    assert (report.statements, report.pledges, report.powers) == (1, 6, 1)
    assert first["pledges"] and first["quotes"]


async def test_unchanged_content_is_skipped_when_asked(any_store: Store) -> None:
    await load_content(any_store, DATA_DIR)
    assert (await load_content(any_store, DATA_DIR, skip_if_unchanged=True)).skipped
    assert not (await load_content(any_store, DATA_DIR)).skipped


async def test_loading_never_touches_status_history(any_store: Store, content_dir: Path) -> None:
    await load_content(any_store, content_dir)
    await any_store.set_status("europol-partnership", "in-progress", note="n", changed_by="t")
    edit(content_dir / "smuggling-gangs.toml", 'title = "New partnership', 'title = "A partnership')
    await load_content(any_store, content_dir)
    pledge = await any_store.pledge("europol-partnership")
    assert pledge is not None
    assert pledge.title.startswith("A partnership")
    assert pledge.status == "in-progress"
    assert len(await any_store.status_history("europol-partnership")) == 1


BAD_EDITS = [
    (
        "Restrictions can be placed on the use of communications devices",
        "Restrictions may be placed on the use of communications devices",
        "quote not found in the statement's text",
    ),
    ('slug = "europol-partnership"', 'slug = "europe-security-agreement"', "duplicate pledge slug"),
    ("schema = 2", "schema = 2\nsurprise = true", "unknown top-level key 'surprise'"),
    ("schema = 2", "schema = 3", "'schema' must be 2"),
    ('scope = "In the UK"', 'scope = "In the UK"\ncolour = "red"', "unknown field 'colour'"),
    ('scope = "In the UK"', "scope = 7", "'scope' must be a string"),
    ('slug = "europol-partnership"', 'slug = "Europol Partnership"', "slug must be lowercase"),
    ('source = "sources/smuggling-gangs.txt"', 'source = "../../etc/passwd"', "inside the content"),
    ('source = "sources/smuggling-gangs.txt"', 'source = "sources/gone.txt"', "cannot be read"),
    ('slug = "europol-partnership"', 'slug = "europol-partnership"\n[oops', "not valid TOML"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_EDITS, ids=[m for *_, m in BAD_EDITS])
async def test_bad_content_is_rejected_and_nothing_changes(
    any_store: Store, content_dir: Path, old: str, new: str, message: str
) -> None:
    await load_content(any_store, content_dir)
    before = await dump(any_store)
    path = content_dir / "smuggling-gangs.toml"
    edit(path, old, new)
    with pytest.raises(ContentError) as caught:
        await load_content(any_store, content_dir)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert await dump(any_store) == before


async def test_a_bad_quote_is_named_with_its_record(any_store: Store, content_dir: Path) -> None:
    edit(
        content_dir / "smuggling-gangs.toml",
        '  "More UK police officers posted',
        '  "More officers',
    )
    with pytest.raises(ContentError) as caught:
        await load_content(any_store, content_dir)
    assert "pledge 'police-officers-to-europol'" in str(caught.value)
    assert "'More officers to Europol" in str(caught.value)
    assert (await any_store.counts())["pledges"] == 0


async def test_a_power_cannot_link_an_unknown_pledge(any_store: Store, content_dir: Path) -> None:
    edit(content_dir / "smuggling-gangs.toml", '["scpo-organised-immigration-crime"]', '["nope"]')
    with pytest.raises(ContentError, match="unknown pledge 'nope'"):
        await load_content(any_store, content_dir)


async def test_the_store_holds_more_than_one_statement(any_store: Store, content_dir: Path) -> None:
    second = content_dir / "second.toml"
    (content_dir / "sources" / "second.txt").write_text("We will plant trees.", "utf-8")
    second.write_text(
        'schema = 1\n[statement]\nslug = "second"\ntitle = "T"\nauthor = "A"\n'
        'source = "sources/second.txt"\nsummary = "S"\n'
        '[[pledges]]\nslug = "plant-trees"\ntitle = "Plant trees"\nsummary = "s"\n'
        'detail = "d"\nscope = "Everywhere"\nquotes = ["plant trees"]\n',
        "utf-8",
    )
    await load_content(any_store, content_dir)
    assert [s.slug for s in await any_store.statements()] == ["second", "smuggling-gangs"]
    assert [p.slug for p in await any_store.pledges(statement="second")] == ["plant-trees"]
    assert (await any_store.search("trees"))[0].slug == "plant-trees"


async def test_export_then_load_round_trips(any_store: Store, tmp_path: Path) -> None:
    await load_content(any_store, DATA_DIR)
    exported = tmp_path / "exported"
    files = await export_content(any_store, exported)
    assert [f.name for f in files] == ["smuggling-gangs.toml"]
    assert read_content(exported) == read_content(DATA_DIR)

    # loaded again into a SQLite file: from either backend, the same rows
    second = await Store.open(tmp_path / "second.db")
    try:
        await load_content(second, exported)
        again = tmp_path / "again"
        await export_content(second, again)
        copied = await dump(second, rowid=False)
    finally:
        await second.close()
    for path in sorted(exported.rglob("*")):
        if path.is_file():
            assert (again / path.relative_to(exported)).read_bytes() == path.read_bytes()
    original = await dump(any_store, rowid=False)
    assert {k: v for k, v in copied.items() if k != "meta"} == {
        k: v for k, v in original.items() if k != "meta"
    }


async def test_a_changed_source_text_is_refused(any_store: Store, content_dir: Path) -> None:
    """The pinned SHA-256: a source edited after curation cannot load unnoticed."""
    edit(content_dir / "sources" / "smuggling-gangs.txt", "plummet", "rise")
    with pytest.raises(ContentError, match="does not match its source_sha256"):
        await load_content(any_store, content_dir)
    assert (await any_store.counts())["statements"] == 0


PROVENANCE_EDITS = [
    ('date = ""', 'date = "last week"', "'date' must be YYYY-MM-DD"),
    ('url = ""', 'url = "javascript:alert(1)"', "only http:// and https:// links"),
    ('edited = "2026-12-07"', 'edited = "07/12/2026"', "'edited' must be a date"),
    ("edition = 3", "edition = 0", "'edition' must be a whole number"),
    ('source_sha256 = "495f', 'source_sha256 = "zz5f', "64 hexadecimal digits"),
]


@pytest.mark.parametrize(
    ("old", "new", "message"), PROVENANCE_EDITS, ids=[m for *_, m in PROVENANCE_EDITS]
)
def test_provenance_is_checked(content_dir: Path, old: str, new: str, message: str) -> None:
    edit(content_dir / "smuggling-gangs.toml", old, new)
    with pytest.raises(ContentError, match=message):
        read_content(content_dir)


def test_a_known_date_and_link_are_kept(content_dir: Path) -> None:
    edit(content_dir / "smuggling-gangs.toml", 'date = ""', 'date = "2023-04"')
    edit(content_dir / "smuggling-gangs.toml", 'url = ""', 'url = "https://example.org/s"')
    (content,) = read_content(content_dir)
    assert (content.statement.date, content.statement.url) == ("2023-04", "https://example.org/s")


async def test_schema_1_files_still_load(any_store: Store, content_dir: Path) -> None:
    """Files written before issue 9: `author` is the publisher; `actors` is dropped."""
    (content_dir / "sources" / "old.txt").write_text("We will plant trees.", "utf-8")
    (content_dir / "old.toml").write_text(
        'schema = 1\n[statement]\nslug = "old"\ntitle = "T"\nauthor = "Tree Party"\n'
        'source = "sources/old.txt"\nsummary = "S"\n'
        '[[pledges]]\nslug = "plant-trees"\ntitle = "Plant trees"\nsummary = "s"\n'
        'detail = "d"\nscope = "Everywhere"\nactors = ["Foresters"]\nquotes = ["plant trees"]\n'
        '[[claims]]\nslug = "trees-good"\nsummary = "The statement says trees."\n'
        'quotes = ["trees"]\n',
        "utf-8",
    )
    await load_content(any_store, content_dir)
    (old,) = [s for s in await any_store.statements() if s.slug == "old"]
    assert old.publisher == "Tree Party"
    assert old.source_sha256 == hashlib.sha256(b"We will plant trees.").hexdigest()
    pledge = await any_store.pledge("plant-trees")
    assert pledge is not None and pledge.partners == ()
    assert [c.title for c in await any_store.claims(statement="old")] == [
        "The statement says trees."
    ]
