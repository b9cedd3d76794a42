"""bot.briefings.recurrence: moderator input, local slots, and instants across DST."""

from __future__ import annotations

import itertools
import time as clock
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.briefings.recurrence import (
    MAX_MISSED,
    Recurrence,
    from_local_key,
    local_key,
    missed_slots,
    next_slots,
)
from bot.briefings.rules import (
    build_recurrence,
    parse_cron,
    parse_date,
    parse_days,
    parse_time,
    parse_timezone,
    timezone_choices,
)
from bot.briefings.zones import local_now, slot_instant
from bot.errors import UserError

SUN, MON, TUE, WED, THU, FRI, SAT = range(7)  # cron numbering


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def increasing(moments: list[datetime]) -> bool:
    return all(a < b for a, b in itertools.pairwise(moments))


def at(time: str, days: str | None = None) -> Recurrence:
    return build_recurrence(time=time, days=days, cron=None, date=None)


def once(day: str, time: str) -> Recurrence:
    return build_recurrence(time=time, days=None, cron=None, date=day)


def keys(rec: Recurrence, after: str, limit: int) -> list[str]:
    return [local_key(s) for s in rec.slots_after(datetime.fromisoformat(after), limit)]


# --- parse_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00", (9, 0)),
        ("9:00", (9, 0)),
        (" 7:05 ", (7, 5)),
        ("9.30", (9, 30)),
        ("9h30", (9, 30)),
        ("0900", (9, 0)),
        ("1830", (18, 30)),
        ("00:00", (0, 0)),
        ("23:59", (23, 59)),
    ],
)
def test_parse_time(text: str, expected: tuple[int, int]) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "can't read ``"),
        ("9", "can't read `9` as a time"),
        ("900", "can't read `900`"),
        ("9:5", "can't read `9:5`"),
        ("noon", "can't read `noon`"),
        ("٠٩:٠٠", "can't read"),  # non-ASCII digits
        ("24:00", "hour in `24:00` must be 00–23"),
        ("12:60", "minutes in `12:60` must be 00–59"),
        ("6pm", "Use 24-hour time: `6pm` is `18:00`"),
        ("6:30 am", "`6:30 am` is `06:30`"),
        ("12am", "`12am` is `00:00`"),
        ("12:15pm", "`12:15pm` is `12:15`"),
        ("13pm", "can't read `13pm`"),
        ("1" * 200, "too long"),
    ],
)
def test_parse_time_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse_time(text)


# --- parse_days ---------------------------------------------------------------------------

WEEKDAYS = frozenset({MON, TUE, WED, THU, FRI})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("daily", None),
        ("Every Day", None),
        ("everyday", None),
        ("every", None),
        ("*", None),
        ("mon-sun", None),  # the whole week is "every day"
        ("1-7", None),
        ("0-6", None),
        ("weekdays", WEEKDAYS),
        ("WEEKDAY", WEEKDAYS),
        ("mon-fri", WEEKDAYS),
        ("Mon - Fri", WEEKDAYS),
        ("monday to friday", WEEKDAYS),
        ("1-5", WEEKDAYS),
        ("weekends", {SAT, SUN}),
        ("sat,sun", {SAT, SUN}),
        ("sat and sun", {SAT, SUN}),
        ("sat-sun", {SAT, SUN}),
        ("0,6", {SAT, SUN}),
        ("6-7", {SAT, SUN}),
        ("mon,wed,fri", {MON, WED, FRI}),
        ("mon, wed, fri", {MON, WED, FRI}),
        ("mon wed fri", {MON, WED, FRI}),
        ("monday", {MON}),
        ("every monday", {MON}),
        ("Mondays", {MON}),
        ("tues", {TUE}),
        ("thurs", {THU}),
        ("weds", {WED}),
        ("tu", {TUE}),
        ("tue-thu", {TUE, WED, THU}),
        ("tue–thu", {TUE, WED, THU}),  # en dash
        ("fri-mon", {FRI, SAT, SUN, MON}),
        ("sat-tue", {SAT, SUN, MON, TUE}),
        ("5-1", {FRI, SAT, SUN, MON}),
        ("7", {SUN}),
        ("0", {SUN}),
        ("7-1", {SUN, MON}),
        ("5-7", {FRI, SAT, SUN}),
        ("weekends,wed", {SAT, SUN, WED}),
        ("mon-mon", {MON}),
    ],
)
def test_parse_days(text: str, expected: set[int] | None) -> None:
    assert parse_days(text) == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize("text", ["funday", "mon-", "-", "8", "mon-tue-wed", "m", "s", "t", "1.5"])
