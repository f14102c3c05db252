"""The one timestamp format stored in the database.

Every timestamp column holds UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: always
microseconds, always ``Z``.  The fixed width matters: the outbox and the
retention queries compare timestamps as TEXT, and ``...:00Z`` vs
``...:00.5Z`` would sort wrongly if the format varied.  Callers may pass any
offset-aware ISO-8601 string or an aware ``datetime``; it is normalised here.
Naive values are refused: a naive time is a bug waiting for a DST change.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_db_time(value: str | datetime) -> str:
    """Normalise an aware ISO-8601 string or datetime to the stored UTC form."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    else:
        raise TypeError(f"timestamp must be str or datetime, not {type(value).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"timestamp has no UTC offset (naive): {value!r}")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_db_time_or_none(value: str | datetime | None) -> str | None:
    return None if value is None else to_db_time(value)


def utc_now() -> str:
    """The default clock of :class:`storage.Database` (stored format)."""
    return to_db_time(datetime.now(UTC))


def parse_db_time(value: str) -> datetime:
    """Stored text back to an aware UTC datetime."""
    return datetime.fromisoformat(value)
