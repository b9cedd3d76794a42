"""A schedule's rule (`Recurrence`) and when its slots fall.

A *slot* is a local wall-clock date and minute in the schedule's IANA zone (a naive
`datetime`), named by its *local key* ``"YYYY-MM-DDTHH:MM"`` (`local_key`). The store never
keys on local time: a delivery is claimed per (schedule, UTC instant), under the slot's
*UTC key* ``"YYYY-MM-DDTHH:MMZ"`` (`bot.models.utc_slot`), so slots compare correctly when
a schedule's zone changes. What makes posting exactly-once here is that each slot maps to
one instant (`bot.briefings.zones`, across clock changes) and that a schedule's instants
strictly increase:

* If a gap makes a slot map to an instant no later than an earlier slot's (a cron with
  01:30 and 02:30 on a spring day; Pacific/Apia skipping 2011-12-30), the earlier slot
  wins and the later one is dropped, so one instant is never posted twice.

Pure logic: no Discord, no clock (callers pass ``now``), no I/O beyond tzdata.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.briefings.zones import local_now, require_aware

__all__ = [
    "ALL_DAYS",
    "DAY_NAMES",
    "MAX_MISSED",
    "WEEKDAYS",
    "WEEKENDS",
    "Recurrence",
    "from_local_key",
    "local_key",
    "missed_slots",
    "next_slots",
]

# How far `slots_after` looks ahead: a valid rule fires within this (Feb 29 included).
HORIZON = timedelta(days=5 * 366)
# The largest forward clock jump in tzdata is 24 h (Pacific/Apia 2011, Kwajalein 1993,
# Pacific/Kanton 1994). A slot can only be shadowed by one at most that far before it,
# and a slot due after an instant lies at most that far before its local time, so starting
# the scan 2 x 24 h (+ margin) earlier gives the same answer as scanning from the start.
LOOKBACK = timedelta(hours=50)
MAX_MISSED = 1000

_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}")
_DOW_ABBR = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # cron numbering
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONDAY_FIRST = (1, 2, 3, 4, 5, 6, 0)
# Days of week in cron numbering (0=Sunday), shared with the parsers in `rules`.
DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
WEEKDAYS = frozenset({1, 2, 3, 4, 5})
WEEKENDS = frozenset({0, 6})
ALL_DAYS = frozenset(range(7))


# --- the rule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recurrence:
    """Which local minutes are slots. ``None`` in a day/month field means "any".

    Days of week use cron numbering (0=Sunday..6=Saturday; 7 is stored as 0). When both
    `days_of_month` and `days_of_week` are set a day matches if either does (cron rule).
    `once` makes it a one-off on that date. `cron` keeps the typed expression for `describe`.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None = None
    months: frozenset[int] | None = None
    days_of_week: frozenset[int] | None = None
    once: date | None = None
    cron: str | None = None
    _times: tuple[time, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Invalid rules are programming errors (parsers produce valid ones): ValueError.
        def check(name: str, values: frozenset[int] | None, low: int, high: int) -> None:
            if values is None:
                return
            if not values:
                raise ValueError(f"{name} must not be empty")
            if min(values) < low or max(values) > high:
                raise ValueError(f"{name} must be within {low}..{high}: {sorted(values)}")

        check("minutes", self.minutes, 0, 59)
        check("hours", self.hours, 0, 23)
        check("days_of_month", self.days_of_month, 1, 31)
        check("months", self.months, 1, 12)
        check("days_of_week", self.days_of_week, 0, 7)
        if self.days_of_week is not None and 7 in self.days_of_week:
            object.__setattr__(self, "days_of_week", (self.days_of_week - {7}) | {0})
        if self.once is not None and (
            len(self.minutes) != 1
            or len(self.hours) != 1
            or self.days_of_month is not None
            or self.months is not None
            or self.days_of_week is not None
        ):
            raise ValueError("a one-off has exactly one time and no day or month fields")
        times = tuple(time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes))
        object.__setattr__(self, "_times", times)

    def _day_matches(self, day: int, dow: int) -> bool:
        doms, dows = self.days_of_month, self.days_of_week
        if doms is not None and dows is not None:
            return day in doms or dow in dows
        return (doms is None or day in doms) and (dows is None or dow in dows)

    def iter_after(self, after: datetime, until: date) -> Iterator[datetime]:
        """Local slots strictly after `after`, in order, on dates up to `until` inclusive.

        Walks month by month and day by day, trying only the rule's times, so a sparse
        rule costs a few thousand cheap steps at worst.
        """
        if after.tzinfo is not None:
            raise ValueError("slots are naive local times; got an aware datetime")
        times = self._times
        first = after.date()
        if self.once is not None:
            if first <= self.once <= until:
                for t in times:
                    slot = datetime.combine(self.once, t)
                    if slot > after:
                        yield slot
            return
        months = self.months
        year, month, day = first.year, first.month, first.day
        while (year, month) <= (until.year, until.month):
            if months is None or month in months:
                dow = date(year, month, day).toordinal() % 7  # ordinal 7 is a Sunday
                for dom in range(day, calendar.monthrange(year, month)[1] + 1):
                    if self._day_matches(dom, dow):
                        current = date(year, month, dom)
                        if current > until:
                            return
                        start = bisect.bisect_right(times, after.time()) if current == first else 0
                        for t in times[start:]:
                            yield datetime(year, month, dom, t.hour, t.minute)
                    dow = (dow + 1) % 7
            day = 1
            month += 1
            if month == 13:
                year, month = year + 1, 1

    def slots_after(self, after: datetime, limit: int) -> list[datetime]:
        """The next `limit` local slots strictly after naive local `after` (~5 years ahead)."""
        until = _add_days(after.date(), HORIZON)
        found: list[datetime] = []
        if limit <= 0:
            return found
        for slot in self.iter_after(after, until):
            found.append(slot)
            if len(found) >= limit:
                break
        return found

    def describe(self) -> str:
        """Human text for confirmations and lists."""
        if self.once is not None:
            d = self.once
            return (
                f"once on {_DOW_ABBR[d.toordinal() % 7]} {d.day} {_MONTH_ABBR[d.month - 1]}"
                f" {d.year} at {_hhmm(self._times[0])}"
            )
        if self.cron is not None:
            return f"cron `{self.cron}`"
        if len(self._times) == 1 and self.days_of_month is None and self.months is None:
            return f"{_describe_days(self.days_of_week)} at {_hhmm(self._times[0])}"
        return f"cron `{self._render_cron()}`"

    def _render_cron(self) -> str:
        # Day fields keep an explicit full range: "*" there would change the either-day rule.
        return " ".join(
            (
                _render_field(self.minutes, 0, 59),
                _render_field(self.hours, 0, 23),
                _render_field(self.days_of_month, 1, 31, star_when_full=False),
                _render_field(self.months, 1, 12),
                _render_field(self.days_of_week, 0, 6, star_when_full=False),
            )
        )