def test_parse_days_errors(text: str) -> None:
    with pytest.raises(UserError, match=r"as days\. Try `daily`, `weekdays`.*cron numbers 0–7"):
        parse_days(text)


def test_parse_days_too_long() -> None:
    with pytest.raises(UserError, match="too long"):
        parse_days("mon," * 50)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7-7", {SUN}),  # was read as every day
        ("0-0", {SUN}),
        ("sun-sun", {SUN}),
        ("mon-mon", {MON}),
        ("fri-fri", {FRI}),
        ("fri-mon", {FRI, SAT, SUN, MON}),  # a start after the end still wraps
        ("7-1", {SUN, MON}),
        ("1-7", None),  # the whole week, as before
        ("0-7", None),  # cron's own numbers: Sunday to Sunday is the whole week
    ],
)
def test_a_day_range_from_a_day_to_itself_is_that_one_day(
    text: str, expected: set[int] | None
) -> None:
    assert parse_days(text) == (None if expected is None else frozenset(expected))
    if expected is not None:
        assert at("09:00", text).describe() == at("09:00", ",".join(map(str, expected))).describe()


# --- parse_cron ---------------------------------------------------------------------------

ALL_HOURS = frozenset(range(24))


@pytest.mark.parametrize(
    ("text", "minutes", "hours", "doms", "months", "dows"),
    [
        ("0 9 * * *", {0}, {9}, None, None, None),
        ("0 9 * * 1", {0}, {9}, None, None, {MON}),
        ("0 9 * * 1-5", {0}, {9}, None, None, WEEKDAYS),
        ("0 9 * * mon-fri", {0}, {9}, None, None, WEEKDAYS),
        ("0 9 * * MON,wed", {0}, {9}, None, None, {MON, WED}),
        ("0 9 * * 7", {0}, {9}, None, None, {SUN}),
        ("0 9 * * 0", {0}, {9}, None, None, {SUN}),
        ("0 9 * * 5-7", {0}, {9}, None, None, {FRI, SAT, SUN}),
        ("0 9 * * 0-7", {0}, {9}, None, None, None),
        ("0 9 * * sunday", {0}, {9}, None, None, {SUN}),
        ("0 9 * * */2", {0}, {9}, None, None, {SUN, TUE, THU, SAT}),
        ("30 */6 * * *", {30}, {0, 6, 12, 18}, None, None, None),
        ("0 8-18/4 * * *", {0}, {8, 12, 16}, None, None, None),
        ("0 9/6 * * *", {0}, {9, 15, 21}, None, None, None),
        ("0 * * * *", {0}, ALL_HOURS, None, None, None),
        ("0 9 */10 * *", {0}, {9}, {1, 11, 21, 31}, None, None),
        ("0 9 1-31 * *", {0}, {9}, None, None, None),
        ("0 9 1,15 * *", {0}, {9}, {1, 15}, None, None),
        ("0 9 1 jan,jul *", {0}, {9}, {1}, {1, 7}, None),
        ("0 9 1 JAN-mar *", {0}, {9}, {1}, {1, 2, 3}, None),
        ("0 9 1 december *", {0}, {9}, {1}, {12}, None),
        ("0 9 ? * 1", {0}, {9}, None, None, {MON}),  # Quartz-style "no value"
        ("0   9 *  * 1", {0}, {9}, None, None, {MON}),
        ("59 23 31 12 6", {59}, {23}, {31}, {12}, {SAT}),
        ("0 9 29 2 *", {0}, {9}, {29}, {2}, None),
    ],
)
def test_parse_cron(
    text: str,
    minutes: set[int],
    hours: set[int],
    doms: set[int] | None,
    months: set[int] | None,
    dows: set[int] | None,
) -> None:
    rec = parse_cron(text)
    assert rec.minutes == minutes
    assert rec.hours == hours
    assert rec.days_of_month == (None if doms is None else frozenset(doms))
    assert rec.months == (None if months is None else frozenset(months))
    assert rec.days_of_week == (None if dows is None else frozenset(dows))
    assert rec.once is None
    assert rec.cron == " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has 5 fields.*has 0"),
        ("0 9 * *", "has 5 fields.*has 4"),
        ("0 0 9 * * 1", "has 5 fields.*has 6"),
        ("* 9 * * *", "at most once an hour.*not `\\*`"),
        ("*/15 9 * * *", "at most once an hour.*not `\\*/15`"),
        ("0,30 9 * * *", "at most once an hour"),
        ("0-1 9 * * *", "at most once an hour"),
        ("5/15 9 * * *", "at most once an hour"),
        ("60 9 * * *", "minute `60` is out of range \\(0–59\\)"),
        ("0 24 * * *", "hour `24` is out of range \\(0–23\\)"),
        ("0 9 0 * *", "day of month `0` is out of range \\(1–31\\)"),
        ("0 9 32 * *", "day of month `32` is out of range"),
        ("0 9 * 0 *", "month `0` is out of range \\(1–12\\)"),
        ("0 9 * 13 *", "month `13` is out of range"),
        ("0 9 * * 8", "day of week `8` is out of range \\(0–7\\)"),
        ("0 9 * * fun", "`fun` is not a valid day of week"),
        ("0 9 * foo *", "`foo` is not a valid month"),
        ("0 9 * * mon-", "can't read `mon-` in the day of week field"),
        ("0 9 * * 1,,2", "can't read `` in the day of week field"),
        ("0 9 L * *", "`l` is not a valid day of month"),
        ("0 9 * * 5#3", "can't read `5#3`"),
        ("0 9 * * fri-mon", "range `fri-mon` runs backwards"),
        ("0 18-9 * * *", "range `18-9` runs backwards"),
        ("0 */0 * * *", "step in `\\*/0` \\(hour\\) must be at least 1"),
        ("0 9 31 2 *", "never happens"),
        ("0 9 30,31 feb *", "never happens"),
        ("0 9 31 4,6,9,11 *", "never happens"),
        ("0 9 " + "1," * 60 + "1 * *", "too long"),
    ],
)
def test_parse_cron_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_cron(text)


