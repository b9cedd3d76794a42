"""The editor's tools for the next statement: a skeleton to curate, and its coverage.

`new_skeleton` copies a source text beside the content and writes a content file that
lists every sentence as a candidate quote; `coverage` shows, sentence by sentence, which
records quote it, so a sentence nobody quotes (a claim left out) stands out, and within a
quoted sentence, each clause nobody quotes (a promise left out of a longer sentence).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bot.errors import OperatorError
from bot.models import StatementContent
from bot.pledges.cards import counted
from bot.pledges.content import FORMAT_VERSION, SINGULAR, source_digest

_BOUNDARY = re.compile(r"(?<=[.!?…])[\"”’)\]]*\s+")
_LIST_MARKER = re.compile(r"\s*(?:\d{1,3}[.)]|[-•*])\s+")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# Where one clause ends and the next begins: see `clauses`.
_CLAUSE_BREAK = re.compile(r"[,;:](?=\s)|\s[-–—](?=\s)|—|\s(?=and\s)")


@dataclass(frozen=True)
class Sentence:
    """A sentence of a source text (or a clause of one) and where it sits (a list item's
    number left out)."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class SentenceCoverage:
    sentence: Sentence
    quoted_by: tuple[str, ...]  # "pledge europol-partnership", "claim ..."
    # clauses of a quoted sentence that no record quotes (an unquoted sentence is one gap)
    unquoted_clauses: tuple[Sentence, ...] = ()


def sentences(text: str) -> list[Sentence]:
    """Lines, then sentences within a line; a break needs a capital (or quote) after it."""
    found: list[Sentence] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        marker = _LIST_MARKER.match(body)
        start = marker.end() if marker else 0
        for boundary in _BOUNDARY.finditer(body, start):
            following = body[boundary.end() : boundary.end() + 1]
            if following.islower():
                continue  # "e.g. the": not the end of a sentence
            _add(found, offset, body, start, boundary.end())
            start = boundary.end()
        _add(found, offset, body, start, len(body))
        offset += len(line)
    return found


def _add(found: list[Sentence], offset: int, body: str, start: int, end: int) -> None:
    piece = body[start:end]
    stripped = piece.strip()
    if stripped:
        begin = start + (len(piece) - len(piece.lstrip()))
        found.append(Sentence(offset + begin, offset + begin + len(stripped), stripped))


def clauses(sentence: Sentence) -> list[Sentence]:
    """The clauses of a sentence, each with its place in the source text.

    A clause ends at a comma, semicolon or colon followed by a space, at a dash with a
    space after it (" - ", " – ", " — ") or an em dash, and before the word "and". Hyphens
    inside words ("gang-leaders") and commas inside numbers ("1,000") do not end one.
    "And" is a break because a statement often joins two promises in one sentence ("a plan
    ... to support better cross border police operations and stronger powers for our
    enforcement agencies in the UK"): a record quoting the first half must not hide that
    nobody quotes the second. It also splits pairs such as "the ownership and use of
    vehicles", which shows only when a quote stops right at that "and": worth a look too.
    """
    found: list[Sentence] = []
    start = 0
    text = sentence.text
    for boundary in _CLAUSE_BREAK.finditer(text):
        _add(found, sentence.start, text, start, boundary.start())
        start = boundary.end()
    _add(found, sentence.start, text, start, len(text))
    return [clause for clause in found if any(c.isalnum() for c in clause.text)]


def coverage(content: StatementContent) -> list[SentenceCoverage]:
    """Each sentence of the statement, the records whose quotes overlap it, and the
    clauses of a quoted sentence that no quote overlaps."""
    text = content.statement.source_text
    spans: list[tuple[int, int, str]] = []
    for kind, records in (
        ("pledges", content.pledges),
        ("powers", content.powers),
        ("claims", content.claims),
    ):
        for record in records:
            for quote in record.quotes:
                at = text.find(quote)
                while at != -1 and quote:
                    spans.append((at, at + len(quote), f"{SINGULAR[kind]} {record.slug}"))
                    at = text.find(quote, at + 1)

    def quoted_by(piece: Sentence) -> tuple[str, ...]:
        names = (name for start, end, name in spans if start < piece.end and end > piece.start)
        return tuple(dict.fromkeys(names))

    result = []
    for sentence in sentences(text):
        names = quoted_by(sentence)
        gaps = tuple(c for c in clauses(sentence) if not quoted_by(c)) if names else ()
        result.append(SentenceCoverage(sentence, names, gaps))
    return result


def coverage_report(content: StatementContent) -> list[str]:
    """Lines for the operator: every sentence, who quotes it, and a flag where nobody
    quotes a sentence or a clause of one."""
    rows = coverage(content)
    unquoted = sum(1 for row in rows if not row.quoted_by)
    gaps = sum(len(row.unquoted_clauses) for row in rows)
    lines = [
        f"statement {content.statement.slug}: {len(rows)} sentences, "
        f"{len(rows) - unquoted} quoted, {unquoted} quoted by no record; "
        f"{counted(gaps, 'clause')} of quoted sentences quoted by no record"
    ]
    for number, row in enumerate(rows, 1):
        lines.append(f"{number:>3}. {row.sentence.text}")
        if row.quoted_by:
            lines.append(f"     quoted by: {', '.join(row.quoted_by)}")
        else:
            lines.append("     NOT QUOTED by any record: a pledge, power or claim left out?")
        lines.extend(
            f"     clause NOT QUOTED by any record: “{clause.text}”"
            for clause in row.unquoted_clauses
        )
    return lines