def _add_days(start: date, delta: timedelta) -> date:
    try:
        return start + delta
    except OverflowError:
        return date.max


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def _render_field(
    values: frozenset[int] | None, low: int, high: int, *, star_when_full: bool = True
) -> str:
    if values is None or (star_when_full and values == frozenset(range(low, high + 1))):
        return "*"
    parts: list[str] = []
    ordered = sorted(values)
    run_start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        if value is not None:
            run_start = prev = value
    return ",".join(parts)


def _describe_days(days: frozenset[int] | None) -> str:
    if days is None or days == ALL_DAYS:
        return "every day"
    if days == WEEKDAYS:
        return "weekdays (Mon–Fri)"
    if days == WEEKENDS:
        return "weekends (Sat–Sun)"
    if len(days) == 1:
        return f"every {DAY_NAMES[next(iter(days))].capitalize()}"
    # Runs in Monday-first order; a run may wrap from Sunday to Monday ("Fri–Mon").
    positions = [i for i, dow in enumerate(_MONDAY_FIRST) if dow in days]
    runs: list[list[int]] = []
    for pos in positions:
        if runs and runs[-1][-1] == pos - 1:
            runs[-1].append(pos)
        else:
            runs.append([pos])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:
        runs[-1].extend(runs.pop(0))
        runs.sort(key=lambda run: run[0])
    parts: list[str] = []
    for run in runs:
        names = [_DOW_ABBR[_MONDAY_FIRST[pos]] for pos in run]
        parts.append(f"{names[0]}–{names[-1]}" if len(names) >= 3 else ", ".join(names))
    return "every " + ", ".join(parts)