def test_cron_both_days_restricted_is_either() -> None:
    # 1st of the month OR any Monday (Jan 2026: Thu 1st, Mondays 5, 12, 19, 26; Feb 1st).
    assert keys(parse_cron("0 9 1 * 1"), "2026-01-01T00:00", 6) == [
        "2026-01-01T09:00",
        "2026-01-05T09:00",
        "2026-01-12T09:00",
        "2026-01-19T09:00",
        "2026-01-26T09:00",
        "2026-02-01T09:00",
    ]
    # Friday OR the 13th: Fri 13 Feb 2026 appears once.
    assert keys(parse_cron("0 9 13 2 5"), "2026-02-10T00:00", 4) == [
        "2026-02-13T09:00",
        "2026-02-20T09:00",
        "2026-02-27T09:00",
        "2027-02-05T09:00",
    ]
    # "*/2" counts as restricted (not Vixie's first-character rule): odd days OR Mondays.
    assert keys(parse_cron("0 9 */2 * 1"), "2026-01-01T10:00", 3) == [
        "2026-01-03T09:00",
        "2026-01-05T09:00",  # a Monday
        "2026-01-07T09:00",
    ]
    # Only one restricted: AND with "any", so just that field.
    assert keys(parse_cron("0 9 1 * *"), "2026-01-01T10:00", 2) == [
        "2026-02-01T09:00",
        "2026-03-01T09:00",
    ]


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("0 */6 * * *", "2026-01-01T05:00", ["2026-01-01T06:00", "2026-01-01T12:00"]),
        ("15 9 * jan,jul sat", "2026-01-30T00:00", ["2026-01-31T09:15", "2026-07-04T09:15"]),
        ("0 9 * * 7", "2026-01-01T00:00", ["2026-01-04T09:00", "2026-01-11T09:00"]),
        ("0 9 29 2 *", "2028-02-29T09:00", ["2032-02-29T09:00"]),
        ("0 9 31 * *", "2026-01-31T09:00", ["2026-03-31T09:00", "2026-05-31T09:00"]),
        ("0 0 1 1 *", "2026-12-31T23:59", ["2027-01-01T00:00", "2028-01-01T00:00"]),
    ],
)
def test_cron_slots(text: str, after: str, expected: list[str]) -> None:
    assert keys(parse_cron(text), after, len(expected)) == expected


