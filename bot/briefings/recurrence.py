"""When a schedule posts: parse what a moderator typed, list its slots, map slots to instants.

A *slot* is a local wall-clock date and minute in the schedule's IANA zone (a naive
`datetime`), named by its key ``"YYYY-MM-DDTHH:MM"``. Deliveries are claimed per
(schedule, slot key), so the key, not the instant, is what makes posting exactly-once:

* Autumn (clocks go back): the repeated 01:30 is ONE slot. It maps to its FIRST
  occurrence (``fold=0``): Europe/London 2026-10-25 01:30 -> 00:30 UTC (01:30 BST).
* Spring (clocks go forward): a non-existent 01:30 is still a slot, so the day is not
  skipped. It maps to ``datetime(..., tzinfo=ZoneInfo(tz), fold=0)``, which zoneinfo reads
  with the offset from before the gap, i.e. just after it in wall time: Europe/London
  2026-03-29 01:30 -> 01:30 UTC (02:30 BST).
* If a gap makes a slot map to an instant no later than an earlier slot's (a cron with
  01:30 and 02:30 on a spring day; Pacific/Apia skipping 2011-12-30), the earlier slot
  wins and the later one is dropped: instants of a schedule are strictly increasing, so
  one instant is never posted twice.

Cron follows Vixie cron except where noted: day-of-week 0 and 7 are Sunday; when both
day-of-month and day-of-week are restricted a day matches if EITHER does. "Restricted"
means the field does not cover its whole range (so ``*/2`` is restricted, unlike Vixie's
first-character rule). The minute must be a single value: at most one post an hour.

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
from functools import cache
from zoneinfo import ZoneInfo

from bot.errors import UserError

__all__ = [
    "MAX_MISSED",
    "Recurrence",
    "build_recurrence",
    "local_now",
    "missed_slots",
    "next_slots",
    "parse_cron",
    "parse_date",
    "parse_days",
    "parse_time",
    "parse_timezone",
    "slot_from_key",
    "slot_instant",
    "slot_key",
    "timezone_choices",
]

# How far `slots_after` looks ahead: a valid rule fires within this (Feb 29 included).
HORIZON = timedelta(days=5 * 366)
# The largest forward clock jump in tzdata is 24 h (Pacific/Apia 2011, Kwajalein 1993,
# Pacific/Kanton 1994). A slot can only be shadowed by one at most that far before it,
# and a slot due after an instant lies at most that far before its local time, so starting
# the scan 2 x 24 h (+ margin) earlier gives the same answer as scanning from the start.
LOOKBACK = timedelta(hours=50)
MAX_MISSED = 1000
MAX_INPUT = 100  # characters; every accepted form is far shorter

_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}")
_DOW_ABBR = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # cron numbering
_DOW_FULL = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_FULL = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # most a month can have
_MONDAY_FIRST = (1, 2, 3, 4, 5, 6, 0)
_WEEKDAYS = frozenset({1, 2, 3, 4, 5})
_WEEKENDS = frozenset({0, 6})
_ALL_DAYS = frozenset(range(7))


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
    if days is None or days == _ALL_DAYS:
        return "every day"
    if days == _WEEKDAYS:
        return "weekdays (Mon–Fri)"
    if days == _WEEKENDS:
        return "weekends (Sat–Sun)"
    if len(days) == 1:
        return f"every {_DOW_FULL[next(iter(days))].capitalize()}"
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


# --- parsing what a moderator typed -------------------------------------------------------

_TIME_24H = re.compile(r"([0-9]{1,2})[:.h]([0-9]{2})|([0-9]{2})([0-9]{2})")
_TIME_12H = re.compile(r"([0-9]{1,2})(?:[:.]([0-9]{2}))?\s*([ap])\.?\s*m\.?")
_TIME_HELP = "Use 24-hour time as HH:MM, e.g. `09:00` or `18:30`."


def _clean(text: str, what: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_INPUT:
        raise UserError(f"That {what} is too long (at most {MAX_INPUT} characters).")
    return text


def parse_time(text: str) -> tuple[int, int]:
    """(hour, minute) from "09:00", "9:00", "9.30", "0900" (24-hour clock).

    A bare "9" is refused: it reads as 9 am to some and 9 pm to others. "6pm" is refused
    with its 24-hour spelling so the moderator sees exactly what will be stored.
    """
    cleaned = _clean(text, "time").lower()
    match = _TIME_24H.fullmatch(cleaned)
    if match is None:
        twelve = _TIME_12H.fullmatch(cleaned)
        if twelve is not None and 1 <= int(twelve[1]) <= 12 and int(twelve[2] or 0) < 60:
            hour = int(twelve[1]) % 12 + (12 if twelve[3] == "p" else 0)
            raise UserError(
                f"Use 24-hour time: `{cleaned}` is `{hour:02d}:{int(twelve[2] or 0):02d}`."
            )
        raise UserError(f"I can't read `{cleaned}` as a time. {_TIME_HELP}")
    hour = int(match[1] if match[1] is not None else match[3])
    minute = int(match[2] if match[2] is not None else match[4])
    if hour > 23:
        raise UserError(f"The hour in `{cleaned}` must be 00–23. {_TIME_HELP}")
    if minute > 59:
        raise UserError(f"The minutes in `{cleaned}` must be 00–59. {_TIME_HELP}")
    return hour, minute


_DAYS_HELP = (
    "Try `daily`, `weekdays`, `weekends`, a day like `monday`, a list like `sat,sun` or "
    "`mon,wed,fri`, a range like `mon-fri`, `tue-thu` or `fri-mon`, or cron numbers 0–7 "
    "(0 and 7 are Sunday) like `1-5`."
)
_EVERY_DAY = {"", "daily", "day", "days", "everyday", "all", "all days", "any", "*"}
_DAY_SPLIT = re.compile(r"\s*(?:,|;|&|/|\band\b|\s)\s*")
_DAY_RANGE = re.compile(r"\s*(?:-|–|—|\bto\b|\bthrough\b|\bthru\b)\s*")


def _day_number(token: str) -> int | None:
    """0..7 for a digit or an unambiguous day name/prefix ("tu", "thurs", "mondays")."""
    if re.fullmatch(r"[0-7]", token):
        return int(token)
    for candidate in (token, token[:-1] if token.endswith("s") else None):
        if candidate is None or len(candidate) < 2:
            continue
        for number, name in enumerate(_DOW_FULL):
            if name.startswith(candidate):
                return number
    return None


def _day_token(token: str) -> frozenset[int]:
    if token in {"weekday", "weekdays", "workdays", "workday"}:
        return _WEEKDAYS
    if token in {"weekend", "weekends"}:
        return _WEEKENDS
    numbers: list[int] = []
    for part in token.split("-"):
        number = _day_number(part)
        if number is None:
            raise UserError(f"I can't read `{token}` as days. {_DAYS_HELP}")
        numbers.append(number)
    if len(numbers) == 1:
        return frozenset({numbers[0] % 7})
    if len(numbers) > 2:
        raise UserError(f"I can't read `{token}` as days. {_DAYS_HELP}")
    start, end = numbers[0] % 7, numbers[1]  # "7-1" starts on Sunday; "1-7" ends on it
    if start == end % 7 and numbers != [0, 7]:  # "7-7", "mon-mon": one day; "0-7": cron's week
        return frozenset({start})
    # A start after the end wraps past Saturday: "fri-mon".
    span = range(start, end + 1) if start <= end else range(start, end + 8)
    return frozenset(n % 7 for n in span)


def parse_days(text: str) -> frozenset[int] | None:
    """Days of week (cron numbering, 0=Sunday) from moderator text; ``None`` means every day.

    A set covering the whole week is returned as ``None`` so "mon-sun" and "daily" are the
    same rule.
    """
    cleaned = _clean(text, "list of days").lower()
    cleaned = re.sub(r"^(?:every|on)\s+", "", cleaned)
    if cleaned in _EVERY_DAY or cleaned == "every":
        return None
    cleaned = _DAY_RANGE.sub("-", cleaned)
    days: set[int] = set()
    for token in _DAY_SPLIT.split(cleaned):
        if token:
            days |= _day_token(token)
    if not days:
        raise UserError(f"I can't read `{text.strip()}` as days. {_DAYS_HELP}")
    return None if days == _ALL_DAYS else frozenset(days)


_CRON_HELP = (
    "A cron expression has 5 fields: minute hour day-of-month month day-of-week, "
    "e.g. `0 9 * * 1-5` (09:00 on weekdays)."
)
_CRON_ITEM = re.compile(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/([0-9]+))?")


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int  # highest value accepted as input (7 for day of week)
    full: int  # highest value a "*" covers (6 for day of week)
    names: tuple[str, ...] = ()  # lower-case names for low, low+1, ...

    def value(self, token: str) -> int:
        if token.isdigit():
            number = int(token)
        else:
            number = -1
            for offset, name in enumerate(self.names):
                if token in (name[:3], name):
                    number = self.low + offset
            if number < 0:
                raise UserError(f"`{token}` is not a valid {self.name}. {_CRON_HELP}")
        if not self.low <= number <= self.high:
            raise UserError(
                f"The {self.name} `{token}` is out of range ({self.low}–{self.high}). {_CRON_HELP}"
            )
        return number

    def parse(self, text: str) -> frozenset[int]:
        values: set[int] = set()
        for item in text.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if match is None:
                raise UserError(f"I can't read `{item}` in the {self.name} field. {_CRON_HELP}")
            span, step_text = match[1], match[2]
            step = 1 if step_text is None else int(step_text)
            if step == 0:
                raise UserError(f"The step in `{item}` ({self.name}) must be at least 1.")
            if span == "*":
                first, last = self.low, self.full
            elif "-" in span:
                first, last = (self.value(part) for part in span.split("-"))
                if first > last:
                    raise UserError(
                        f"The {self.name} range `{span}` runs backwards; write the smaller "
                        f"value first. {_CRON_HELP}"
                    )
            else:
                first = self.value(span)
                last = self.full if step_text is not None else first  # "5/15" = "5-59/15"
            values.update(range(first, last + 1, step))
        return frozenset(values)


_CRON_FIELDS = (
    _CronField("minute", 0, 59, 59),
    _CronField("hour", 0, 23, 23),
    _CronField("day of month", 1, 31, 31),
    _CronField("month", 1, 12, 12, _MONTH_FULL),
    _CronField("day of week", 0, 7, 6, _DOW_FULL),
)


def parse_cron(text: str) -> Recurrence:
    """A Recurrence from a 5-field cron expression, refusing what the product does not allow.

    Refused: more than one minute value (at most one post an hour), out-of-range values,
    backwards ranges, zero steps, and rules that never fire (``0 9 31 2 *``).
    """
    cleaned = _clean(text, "cron expression")
    fields = cleaned.lower().split(" ") if cleaned else []
    if len(fields) != 5:
        raise UserError(f"{_CRON_HELP} `{cleaned}` has {len(fields)}.")
    fields = ["*" if f == "?" and i in (2, 4) else f for i, f in enumerate(fields)]
    minutes, hours, doms, months, dows = (
        spec.parse(part) for spec, part in zip(_CRON_FIELDS, fields, strict=True)
    )
    if len(minutes) != 1:
        raise UserError(
            "A schedule can post at most once an hour, so the minute field must be a single "
            f"number (e.g. `0 9 * * 1` for 09:00 on Mondays), not `{fields[0]}`."
        )
    dows = frozenset(d % 7 for d in dows)
    days_of_month = None if doms == frozenset(range(1, 32)) else doms
    month_set = None if months == frozenset(range(1, 13)) else months
    days_of_week = None if dows == _ALL_DAYS else dows
    if days_of_month is not None and days_of_week is None:
        possible = any(
            day <= _MONTH_DAYS[month - 1] for month in month_set or range(1, 13) for day in doms
        )
        if not possible:
            raise UserError(f"`{cleaned}` never happens: no month has that day.")
    return Recurrence(
        minutes=minutes,
        hours=hours,
        days_of_month=days_of_month,
        months=month_set,
        days_of_week=days_of_week,
        cron=cleaned,
    )


def parse_date(text: str) -> date:
    """A calendar date from ISO "YYYY-MM-DD" (month and day may drop a leading zero)."""
    cleaned = _clean(text, "date")
    match = re.fullmatch(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})", cleaned)
    if match is None:
        raise UserError(f"I can't read `{cleaned}` as a date. Use YYYY-MM-DD, e.g. `2026-12-03`.")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise UserError(f"`{cleaned}` is not a real date.") from None


def build_recurrence(
    *, time: str | None, days: str | None, cron: str | None, date: str | None
) -> Recurrence:
    """The rule from a schedule's fields: time (+ days), or cron, or date + time.

    Blank strings count as missing. Whether a one-off date is in the past is for the
    caller to judge (it has the clock): such a rule simply has no next slots.
    """
    time, days, cron, date = (
        None if v is None or not v.strip() else v for v in (time, days, cron, date)
    )
    if cron is not None:
        if time is not None or days is not None or date is not None:
            raise UserError(
                "Give either a cron expression or a time (with days or a date), not both."
            )
        return parse_cron(cron)
    if date is not None:
        if days is not None:
            raise UserError("Days don't apply to a one-off date; give the date and a time only.")
        if time is None:
            raise UserError("A one-off needs a time as well as the date, e.g. `18:30`.")
        hour, minute = parse_time(time)
        return Recurrence(
            minutes=frozenset({minute}), hours=frozenset({hour}), once=parse_date(date)
        )
    if time is None:
        if days is not None:
            raise UserError("Give a time for those days, e.g. time `09:00` days `weekdays`.")
        raise UserError(
            "Give a time (and optionally days), a cron expression, or a date and a time."
        )
    hour, minute = parse_time(time)
    return Recurrence(
        minutes=frozenset({minute}),
        hours=frozenset({hour}),
        days_of_week=parse_days(days) if days is not None else None,
    )


# --- time zones ---------------------------------------------------------------------------

# In tzdata's list but not zones a community lives in ("localtime" does not even load).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _zone_names() -> tuple[str, ...]:
    import zoneinfo

    return tuple(sorted(zoneinfo.available_timezones() - _NOT_ZONES))


@cache
def _zone_by_folded() -> dict[str, str]:
    return {name.casefold(): name for name in _zone_names()}


def _fold_zone(text: str) -> str:
    return "_".join(text.strip().split()).casefold()


def parse_timezone(text: str) -> str:
    """The canonical IANA name for `text` ("europe/london", "America/New York" work too)."""
    cleaned = _clean(text, "time zone")
    found = _zone_by_folded().get(_fold_zone(cleaned))
    if found is not None:
        return found
    hint = "Use an IANA name like `Europe/London` or `America/New_York`"
    import difflib  # only for a suggestion: not loaded at start-up

    close = difflib.get_close_matches(_fold_zone(cleaned), list(_zone_by_folded()), n=3)
    if close:
        suggestions = ", ".join(f"`{_zone_by_folded()[c]}`" for c in close)
        hint = f"Did you mean {suggestions}? {hint}"
    elif cleaned:
        more = timezone_choices(cleaned, 3)
        if more:
            hint = f"Did you mean {', '.join(f'`{m}`' for m in more)}? {hint}"
    shown = f"`{cleaned}`" if cleaned else "That"
    raise UserError(f"{shown} is not a time zone I know. {hint}; the list autocompletes.")


def _name_parts(folded: str) -> list[str]:
    """Path parts ("new_york") and their words ("york") of a folded zone name."""
    parts = folded.split("/")
    return [*parts, *(word for part in parts for word in re.split(r"[_\-]", part))]


def timezone_choices(text: str, limit: int = 25) -> list[str]:
    """Zone names for autocomplete: name prefix, then a path/word prefix, then substring."""
    limit = max(0, limit)
    wanted = _fold_zone(text)
    names = [n for n in _zone_names() if len(n) <= 100]
    if not wanted:
        return names[:limit]
    tiers: tuple[list[str], list[str], list[str]] = ([], [], [])
    for name in names:
        folded = name.casefold()
        if folded.startswith(wanted):
            tiers[0].append(name)
        elif any(part.startswith(wanted) for part in _name_parts(folded)):
            tiers[1].append(name)
        elif wanted in folded:
            tiers[2].append(name)
    return [*tiers[0], *tiers[1], *tiers[2]][:limit]


# --- slots and instants -------------------------------------------------------------------


def slot_key(local: datetime) -> str:
    """ "YYYY-MM-DDTHH:MM" for a local slot (seconds are not part of a slot)."""
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:{local.minute:02d}"


def slot_from_key(key: str) -> datetime:
    """The naive local slot named by `key`; ValueError for anything else (e.g. manual keys)."""
    try:
        if _KEY.fullmatch(key):
            return datetime.strptime(key, "%Y-%m-%dT%H:%M")
    except ValueError:
        pass
    raise ValueError(f"not a slot key: {key!r}")


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


def slot_instant(local: datetime, tz: str) -> datetime:
    """The aware UTC instant of a local slot: first occurrence if repeated, after a gap if skipped.

    ("After a gap": the offset from before the gap, so 01:30 in a 01:00->02:00 gap is 02:30.)
    """
    if local.tzinfo is not None:
        raise ValueError("slot_instant takes a naive local time")
    return local.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(UTC)


def local_now(now_utc: datetime, tz: str) -> datetime:
    """The naive wall-clock time in `tz` at the aware instant `now_utc`."""
    _require_aware(now_utc, "now_utc")
    return now_utc.astimezone(ZoneInfo(tz)).replace(tzinfo=None, fold=0)


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
        instant = local.replace(tzinfo=zone).astimezone(UTC)
        if latest is None or instant > latest:
            latest = instant
            yield local, instant


def next_slots(
    rec: Recurrence, tz: str, now_utc: datetime, count: int = 3
) -> list[tuple[str, datetime]]:
    """(slot key, UTC instant) of the next `count` slots with instant > `now_utc`.

    Empty when nothing is due within ~5 years, e.g. a one-off date in the past.
    """
    _require_aware(now_utc, "now_utc")
    found: list[tuple[str, datetime]] = []
    if count <= 0:
        return found
    until = _add_days(local_now(now_utc, tz).date(), HORIZON)
    for local, instant in _instants(rec, tz, now_utc, until):
        if instant > now_utc:
            found.append((slot_key(local), instant))
            if len(found) >= count:
                break
    return found


def missed_slots(
    rec: Recurrence, tz: str, since_utc: datetime, now_utc: datetime, limit: int = MAX_MISSED
) -> list[tuple[str, datetime]]:
    """Slots with ``since_utc < instant <= now_utc``, oldest first, only the newest `limit`.

    Work grows with the length of the window, so pass the last delivery (or the time the
    schedule was created), not the epoch.
    """
    _require_aware(since_utc, "since_utc")
    _require_aware(now_utc, "now_utc")
    kept: deque[tuple[str, datetime]] = deque(maxlen=max(0, limit))
    if since_utc >= now_utc or limit <= 0:
        return []
    until = _add_days(local_now(now_utc, tz).date(), timedelta(days=2))
    for local, instant in _instants(rec, tz, since_utc, until):
        if instant > now_utc:
            break
        if instant > since_utc:
            kept.append((slot_key(local), instant))
    return list(kept)
