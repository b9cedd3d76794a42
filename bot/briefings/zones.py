"""Wall time in a zone and the instant it names, across clock changes.

A rule is local wall time; the store keeps instants. Every local slot maps to exactly one
instant, even when the clocks change:

* Autumn (clocks go back): a repeated 01:30 maps to its FIRST occurrence (``fold=0``):
  Europe/London 2026-10-25 01:30 -> 00:30 UTC (01:30 BST). One local 01:30, one instant.
* Spring (clocks go forward): a 01:30 that does not exist still maps to an instant, so
  the day is not skipped. ``datetime(..., tzinfo=ZoneInfo(tz), fold=0)`` is read by
  zoneinfo with the offset from before the gap, i.e. just after it in wall time:
  Europe/London 2026-03-29 01:30 -> 01:30 UTC (02:30 BST).

Pure logic: no clock (callers pass the instant), no I/O beyond tzdata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["local_now", "require_aware", "slot_instant"]


def require_aware(value: datetime, name: str) -> None:
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
    require_aware(now_utc, "now_utc")
    return now_utc.astimezone(ZoneInfo(tz)).replace(tzinfo=None, fold=0)