# --- parse_date and build_recurrence ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-12-03", date(2026, 12, 3)), (" 2026-1-5 ", date(2026, 1, 5))],
)
def test_parse_date(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("03/12/2026", "can't read `03/12/2026` as a date. Use YYYY-MM-DD"),
        ("tomorrow", "can't read `tomorrow`"),
        ("2026-12-03T10:00", "can't read"),
        ("", "can't read ``"),
        ("2026-02-30", "`2026-02-30` is not a real date"),
        ("2026-13-01", "not a real date"),
    ],
)
def test_parse_date_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_date(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Give a time \\(and optionally days\\), a cron expression, or a date and a time"),
        ({"time": " ", "days": "", "cron": "", "date": ""}, "Give a time"),
        ({"days": "weekdays"}, "Give a time for those days"),
        ({"cron": "0 9 * * *", "time": "09:00"}, "either a cron expression or a time"),
        ({"cron": "0 9 * * *", "days": "mon"}, "either a cron expression"),
        ({"cron": "0 9 * * *", "date": "2026-12-03"}, "either a cron expression"),
        ({"date": "2026-12-03"}, "A one-off needs a time"),
        ({"date": "2026-12-03", "time": "09:00", "days": "mon"}, "Days don't apply"),
        ({"time": "25:00"}, "hour in `25:00`"),
        ({"time": "09:00", "days": "someday"}, "as days"),
        ({"date": "2026-12-33", "time": "09:00"}, "not a real date"),
        ({"cron": "*/5 * * * *"}, "at most once an hour"),
    ],
)
def test_build_recurrence_errors(fields: dict[str, str], message: str) -> None:
    args: dict[str, str | None] = {"time": None, "days": None, "cron": None, "date": None}
    args.update(fields)
    with pytest.raises(UserError, match=message):
        build_recurrence(**args)


def test_build_recurrence_forms() -> None:
    assert at("9:00") == Recurrence(minutes=frozenset({0}), hours=frozenset({9}))
    assert at("9:00", "") == at("09:00", "daily")
    assert at("09:00", "weekdays").days_of_week == WEEKDAYS
    assert build_recurrence(time=None, days=None, cron="0 9 * * 1", date=None) == parse_cron(
        "0 9 * * 1"
    )
    one = once("2026-12-03", "18:30")
    assert (one.once, one.hours, one.minutes) == (date(2026, 12, 3), {18}, {30})


@pytest.mark.parametrize(
    ("rec", "after", "expected"),
    [
        (at("07:30"), "2026-01-01T07:30", ["2026-01-02T07:30", "2026-01-03T07:30"]),
        (at("07:30"), "2026-01-01T07:29:59", ["2026-01-01T07:30", "2026-01-02T07:30"]),
        (
            at("09:00", "weekdays"),  # Fri 2 Jan 2026
            "2026-01-02T09:00",
            ["2026-01-05T09:00", "2026-01-06T09:00"],
        ),
        (at("09:00", "weekends"), "2026-01-01T00:00", ["2026-01-03T09:00", "2026-01-04T09:00"]),
        (
            at("09:00", "fri-mon"),
            "2026-01-01T00:00",
            [
                "2026-01-02T09:00",
                "2026-01-03T09:00",
                "2026-01-04T09:00",
                "2026-01-05T09:00",
                "2026-01-09T09:00",
            ],
        ),
        (at("09:00", "0,7"), "2026-01-01T00:00", ["2026-01-04T09:00", "2026-01-11T09:00"]),
        (at("23:59", "sat"), "2026-12-31T00:00", ["2027-01-02T23:59"]),
        (once("2026-12-03", "18:30"), "2026-01-01T00:00", ["2026-12-03T18:30"]),
        (once("2026-12-03", "18:30"), "2026-12-03T18:29", ["2026-12-03T18:30"]),
        (once("2026-12-03", "18:30"), "2026-12-03T18:30", []),
        (once("2026-12-03", "18:30"), "2027-01-01T00:00", []),
    ],
)
def test_slots_after(rec: Recurrence, after: str, expected: list[str]) -> None:
    found = keys(rec, after, 5)
    assert found[: len(expected)] == expected
    if rec.once is not None:
        assert len(found) == len(expected)  # a one-off has nothing after its slot