# --- slots and instants -------------------------------------------------------------------


def local_key(local: datetime) -> str:
    """The local key "YYYY-MM-DDTHH:MM" of a local slot (seconds are not part of a slot).

    Not what the store keys on: that is the slot's UTC key (`bot.models.utc_slot`).
    """
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:{local.minute:02d}"


def from_local_key(key: str) -> datetime:
    """The naive local slot a local key names; ValueError for any other key (UTC, manual)."""
    try:
        if _KEY.fullmatch(key):
            return datetime.strptime(key, "%Y-%m-%dT%H:%M")
    except ValueError:
        pass
    raise ValueError(f"not a slot key: {key!r}")


def _instants(
    rec: Recurrence, tz: str, from_utc: datetime, until: date
) -> Iterator[tuple[datetime, datetime]]:
    """(local slot, UTC instant) of every kept slot, in order, from a little before `from_utc`.

    Starting `LOOKBACK` early catches slots whose wall time is before local "now" but whose
    instant is not (spring gaps), and lets the running maximum drop shadowed slots exactly
    as a scan from the beginning of time would.
    """
    zone = ZoneInfo(tz)
    start = local_now(from_utc, tz) - LOOKBACK
    latest: datetime | None = None
    for local in rec.iter_after(start, until):
        instant = local.replace(tzinfo=zone).astimezone(UTC)  # as `zones.slot_instant`
        if latest is None or instant > latest:
            latest = instant
            yield local, instant


def next_slots(
    rec: Recurrence, tz: str, now_utc: datetime, count: int = 3
) -> list[tuple[str, datetime]]:
    """(local key, UTC instant) of the next `count` slots with instant > `now_utc`.

    Empty when nothing is due within ~5 years, e.g. a one-off date in the past.
    """
    require_aware(now_utc, "now_utc")
    found: list[tuple[str, datetime]] = []
    if count <= 0:
        return found
    until = _add_days(local_now(now_utc, tz).date(), HORIZON)
    for local, instant in _instants(rec, tz, now_utc, until):
        if instant > now_utc:
            found.append((local_key(local), instant))
            if len(found) >= count:
                break
    return found


def missed_slots(
    rec: Recurrence, tz: str, since_utc: datetime, now_utc: datetime, limit: int = MAX_MISSED
) -> list[tuple[str, datetime]]:
    """(local key, UTC instant) of the slots with ``since_utc < instant <= now_utc``,
    oldest first, only the newest `limit`.

    Work grows with the length of the window, so pass the last delivery (or the time the
    schedule was created), not the epoch.
    """
    require_aware(since_utc, "since_utc")
    require_aware(now_utc, "now_utc")
    kept: deque[tuple[str, datetime]] = deque(maxlen=max(0, limit))
    if since_utc >= now_utc or limit <= 0:
        return []
    until = _add_days(local_now(now_utc, tz).date(), timedelta(days=2))
    for local, instant in _instants(rec, tz, since_utc, until):
        if instant > now_utc:
            break
        if instant > since_utc:
            kept.append((local_key(local), instant))
    return list(kept)
