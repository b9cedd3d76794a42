"""Reading what a moderator typed: a time, days, a cron expression, a date, a time zone.

Each parser accepts the forms people write and refuses anything else with a `UserError`
that says what would work. `build_recurrence` turns a schedule's fields into its rule.

Cron follows Vixie cron except where noted: day-of-week 0 and 7 are Sunday; when both
day-of-month and day-of-week are restricted a day matches if EITHER does. "Restricted"
means the field does not cover its whole range (so ``*/2`` is restricted, unlike Vixie's
first-character rule). The minute must be a single value: at most one post an hour.

Pure logic: no Discord, no clock, no I/O beyond tzdata's list of zones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import cache

from bot.briefings.recurrence import ALL_DAYS, DAY_NAMES, WEEKDAYS, WEEKENDS, Recurrence
from bot.errors import UserError

__all__ = [
    "build_recurrence",
    "parse_cron",
    "parse_date",
    "parse_days",
    "parse_time",
    "parse_timezone",
    "timezone_choices",
]

MAX_INPUT = 100  # characters; every accepted form is far shorter

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
        for number, name in enumerate(DAY_NAMES):
            if name.startswith(candidate):
                return number
    return None


def _day_token(token: str) -> frozenset[int]:
    if token in {"weekday", "weekdays", "workdays", "workday"}:
        return WEEKDAYS
    if token in {"weekend", "weekends"}:
        return WEEKENDS
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
    return None if days == ALL_DAYS else frozenset(days)


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
    _CronField("day of week", 0, 7, 6, DAY_NAMES),
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
    days_of_week = None if dows == ALL_DAYS else dows
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