def test_slots_after_limits() -> None:
    assert at("09:00").slots_after(datetime(2026, 1, 1), 0) == []
    # About five years ahead and no further: Feb 29 in 2096 is the last before 2104.
    leap = parse_cron("0 9 29 2 *")
    assert leap.slots_after(datetime(2096, 3, 1), 1) == []
    with pytest.raises(ValueError, match="naive"):
        at("09:00").slots_after(datetime(2026, 1, 1, tzinfo=UTC), 1)


def test_sparse_rules_are_fast() -> None:
    """Day-by-day, not minute-by-minute: even rare rules cost well under a millisecond."""
    leap = parse_cron("0 9 29 2 *")
    started = clock.perf_counter()
    for _ in range(100):
        assert leap.slots_after(datetime(2028, 3, 1), 1) == [datetime(2032, 2, 29, 9)]
    assert clock.perf_counter() - started < 1.0


def test_one_off_in_the_past_has_no_next_slots() -> None:
    rec = once("2026-12-03", "18:30")
    assert next_slots(rec, "Europe/London", utc("2026-12-03T18:30")) == []
    assert next_slots(rec, "Europe/London", utc("2026-12-03T18:29")) == [
        ("2026-12-03T18:30", utc("2026-12-03T18:30"))
    ]


def test_recurrence_validation() -> None:
    assert Recurrence(
        minutes=frozenset({0}), hours=frozenset({9}), days_of_week=frozenset({7})
    ).days_of_week == frozenset({SUN})
    with pytest.raises(ValueError, match="minutes must be within"):
        Recurrence(minutes=frozenset({60}), hours=frozenset({9}))
    with pytest.raises(ValueError, match="hours must not be empty"):
        Recurrence(minutes=frozenset({0}), hours=frozenset())
    with pytest.raises(ValueError, match="one-off"):
        Recurrence(minutes=frozenset({0}), hours=frozenset({9, 10}), once=date(2026, 1, 1))


# --- describe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rec", "text"),
    [
        (at("07:30"), "every day at 07:30"),
        (at("9:00", "weekdays"), "weekdays (Mon–Fri) at 09:00"),
        (at("9:00", "1-5"), "weekdays (Mon–Fri) at 09:00"),
        (at("9:00", "sat,sun"), "weekends (Sat–Sun) at 09:00"),
        (at("9:00", "monday"), "every Monday at 09:00"),
        (at("9:00", "7"), "every Sunday at 09:00"),
        (at("9:00", "mon,wed,fri"), "every Mon, Wed, Fri at 09:00"),
        (at("9:00", "tue-thu"), "every Tue–Thu at 09:00"),
        (at("9:00", "fri-mon"), "every Fri–Mon at 09:00"),
        (at("9:00", "mon,tue"), "every Mon, Tue at 09:00"),
        (at("9:00", "tue,sat,sun"), "every Tue, Sat, Sun at 09:00"),
        (at("9:00", "mon-sun"), "every day at 09:00"),
        (once("2026-12-03", "18:30"), "once on Thu 3 Dec 2026 at 18:30"),
        (parse_cron("0 9 * * 1"), "cron `0 9 * * 1`"),
        (parse_cron("0  9 * *  mon-fri"), "cron `0 9 * * mon-fri`"),
        (
            Recurrence(
                minutes=frozenset({5}), hours=frozenset({1, 2, 3, 9}), months=frozenset({6})
            ),
            "cron `5 1-3,9 * 6 *`",
        ),
    ],
)
def test_describe(rec: Recurrence, text: str) -> None:
    assert rec.describe() == text


