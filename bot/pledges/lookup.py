"""Finding a record from what a member typed: autocomplete and name resolution.

Kept in memory (a few bytes per record) so autocomplete answers in microseconds even
with thousands of pledges, far inside Discord's 3-second window.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate, islice

from bot.errors import UserError
from bot.pledges.cards import AUTOCOMPLETE_CHOICES, CHOICE_NAME_LIMIT, shorten

_WORDS = re.compile(r"\w+")
SORT_AT_MOST = 2_000  # a word's records this few are sorted; more are walked in order


@dataclass(frozen=True)
class Entry:
    slug: str
    title: str
    folded: str
    words: tuple[str, ...]


class Catalog:
    """The slugs and titles of one kind of record, in display order.

    Autocomplete runs on every keystroke, so matching uses sorted indexes (bisect) and
    stops once it has enough, rather than scoring every record: with 10,000 pledges an
    answer takes microseconds, not milliseconds.
    """

    def __init__(
        self, kind: str, records: Iterable[tuple[str, str]], *, listed_by: str = ""
    ) -> None:
        self.kind = kind
        self.listed_by = listed_by or f"/{kind} list"  # where a member sees them all
        self._entries = [
            Entry(
                slug, title, title.casefold(), tuple(_WORDS.findall(f"{slug} {title}".casefold()))
            )
            for slug, title in records
        ]
        self._by_slug = {e.slug: e for e in self._entries}
        self._exact: dict[str, int] = {}
        for position, entry in reversed(list(enumerate(self._entries))):
            self._exact[entry.folded] = self._exact[entry.slug] = position
        self._slugs = _Index((e.slug, i) for i, e in enumerate(self._entries))
        self._titles = _Index((e.folded, i) for i, e in enumerate(self._entries))
        self._words = _Index({(w, i) for i, e in enumerate(self._entries) for w in e.words})
        lines = [f"{e.slug} {e.folded}".replace("\n", " ") for e in self._entries]
        self._haystack = "\n".join(lines)
        self._line_starts = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
        # Which records contain each three-character piece: a substring of three or more
        # characters is looked for only in the records holding its rarest piece.
        self._trigrams: dict[str, array[int]] = {}
        for position, line in enumerate(lines):
            for gram in {line[i : i + 3] for i in range(len(line) - 2)}:
                found = self._trigrams.get(gram)
                if found is None:
                    found = self._trigrams[gram] = array("I")
                found.append(position)

    def __len__(self) -> int:
        return len(self._entries)

    def title_of(self, slug: str) -> str | None:
        entry = self._by_slug.get(slug)
        return entry.title if entry else None

    def matches(self, text: str, limit: int = AUTOCOMPLETE_CHOICES) -> list[Entry]:
        """Best matches first: exact, slug prefix, title prefix, word prefixes, substring.

        Within each kind of match, records keep their display order.
        """
        query = " ".join(text.casefold().split())
        if not query:
            return self._entries[:limit]
        words = _WORDS.findall(query)
        found: dict[int, None] = {}  # ordered set of positions

        def take(positions: Iterable[int]) -> bool:
            for position in positions:
                found.setdefault(position)
                if len(found) >= limit:
                    return True
            return False

        exact = self._exact.get(query)
        if take([] if exact is None else [exact]):
            return self._pick(found)
        slug_prefix = self._first(self._slugs, query, lambda e: e.slug.startswith(query))
        if take(slug_prefix):
            return self._pick(found)
        title_prefix = self._first(self._titles, query, lambda e: e.folded.startswith(query))
        if take(title_prefix) or (words and take(self._word_prefix_matches(words, limit))):
            return self._pick(found)
        take(self._substring_matches(query, limit))
        return self._pick(found)

    def _first(
        self,
        index: _Index,
        prefix: str,
        test: Callable[[Entry], bool],
        limit: int = AUTOCOMPLETE_CHOICES,
    ) -> list[int]:
        """The first `limit` positions of the records whose text starts with `prefix`, in
        display order.

        Up to `SORT_AT_MOST` of them are sorted (in C: tens of microseconds). A wider range
        (a letter or two typed) is cheaper to find by walking the records in order and
        stopping at `limit`: with that many matching, the walk meets `limit` of them early.
        """
        low, high = index.span(prefix)
        if high - low <= SORT_AT_MOST:
            return sorted(index.positions[low:high])[:limit]
        return list(islice((p for p, e in enumerate(self._entries) if test(e)), limit))

    def _pick(self, positions: Iterable[int]) -> list[Entry]:
        return [self._entries[p] for p in positions]

    def _word_prefix_matches(self, words: list[str], limit: int) -> list[int]:
        """Records where every typed word starts some word of the slug or title.

        One typed word that starts a single word of the index ("bord" of "border") has
        its positions in display order already. Otherwise the typed words matching at
        most `SORT_AT_MOST` records each are intersected as sets (in C). A common word
        ("co", "gen") is never built into a set of nearly every record but tested on each
        candidate, in display order, until `limit`.
        When every typed word is common, the records are walked in display order.
        """
        index = self._words
        spans = sorted((index.span(w), w) for w in set(words))
        spans.sort(key=lambda span: span[0][1] - span[0][0])
        rare = [(low, high) for (low, high), _ in spans if high - low <= SORT_AT_MOST]
        common = [word for (low, high), word in spans if high - low > SORT_AT_MOST]
        candidates: Iterable[int]
        if len(rare) == 1 and index.one_text(*rare[0]):
            # One word ("border" typed as "bord"): its positions are already in order.
            candidates = index.positions[slice(*rare[0])]
        elif rare:
            found = set(index.positions[slice(*rare[0])])
            for low, high in rare[1:]:
                found.intersection_update(index.positions[low:high])
            candidates = sorted(found)
        else:
            candidates = range(len(self._entries))
        matching = (p for p in candidates if not common or self._starts_words(p, common))
        return list(islice(matching, limit))

    def _starts_words(self, position: int, typed: list[str]) -> bool:
        words = self._entries[position].words
        return all(any(w.startswith(t) for w in words) for t in typed)

    def _substring_matches(self, query: str, limit: int) -> list[int]:
        """Records whose slug and title contain `query`, in display order."""
        if len(query) < 3:
            return self._scanned_matches(query, limit)
        postings = []
        for i in range(len(query) - 2):
            found = self._trigrams.get(query[i : i + 3])
            if found is None:
                return []
            postings.append(found)
        rarest = min(postings, key=len)
        starts, haystack, last = self._line_starts, self._haystack, len(self._line_starts) - 1
        matched = (
            p
            for p in rarest
            if haystack.find(query, starts[p], starts[p + 1] - 1 if p < last else None) != -1
        )
        return list(islice(matched, limit))

    def _scanned_matches(self, query: str, limit: int) -> list[int]:
        matched: list[int] = []
        start = self._haystack.find(query)
        while start != -1 and len(matched) < limit:
            line = bisect.bisect_right(self._line_starts, start) - 1
            matched.append(line)
            next_line = self._line_starts[line + 1] if line + 1 < len(self._line_starts) else None
            if next_line is None:
                break
            start = self._haystack.find(query, next_line)
        return matched

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
        import difflib  # only for a suggestion: not loaded at start-up

        close = difflib.get_close_matches(
            folded, [e.slug for e in self._entries] + [e.folded for e in self._entries], n=5
        )
        suggestions = [e for e in self._entries if e.slug in close or e.folded in close][:5]
        hint = (
            "Closest matches:\n" + _suggestion_lines(suggestions)
            if suggestions
            else f"Pick one from the list as you type, or use {self.listed_by}."
        )
        raise UserError(f"No {self.kind} called “{shown}”. {hint}")


class _Index:
    """(text, record position) pairs sorted by text, kept as two parallel lists: a prefix
    is found by bisecting the texts, and its positions are sliced, sorted or made a set
    in C, with no tuple unpacked per row."""

    def __init__(self, rows: Iterable[tuple[str, int]]) -> None:
        ordered = sorted(rows)
        self.texts = [text for text, _ in ordered]
        self.positions = array("I", (position for _, position in ordered))

    def one_text(self, low: int, high: int) -> bool:
        """Whether the rows from `low` to `high` share one text, so their positions are
        in ascending order (rows sort by text, then position)."""
        return high > low and self.texts[low] == self.texts[high - 1]

    def span(self, prefix: str) -> tuple[int, int]:
        """Where the rows whose text starts with `prefix` lie."""
        low = bisect.bisect_left(self.texts, prefix)
        return low, bisect.bisect_left(self.texts, prefix + "\U0010ffff", low)


def _suggestion_lines(entries: Iterable[Entry]) -> str:
    return "\n".join(f"• {shorten(e.title, 90)} (`{e.slug}`)" for e in entries)
