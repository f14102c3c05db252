"""Deadlines in local calendar days.

The law counts days on the customer's calendar, not in 24-hour blocks: a request
received at 23:50 on the 25th, with 10 days, is due at the end of the 5th of
the next month (local), whatever the UTC offset or a DST change in between.
So the day arithmetic is done on local dates and only the result is converted
to UTC (the stored form).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from callproof.storage.timefmt import parse_db_time

__all__ = [
    "DEADLINE_STATUSES",
    "END_OF_DAY",
    "days_remaining",
    "deadline_status",
    "due_at",
    "local_day_end",
]

DEADLINE_STATUSES = ("overdue", "due_soon", "on_time")
END_OF_DAY = time(23, 59, 59)


def _aware(value: str | datetime, name: str) -> datetime:
    dt = parse_db_time(value) if isinstance(value, str) else value
    if not isinstance(dt, datetime):
        raise TypeError(f"{name} must be a datetime or ISO-8601 string, got {type(value).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} has no UTC offset (naive): {value!r}")
    return dt


def local_day_end(day: date, tz: tzinfo) -> datetime:
    """23:59:59 local on ``day``, as an aware UTC datetime."""
    return datetime.combine(day, END_OF_DAY, tz).astimezone(UTC)


def due_at(received_at: str | datetime, days: int, tz: tzinfo) -> datetime:
    """End (23:59:59 local) of the day ``days`` calendar days after the local day
    of ``received_at``; returned in UTC."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"days must be a non-negative int, got {days!r}")
    local_day = _aware(received_at, "received_at").astimezone(tz).date()
    return local_day_end(local_day + timedelta(days=days), tz)


def days_remaining(due: str | datetime, now: str | datetime, tz: tzinfo) -> int:
    """Local calendar days from today to the due day: 0 on the due day itself,
    negative once it has passed (-1 the day after)."""
    due_day = _aware(due, "due_at").astimezone(tz).date()
    today = _aware(now, "now").astimezone(tz).date()
    return (due_day - today).days


def deadline_status(due: str | datetime, now: str | datetime, tz: tzinfo, soon_days: int) -> str:
    """``overdue`` once ``now`` is past ``due``; ``due_soon`` when at most
    ``soon_days`` local days remain; else ``on_time``."""
    if _aware(now, "now") > _aware(due, "due_at"):
        return "overdue"
    if days_remaining(due, now, tz) <= soon_days:
        return "due_soon"
    return "on_time"
