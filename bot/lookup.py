"""Finding a pledge or power from what a member typed: autocomplete and name resolution.

Kept in memory (a few bytes per record) so autocomplete answers in microseconds even
with thousands of pledges, far inside Discord's 3-second window.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.cards import AUTOCOMPLETE_CHOICES, CHOICE_NAME_LIMIT, shorten
from bot.errors import UserError

_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Entry:
    slug: str
    title: str
    folded: str
    words: tuple[str, ...]


class Catalog:
    """The slugs and titles of one kind of record, in display order."""

    def __init__(self, kind: str, records: Iterable[tuple[str, str]]) -> None:
        self.kind = kind
        self._entries = [
            Entry(
                slug, title, title.casefold(), tuple(_WORDS.findall(f"{slug} {title}".casefold()))
            )
            for slug, title in records
        ]
        self._by_slug = {e.slug: e for e in self._entries}

    def __len__(self) -> int:
        return len(self._entries)

    def title_of(self, slug: str) -> str | None:
        entry = self._by_slug.get(slug)
        return entry.title if entry else None

    def matches(self, text: str, limit: int = AUTOCOMPLETE_CHOICES) -> list[Entry]:
        query = " ".join(text.casefold().split())
        if not query:
            return self._entries[:limit]
        words = _WORDS.findall(query)
        scored = []
        for position, entry in enumerate(self._entries):
            score = _score(entry, query, words)
            if score is not None:
                scored.append((score, position, entry))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [entry for _, _, entry in scored[:limit]]

    def choices(self, text: str) -> list[tuple[str, str]]:
        """Autocomplete choices as (name, value): at most 25, each at most 100 chars."""
        return [
            (shorten(entry.title, CHOICE_NAME_LIMIT), entry.slug)
            for entry in self.matches(text[:200])
        ]

    def resolve(self, text: str) -> str:
        """The slug meant by `text`, or a UserError naming the closest matches."""
        query = " ".join(text.split())
        if query in self._by_slug:
            return query
        folded = query.casefold()
        exact = [e for e in self._entries if e.slug == folded or e.folded == folded]
        if len(exact) == 1:
            return exact[0].slug
        candidates = self.matches(query, limit=6) if query else []
        if len(candidates) == 1:
            return candidates[0].slug
        shown = shorten(query, 80) or "(nothing)"
        if candidates:
            raise UserError(
                f"“{shown}” matches more than one {self.kind}. Did you mean:\n"
                + _suggestion_lines(candidates[:5])
            )
        close = difflib.get_close_matches(
            folded, [e.slug for e in self._entries] + [e.folded for e in self._entries], n=5
        )
        suggestions = [e for e in self._entries if e.slug in close or e.folded in close][:5]
        hint = (
            "Closest matches:\n" + _suggestion_lines(suggestions)
            if suggestions
            else f"Pick one from the list as you type, or use /{self.kind} list."
        )
        raise UserError(f"No {self.kind} called “{shown}”. {hint}")


def _score(entry: Entry, query: str, words: list[str]) -> int | None:
    if entry.slug == query or entry.folded == query:
        return 0
    if entry.slug.startswith(query):
        return 1
    if entry.folded.startswith(query):
        return 2
    if words and all(any(w.startswith(q) for w in entry.words) for q in words):
        return 3
    if query in entry.slug or query in entry.folded:
        return 4
    return None


def _suggestion_lines(entries: Iterable[Entry]) -> str:
    return "\n".join(f"• {shorten(e.title, 90)} (`{e.slug}`)" for e in entries)
