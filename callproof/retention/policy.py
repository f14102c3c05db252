"""Retention policy: which class a call's recording gets and until when it
is kept.

``retention_until`` is computed once, when the recording row is created, and
stored with it: a later change of the configured days applies to new
recordings only (the stored date is what was promised at the time).

Days are *calendar* days in the deployment time zone: the recording is kept
until the same local wall-clock time N days later (so a DST change in
between does not shorten or lengthen it by an hour), stored as UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo


@dataclass(frozen=True, slots=True)
class RetentionChoice:
    retention_class: str
    days: int
    why: str  # 'variable' | 'did' | 'context' | 'default'


def add_calendar_days(start: datetime, days: int, tz: tzinfo) -> datetime:
    """``start`` + ``days`` local calendar days (same wall-clock time), aware."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    local = start.astimezone(tz)
    # Aware + timedelta is wall-clock arithmetic in Python; the offset of the
    # result is looked up again, which is what we want across DST changes.
    return (local + timedelta(days=days)).astimezone(tz)


def retention_until(started_at: datetime, days: int, tz: tzinfo) -> datetime:
    return add_calendar_days(started_at, days, tz)


def choose_class(
    classes: Mapping[str, int],
    default_class: str,
    *,
    did_classes: Mapping[str, str] | None = None,
    context_classes: Mapping[str, str] | None = None,
    variable: str | None = None,
    did: str | None = None,
    context: str | None = None,
) -> RetentionChoice:
    """Channel variable (if it names a known class) > DID rule > entry-context
    rule > default.  An unknown class in the variable is ignored (the caller
    logs it): a typo in the dialplan must not cost the call its recording."""
    if variable and variable in classes:
        return RetentionChoice(variable, classes[variable], "variable")
    if did and did_classes and did in did_classes:
        cls = did_classes[did]
        return RetentionChoice(cls, classes[cls], "did")
    if context and context_classes and context in context_classes:
        cls = context_classes[context]
        return RetentionChoice(cls, classes[cls], "context")
    return RetentionChoice(default_class, classes[default_class], "default")