# --- keys and instants --------------------------------------------------------------------


def test_slot_keys_round_trip() -> None:
    local = datetime(2026, 3, 29, 1, 30)
    assert local_key(local) == "2026-03-29T01:30"
    assert local_key(datetime(2026, 3, 29, 1, 30, 59)) == "2026-03-29T01:30"
    assert from_local_key("2026-03-29T01:30") == local
    bad_keys = ["manual:2026-03-29T01:30:00", "2026-03-29 01:30", "2026-3-29T01:30", ""]
    for bad in [*bad_keys, "2026-02-30T01:30", "2026-01-01T24:00"]:
        with pytest.raises(ValueError, match="not a slot key"):
            from_local_key(bad)


@pytest.mark.parametrize(
    ("tz", "local", "instant"),
    [
        ("Europe/London", "2026-10-25T01:30", "2026-10-25T00:30"),  # repeated: first (BST)
        ("Europe/London", "2026-03-29T01:30", "2026-03-29T01:30"),  # skipped: 02:30 BST
        ("America/New_York", "2026-11-01T01:30", "2026-11-01T05:30"),  # repeated: EDT
        ("America/New_York", "2026-03-08T02:30", "2026-03-08T07:30"),  # skipped: 03:30 EDT
        ("Europe/London", "2026-07-01T09:00", "2026-07-01T08:00"),
        ("UTC", "2026-07-01T09:00", "2026-07-01T09:00"),
    ],
)
def test_slot_instant(tz: str, local: str, instant: str) -> None:
    assert slot_instant(datetime.fromisoformat(local), tz) == utc(instant)


def test_local_now_and_argument_checks() -> None:
    assert local_now(utc("2026-10-25T01:30"), "Europe/London") == datetime(2026, 10, 25, 1, 30)
    assert local_now(utc("2026-10-25T01:30"), "Europe/London").fold == 0
    assert local_now(utc("2026-07-01T08:00:30"), "Europe/London") == datetime(2026, 7, 1, 9, 0, 30)
    with pytest.raises(ValueError, match="aware"):
        local_now(datetime(2026, 1, 1), "UTC")
    with pytest.raises(ValueError, match="naive"):
        slot_instant(utc("2026-01-01T00:00"), "UTC")
    with pytest.raises(ValueError, match="aware"):
        next_slots(at("09:00"), "UTC", datetime(2026, 1, 1))


# --- DST ----------------------------------------------------------------------------------

# (zone, time of the daily schedule, the transition day, the slot's instant on that day)
DST_DAYS = [
    ("Europe/London", "01:30", "2026-10-25", "2026-10-25T00:30"),  # autumn: 01:30 twice
    ("Europe/London", "01:30", "2026-03-29", "2026-03-29T01:30"),  # spring: no 01:30
    ("America/New_York", "01:30", "2026-11-01", "2026-11-01T05:30"),
    ("America/New_York", "02:30", "2026-03-08", "2026-03-08T07:30"),
    ("America/New_York", "01:30", "2026-03-08", "2026-03-08T06:30"),  # just before the gap
    ("Europe/London", "02:30", "2026-10-25", "2026-10-25T02:30"),  # just after the repeat
]


def _around(day: str) -> tuple[datetime, datetime]:
    start = utc(day) - timedelta(days=2)
    return start, start + timedelta(days=4)


@pytest.mark.parametrize(("tz", "time", "day", "instant"), DST_DAYS)
def test_dst_day_posts_once_via_next_slots(tz: str, time: str, day: str, instant: str) -> None:
    rec = at(time)
    start, end = _around(day)
    # Re-plan after every firing, as the scheduler does.
    fired: list[tuple[str, datetime]] = []
    now = start
    while True:
        (key, when), *_ = next_slots(rec, tz, now, 1)
        if when > end:
            break
        fired.append((key, when))
        now = when
    dates = [key[:10] for key, _ in fired]
    assert len(dates) == len(set(dates)) == 4  # one per local day, none skipped
    assert dict(fired)[f"{day}T{time}"] == utc(instant)
    # A restart at any minute of the window plans the same slots: none lost, none repeated.
    for minute in range(0, 4 * 24 * 60, 7):
        moment = start + timedelta(minutes=minute)
        upcoming = next_slots(rec, tz, moment, 2)
        expected = [item for item in fired if item[1] > moment][:2]
        assert upcoming[: len(expected)] == expected