def new_skeleton(source: Path, slug: str, directory: Path, *, today: date) -> tuple[Path, Path]:
    """Copy `source` to DIRECTORY/sources/SLUG.txt and write DIRECTORY/SLUG.toml to curate.

    Refuses to overwrite anything. The skeleton's required fields are left empty, so
    `db load` refuses it, naming each, until an editor has curated it.
    """
    if not _SLUG.fullmatch(slug):
        raise OperatorError(f"slug {slug!r}: use lowercase letters, digits and hyphens")
    try:
        raw = source.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise OperatorError(f"cannot read the source {source}: {exc}") from None
    except UnicodeDecodeError:
        raise OperatorError(f"the source {source} is not UTF-8 text") from None
    if not text.strip():
        raise OperatorError(f"the source {source} is empty")
    content_file = directory / f"{slug}.toml"
    source_copy = directory / "sources" / f"{slug}.txt"
    for existing in (content_file, source_copy):
        if existing.exists():
            raise OperatorError(f"{existing} already exists; choose another slug or remove it")
    source_copy.parent.mkdir(parents=True, exist_ok=True)
    source_copy.write_bytes(raw)
    content_file.write_text(skeleton_text(slug, text, today), encoding="utf-8")
    return content_file, source_copy


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are all valid TOML)."""
    return json.dumps(text, ensure_ascii=False)


def skeleton_text(slug: str, source_text: str, today: date) -> str:
    candidates = [f"#   {_toml_string(s.text)}," for s in sentences(source_text)]
    return "\n".join(
        [
            f"# Content for the statement {slug!r}, written by `pledgebot content new`.",
            "# The source text is the only authority: summaries in our own words, quotes",
            "# verbatim, and every claim attributed to the statement, never stated as fact.",
            "# Fill in the empty fields (`db load` names each one until you have), then",
            f"#   pledgebot content coverage {slug}   # sentences that no record quotes yet",
            "#   pledgebot db load                 # verifies every quote; all or nothing",
            f"schema = {FORMAT_VERSION}",
            "",
            "[statement]",
            f"slug = {_toml_string(slug)}",
            'title = ""  # what it is, e.g. "Labour statement on criminal smuggling gangs"',
            'speaker = ""  # as the text gives it, e.g. "An unnamed speaker for Labour"',
            'publisher = ""  # who issued it, if the text or its source says; else leave empty',
            'date = ""  # YYYY-MM-DD, YYYY-MM or YYYY; leave empty if unknown, never guess',
            'url = ""  # an http(s) link to the original; leave empty if unknown',
            "edition = 1  # raise by one with each change to this file",
            f'edited = "{today.isoformat()}"  # the date of that change',
            f'source = "sources/{slug}.txt"',
            f'source_sha256 = "{source_digest(source_text)}"  # db load refuses a changed text',
            'summary = ""  # two or three sentences in our own words',
            "",
            "# One table per record. Every record needs at least one verbatim quote.",
            "#",
            "# [[pledges]]",
            '# slug = "short-name"',
            '# title = "What is pledged, in a few words"',
            '# summary = "One sentence, our words."',
            '# detail = """Attributed: The statement says ..."""',
            '# scope = "In the UK"',
            '# pledged_by = "Labour"  # the party, as the statement words it',
            '# condition = "In government"  # the condition the statement gives, if any',
            "# partners = []  # partners the statement names; never who 'delivers' it",
            "# quotes = []",
            "#",
            "# [[powers]]",
            '# slug = "short-name"',
            '# name = "The power\'s name"',
            '# abbreviation = ""',
            '# summary = "As the statement describes it, ..."',
            '# detail = """..."""',
            "# who_applies = []  # as the statement says",
            "# routes = []",
            "# restrictions = []",
            '# history = ""',
            '# change_pledged = ""',
            "# pledges = []  # only pledges the statement ties to it",
            "# quotes = []",
            "#",
            "# [[claims]]",
            '# slug = "short-name"',
            '# title = "The statement says ..."',
            '# attribution = "The statement\'s speaker, for Labour"',
            '# summary = "The statement says ..."',
            "# quotes = []  # keep the lead-in a claim depends on",
            "",
            "# Candidate quotes: every sentence of the source, verbatim and in order.",
            "# Copy whole sentences or verbatim parts of them into a record's quotes.",
            *candidates,
            "",
        ]
    )


def statement_named(contents: Sequence[StatementContent], slug: str) -> StatementContent:
    for content in contents:
        if content.statement.slug == slug:
            return content
    known = ", ".join(c.statement.slug for c in contents) or "none"
    raise OperatorError(f"no statement {slug!r} in the content (statements: {known})")
