"""Curated content: read `data/*.toml`, verify every quote, load into the store, export.

A content file holds one statement and the records we curated from it. Everything is
validated before anything is written, so a bad file changes nothing.

Schema 2 (issue 9) gave statements their provenance (speaker, publisher, a pinned SHA-256
of the source, the content's edition and date), pledges who pledged them and partners
named, and claims a title and attribution. Schema 1 files still load: `author` is read
as the publisher and `actors` ("who delivers it", which statements rarely say) is dropped.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any

from bot.models import Claim, Pledge, Power, Statement, StatementContent
from bot.pledges.ratings import link_problem
from bot.store import CONTENT_FINGERPRINT_KEY as FINGERPRINT_KEY
from bot.store import Store, utc_now

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# When this database last loaded content: not when the content itself changed (that is
# each statement's `edition` and `edited`).
LOADED_AT_KEY = "content_updated_at"

# Field order here is the order `export` writes. `True` marks a required field.
_STR, _LIST, _INT = str, list, int
RECORD_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "statement": {
        "slug": (_STR, True),
        "title": (_STR, True),
        "speaker": (_STR, False),
        "publisher": (_STR, False),  # empty when the text does not say, like the date
        "date": (_STR, False),
        "url": (_STR, False),
        "edition": (_INT, False),
        "edited": (_STR, False),
        "source": (_STR, True),
        "source_sha256": (_STR, True),
        "summary": (_STR, True),
    },
    "pledges": {
        "slug": (_STR, True),
        "title": (_STR, True),
        "summary": (_STR, True),
        "detail": (_STR, True),
        "scope": (_STR, True),
        "pledged_by": (_STR, False),
        "condition": (_STR, False),
        "partners": (_LIST, False),
        "quotes": (_LIST, True),
    },
    "powers": {
        "slug": (_STR, True),
        "name": (_STR, True),
        "abbreviation": (_STR, False),
        "summary": (_STR, True),
        "detail": (_STR, True),
        "who_applies": (_LIST, True),
        "routes": (_LIST, True),
        "restrictions": (_LIST, True),
        "history": (_STR, True),
        "change_pledged": (_STR, True),
        "pledges": (_LIST, False),
        "quotes": (_LIST, True),
    },
    "claims": {
        "slug": (_STR, True),
        "title": (_STR, True),
        "attribution": (_STR, False),
        "summary": (_STR, True),
        "quotes": (_LIST, True),
    },
}
# Fields schema 1 files lack; `_upgrade_schema_1` fills them.
ADDED_IN_SCHEMA_2 = {"statement": {"source_sha256"}, "claims": {"title"}}
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SINGULAR = {"pledges": "pledge", "powers": "power", "claims": "claim"}


class ContentError(Exception):
    """Every problem found in the content files, each naming file, record and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("content not loaded:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class LoadReport:
    files: tuple[Path, ...]
    statements: int
    pledges: int
    powers: int
    claims: int
    quotes: int
    skipped: bool = False


def content_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.toml") if p.is_file())


def fingerprint(files: Iterable[Path], contents: Iterable[StatementContent]) -> str:
    """A hash of what would be loaded, so an unchanged content set is not reloaded."""
    digest = hashlib.sha256(f"format{FORMAT_VERSION}".encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for content in contents:
        digest.update(content.statement.source_text.encode())
    return digest.hexdigest()


def read_content(directory: Path) -> list[StatementContent]:
    """Parse and validate every content file in `directory`, or raise ContentError."""
    if not directory.is_dir():
        raise ContentError([f"{directory}: content directory not found"])
    files = content_files(directory)
    if not files:
        raise ContentError([f"{directory}: no *.toml content files"])
    problems: list[str] = []
    loaded = [(path, c) for path in files if (c := _read_file(path, problems)) is not None]
    _check_unique_slugs(loaded, problems)
    if problems:
        raise ContentError(problems)
    return [content for _, content in loaded]


async def load_content(
    store: Store, directory: Path, *, skip_if_unchanged: bool = False
) -> LoadReport:
    """Validate then load all content in one transaction; idempotent, upserts by slug."""
    contents = read_content(directory)
    files = tuple(content_files(directory))
    known_pledges = {p.slug for p in await store.pledges()}
    problems = _check_power_links(files, contents, known_pledges)
    if problems:
        raise ContentError(problems)
    new_print = fingerprint(files, contents)
    unchanged = await store.get_meta(FINGERPRINT_KEY) == new_print
    skipped = skip_if_unchanged and unchanged
    if not skipped:
        meta = {} if unchanged else {FINGERPRINT_KEY: new_print, LOADED_AT_KEY: utc_now()}
        await store.replace_content(contents, meta=meta)
    return LoadReport(
        files=files,
        statements=len(contents),
        pledges=sum(len(c.pledges) for c in contents),
        powers=sum(len(c.powers) for c in contents),
        claims=sum(len(c.claims) for c in contents),
        quotes=sum(len(r.quotes) for c in contents for _, rs in _records_by_kind(c) for r in rs),
        skipped=skipped,
    )


async def export_content(store: Store, directory: Path) -> list[Path]:
    """Write each statement as a content file (plus its source) that `load` reads back."""
    import tomli_w  # only `pledgebot db export` writes TOML: not loaded by a running bot

    written = []
    for statement in await store.statements():
        content = await store.statement_content(statement.slug)
        assert content is not None
        source = directory / content.source_path
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(content.statement.source_text, encoding="utf-8")
        path = directory / f"{statement.slug}.toml"
        path.write_text(tomli_w.dumps(_to_document(content), multiline_strings=True), "utf-8")
        written.append(path)
    return written


def verify_source(statement: Statement) -> str | None:
    """A problem if the stored source text no longer has the SHA-256 its record pins."""
    digest = source_digest(statement.source_text)
    if digest == statement.source_sha256:
        return None
    pinned = statement.source_sha256 or "(none recorded)"
    return f"statement {statement.slug!r}: source text SHA-256 is {digest}, recorded {pinned}"


def verify_quotes(content: StatementContent) -> list[str]:
    """Quotes that are not verbatim in the statement's source text."""
    text = content.statement.source_text
    return [
        f"{SINGULAR[kind]} {record.slug!r}: quote not found in the statement's text: {q!r}"
        for kind, records in _records_by_kind(content)
        for record in records
        for q in record.quotes
        if q not in text
    ]


def _records_by_kind(
    content: StatementContent,
) -> list[tuple[str, Sequence[Pledge | Power | Claim]]]:
    return [("pledges", content.pledges), ("powers", content.powers), ("claims", content.claims)]


def _read_file(path: Path, problems: list[str]) -> StatementContent | None:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
        return None
    found: list[str] = []
    content = _parse_document(path, document, found)
    if content is not None:
        found.extend(verify_quotes(content))
    problems.extend(f"{path}: {p}" for p in found)
    return None if found else content


def _parse_document(
    path: Path, document: Mapping[str, Any], problems: list[str]
) -> StatementContent | None:
    schema = document.get("schema")
    if schema not in READABLE_VERSIONS:
        problems.append(f"'schema' must be {FORMAT_VERSION}")
    elif schema == 1:
        document = _upgrade_schema_1(document)
    for key in document.keys() - {"schema", *RECORD_FIELDS}:
        problems.append(f"unknown top-level key {key!r}")
    raw_statement = document.get("statement")
    if not isinstance(raw_statement, dict):
        problems.append("missing [statement] table")
        return None
    older = schema == 1
    statement_fields = _fields("statement", "statement", raw_statement, problems, older)
    _check_provenance(statement_fields, problems)
    records: dict[str, list[dict[str, Any]]] = {}
    for kind in SINGULAR:
        raw = document.get(kind, [])
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            problems.append(f"{kind!r} must be an array of tables ([[{kind}]])")
            continue
        records[kind] = []
        for index, record in enumerate(raw):
            label = f"{SINGULAR[kind]} {record.get('slug', f'#{index + 1}')!r}"
            records[kind].append(_fields(kind, label, record, problems, older))
    if problems:
        return None
    source_path = statement_fields["source"]
    source = _read_source(path, source_path, problems)
    if source is None:
        return None
    source_text, digest = source
    pinned = statement_fields["source_sha256"] or digest  # schema 1 pinned nothing
    if pinned.lower() != digest:
        problems.append(
            f"statement source {source_path!r} does not match its source_sha256: the text "
            f"changed since it was curated (its SHA-256 is now {digest}). Re-check every "
            "quote against it, then update source_sha256."
        )
        return None
    statement_slug = statement_fields["slug"]
    statement = Statement(
        slug=statement_slug,
        title=statement_fields["title"],
        publisher=statement_fields["publisher"],
        date=statement_fields["date"],
        url=statement_fields["url"],
        summary=statement_fields["summary"],
        source_text=source_text,
        speaker=statement_fields["speaker"],
        source_sha256=digest,
        edition=statement_fields["edition"],
        edited=statement_fields["edited"],
    )
    return StatementContent(
        statement=statement,
        source_path=source_path,
        pledges=tuple(_build(Pledge, statement_slug, r) for r in records["pledges"]),
        powers=tuple(_build(Power, statement_slug, r) for r in records["powers"]),
        claims=tuple(_build(Claim, statement_slug, r) for r in records["claims"]),
    )


def _upgrade_schema_1(document: Mapping[str, Any]) -> dict[str, Any]:
    """A schema 1 document in schema 2's terms (its source digest is taken on reading)."""
    upgraded = dict(document)
    statement = document.get("statement")
    if isinstance(statement, dict):
        statement = dict(statement)
        if "author" in statement and "publisher" not in statement:
            statement["publisher"] = statement.pop("author")
        upgraded["statement"] = statement
    pledges = document.get("pledges")
    if isinstance(pledges, list):
        upgraded["pledges"] = [
            {k: v for k, v in p.items() if k != "actors"} if isinstance(p, dict) else p
            for p in pledges
        ]
    claims = document.get("claims")
    if isinstance(claims, list):
        upgraded["claims"] = [
            {"title": c.get("summary", ""), **c} if isinstance(c, dict) else c for c in claims
        ]
    return upgraded


def _fields(
    kind: str, label: str, record: Mapping[str, Any], problems: list[str], older: bool = False
) -> dict[str, Any]:
    """Check one record's keys and types against RECORD_FIELDS (`older`: schema 1)."""
    spec = RECORD_FIELDS[kind]
    added = ADDED_IN_SCHEMA_2.get(kind, set()) if older else set()
    for key in record.keys() - spec.keys():
        problems.append(f"{label}: unknown field {key!r}")
    values: dict[str, Any] = {}
    for key, (expected, required) in spec.items():
        if key not in record:
            if required and key not in added:
                problems.append(f"{label}: missing field {key!r}")
            else:
                values[key] = {list: (), int: 1}.get(expected, "")
            continue
        value = record[key]
        if expected is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{label}: {key!r} must be a whole number, 1 or more")
                continue
        elif expected is list:
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                problems.append(f"{label}: {key!r} must be a list of non-empty strings")
                continue
            value = tuple(value)
        elif not isinstance(value, str):
            problems.append(f"{label}: {key!r} must be a string")
            continue
        elif required and not value.strip():
            problems.append(f"{label}: {key!r} must not be empty")
            continue
        values[key] = value
    if kind != "statement" and "quotes" in spec and not values.get("quotes", ("x",)):
        problems.append(f"{label}: needs at least one verbatim quote")
    if "slug" in values and not _is_slug(values["slug"]):
        problems.append(f"{label}: slug must be lowercase letters, digits and hyphens")
    return values


def _is_slug(text: str) -> bool:
    return _SLUG.fullmatch(text) is not None


def _check_provenance(fields: Mapping[str, Any], problems: list[str]) -> None:
    """Dates as the editors know them (never filled in), a link a reader can open."""
    when = fields.get("date", "")
    if when and not _DATE.fullmatch(when):
        problems.append(
            "statement: 'date' must be YYYY-MM-DD, YYYY-MM or YYYY (leave it empty if unknown)"
        )
    edited = fields.get("edited", "")
    if edited:
        try:
            date.fromisoformat(edited)
        except ValueError:
            problems.append("statement: 'edited' must be a date, YYYY-MM-DD")
    url = fields.get("url", "")
    if url and (problem := link_problem(url)):
        problems.append(f"statement: 'url' {url!r} refused: {problem}")
    digest = fields.get("source_sha256", "")
    if digest and not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        problems.append("statement: 'source_sha256' must be 64 hexadecimal digits")


def _build(
    record_type: Callable[..., Pledge | Power | Claim], statement_slug: str, values: dict[str, Any]
) -> Any:
    return record_type(statement_slug=statement_slug, **values)


def source_digest(text: str) -> str:
    """The SHA-256 of a source text as stored: its UTF-8 bytes, exactly as in the file."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_source(path: Path, source: str, problems: list[str]) -> tuple[str, str] | None:
    """The source text, byte for byte (no newline translation), and its SHA-256."""
    relative = PurePosixPath(source)
    if relative.is_absolute() or ".." in relative.parts:
        problems.append(f"statement source {source!r} must be a path inside the content directory")
        return None
    source_file = path.parent / relative
    try:
        raw = source_file.read_bytes()
        return raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"statement source {source!r} cannot be read: {exc}")
        return None


def _check_unique_slugs(
    loaded: Sequence[tuple[Path, StatementContent]], problems: list[str]
) -> None:
    seen: dict[tuple[str, str], str] = {}
    for path, content in loaded:
        origin = str(path)
        keyed = [("statement", content.statement.slug)] + [
            (SINGULAR[kind], r.slug) for kind, records in _records_by_kind(content) for r in records
        ]
        for key in keyed:
            if key in seen:
                problems.append(
                    f"{origin}: duplicate {key[0]} slug {key[1]!r} (also in {seen[key]})"
                )
            seen.setdefault(key, origin)


def _check_power_links(
    files: Sequence[Path], contents: Sequence[StatementContent], known: set[str]
) -> list[str]:
    available = known | {p.slug for c in contents for p in c.pledges}
    return [
        f"power {power.slug!r}: links to unknown pledge {slug!r}"
        for c in contents
        for power in c.powers
        for slug in power.pledges
        if slug not in available
    ]


def _to_document(content: StatementContent) -> dict[str, Any]:
    s = content.statement
    statement = {
        key: content.source_path if key == "source" else getattr(s, key)
        for key in RECORD_FIELDS["statement"]
    }
    document: dict[str, Any] = {"schema": FORMAT_VERSION, "statement": statement}
    for kind, records in _records_by_kind(content):
        if records:
            document[kind] = [
                {key: _plain(getattr(r, key)) for key in RECORD_FIELDS[kind]} for r in records
            ]
    return document


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