def test_gap_collisions_post_each_instant_once() -> None:
    # 01:30 does not exist on 29 Mar 2026 in London and lands on 02:30's instant: one post.
    rec = parse_cron("30 1,2 * * *")
    found = next_slots(rec, "Europe/London", utc("2026-03-28T12:00"), 3)
    assert found == [
        ("2026-03-29T01:30", utc("2026-03-29T01:30")),
        ("2026-03-30T01:30", utc("2026-03-30T00:30")),
        ("2026-03-30T02:30", utc("2026-03-30T01:30")),
    ]
    # Samoa skipped 30 Dec 2011 entirely: that slot lands on 31 Dec's, which is not repeated.
    apia = next_slots(at("09:00"), "Pacific/Apia", utc("2011-12-29T00:00"), 3)
    assert [key for key, _ in apia] == ["2011-12-29T09:00", "2011-12-30T09:00", "2012-01-01T09:00"]
    # Restarting between the two lands on the same plan.
    assert next_slots(at("09:00"), "Pacific/Apia", apia[0][1], 2) == apia[1:]


# --- missed slots -------------------------------------------------------------------------


def test_missed_slots_bounds() -> None:
    hourly = parse_cron("0 * * * *")
    since, now = utc("2026-01-01T00:00"), utc("2026-01-03T00:00")
    missed = missed_slots(hourly, "UTC", since, now)
    assert len(missed) == 48  # since excluded, now included
    assert missed[0] == ("2026-01-01T01:00", utc("2026-01-01T01:00"))
    assert missed[-1] == ("2026-01-03T00:00", now)
    # A long outage keeps only the newest MAX_MISSED, oldest first.
    long = missed_slots(hourly, "UTC", since, utc("2026-06-01T00:00"))
    assert len(long) == MAX_MISSED == 1000
    assert long[-1][1] == utc("2026-06-01T00:00")
    assert increasing([when for _, when in long])
    assert len(missed_slots(hourly, "UTC", since, now, limit=5)) == 5
    assert missed_slots(hourly, "UTC", now, since) == []
    assert missed_slots(hourly, "UTC", now, now) == []
    assert missed_slots(hourly, "UTC", since, now, limit=0) == []


def test_missed_slots_across_dst() -> None:
    rec = at("01:30")
    london = missed_slots(rec, "Europe/London", utc("2026-10-24T00:00"), utc("2026-10-26T12:00"))
    assert [k for k, _ in london] == ["2026-10-24T01:30", "2026-10-25T01:30", "2026-10-26T01:30"]
    spring = missed_slots(rec, "Europe/London", utc("2026-03-29T01:00"), utc("2026-03-29T01:30"))
    assert spring == [("2026-03-29T01:30", utc("2026-03-29T01:30"))]


# --- time zones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Europe/London", "Europe/London"),
        ("europe/london", "Europe/London"),
        (" EUROPE/LONDON ", "Europe/London"),
        ("America/New York", "America/New_York"),
        ("utc", "UTC"),
        ("Etc/GMT+5", "Etc/GMT+5"),
    ],
)
def test_parse_timezone(text: str, expected: str) -> None:
    assert parse_timezone(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Europe/Londn", "`Europe/Londn` is not a time zone I know. Did you mean `Europe/London`"),
        ("new york", "Did you mean `America/New_York`"),
        ("BST", "`BST` is not a time zone I know.*IANA name like `Europe/London`"),
        ("", "That is not a time zone"),
        ("localtime", "not a time zone"),
        ("../../etc/passwd", "not a time zone"),
        ("x" * 101, "too long"),
    ],
)
def test_parse_timezone_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_timezone(text)


def test_timezone_choices() -> None:
    assert timezone_choices("europe/lon") == ["Europe/London"]
    assert timezone_choices("york") == ["America/New_York"]
    assert timezone_choices("new york") == ["America/New_York"]
    london = timezone_choices("lon")
    assert "Europe/London" in london
    assert london.index("Europe/London") < london.index("America/Blanc-Sablon")  # word > substring
    names = timezone_choices("america")
    assert names[0].startswith("America/") and len(names) == 25
    assert all(n.startswith("America/") for n in names)  # name prefixes come first
    assert timezone_choices("", 5) == sorted(timezone_choices("", 5))
    assert len(timezone_choices("", 5)) == 5
    assert timezone_choices("e", 0) == []
    assert timezone_choices("e", -3) == []
    assert timezone_choices("nowhere-at-all") == []
    assert all(len(n) <= 100 for n in timezone_choices("a", 1000))
    assert "localtime" not in timezone_choices("local")


# --- properties ---------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Dublin",  # negative DST in tzdata
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",  # 30-minute DST
    "Antarctica/Troll",  # 2-hour DST
    "Pacific/Apia",  # skipped a whole day in 2011
    "Pacific/Chatham",
    "Asia/Tehran",
    "Africa/Casablanca",
]


@st.composite
def recurrences(draw: st.DrawFn) -> Recurrence:
    def maybe(values: range, size: int) -> frozenset[int] | None:
        return draw(st.none() | st.frozensets(st.sampled_from(values), min_size=1, max_size=size))

    minute = draw(st.sampled_from([0, 15, 30, 45, 59]))
    hours = draw(
        st.just(frozenset(range(24)))
        | st.frozensets(st.sampled_from(range(24)), min_size=1, max_size=4)
    )
    dows = maybe(range(7), 4)
    doms = draw(st.none() | st.just(frozenset({1, 15, 29})) | st.just(frozenset({31})))
    months = maybe(range(1, 13), 6) if doms is None else None
    return Recurrence(
        minutes=frozenset({minute}),
        hours=hours,
        days_of_month=doms,
        months=months,
        days_of_week=dows,
    )


instants = st.datetimes(min_value=datetime(2005, 1, 1), max_value=datetime(2040, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def _in_gap(local: datetime, tz: str) -> bool:
    return local_now(slot_instant(local, tz), tz) != local


@settings(max_examples=150, deadline=None)
@given(rec=recurrences(), tz=st.sampled_from(ZONES), now=instants)
def test_next_slots_properties(rec: Recurrence, tz: str, now: datetime) -> None:
    found = next_slots(rec, tz, now, 4)
    assert found  # every generated rule fires within five years
    moments = [when for _, when in found]
    assert moments[0] > now
    assert increasing(moments)
    assert len({key for key, _ in found}) == len(found)
    for key, when in found:
        local = from_local_key(key)
        assert slot_instant(local, tz) == when
        assert local_now(when, tz) == local or _in_gap(local, tz)
    # Re-planning from a fire time continues the same plan; catch-up sees the same slots.
    assert next_slots(rec, tz, moments[0], 3) == found[1:]
    assert missed_slots(rec, tz, now, moments[-1]) == found


@settings(max_examples=150, deadline=None)
@given(rec=recurrences(), start=st.dates(date(2000, 1, 1), date(2040, 1, 1)))
def test_slots_after_matches_a_brute_force_scan(rec: Recurrence, start: date) -> None:
    after = datetime.combine(start, datetime.min.time()) + timedelta(hours=11, minutes=20)
    expected: list[datetime] = []
    day = start
    while len(expected) < 6 and day < start + timedelta(days=800):
        dom_ok = rec.days_of_month is None or day.day in rec.days_of_month
        dow_ok = rec.days_of_week is None or (day.weekday() + 1) % 7 in rec.days_of_week
        both = rec.days_of_month is not None and rec.days_of_week is not None
        month_ok = rec.months is None or day.month in rec.months
        if month_ok and ((dom_ok or dow_ok) if both else (dom_ok and dow_ok)):
            for hour in sorted(rec.hours):
                for minute in sorted(rec.minutes):
                    slot = datetime(day.year, day.month, day.day, hour, minute)
                    if slot > after:
                        expected.append(slot)
        day += timedelta(days=1)
    assert rec.slots_after(after, 6) == expected[:6]
