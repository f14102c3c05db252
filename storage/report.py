"""What the compliance report (callproof/report/) reads: one row per call, recording, customer
request and history request started in a period, in one read transaction (a consistent
snapshot).  Read-only, and bounded: a period holding more than ``limit`` rows of one kind is
refused (:class:`ReportTooLarge`) rather than read into memory; the figures themselves are
computed in Python (callproof/report/figures.py), so a second backend only has to return the
same rows.

Times are the stored UTC texts; the period is ``[start, end)`` in stored format.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from .holds import held_sql
from .timefmt import to_db_time

#: Rows of one kind read for one report at most (about a year of a busy service's calls).
DEFAULT_LIMIT = 2_000_000


class ReportTooLarge(ValueError):
    """The period holds more rows than the report reads; ask for a shorter period."""


@dataclass(frozen=True)
class ReportRows:
    # started_at, consent_outcome, protocol_read_finished_at, first DELIVRD receipt of its protocol
    # SMS, handed_off_at, agent_answered_at, queue_abandoned_at
    calls: list[tuple] = field(default_factory=list)
    recordings: list[tuple] = field(default_factory=list)  # started_at, state, held (0/1)
    requests: list[tuple] = field(default_factory=list)  # opened_at, state, closed_at
    histories: list[tuple] = field(default_factory=list)  # received_at, produced_at


_CALLS = (
    "SELECT c.started_at, c.consent_outcome, c.protocol_read_finished_at,"
    " (SELECT min(o.dlr_at) FROM sms_outbox o WHERE o.protocol = c.protocol AND o.call_id = c.id"
    "   AND o.dlr_state = 'DELIVRD' AND o.dlr_at IS NOT NULL),"
    " c.handed_off_at, c.agent_answered_at, c.queue_abandoned_at"
    " FROM calls c WHERE c.started_at >= :start AND c.started_at < :end ORDER BY c.started_at LIMIT :limit")
_RECORDINGS = (
    "SELECT r.started_at, r.state, "
    + held_sql("r.protocol", "(SELECT c.caller_number FROM calls c WHERE c.id = r.call_id)", "r.started_at")
    + " FROM recordings r WHERE r.started_at >= :start AND r.started_at < :end ORDER BY r.started_at LIMIT :limit")
_REQUESTS = (
    "SELECT opened_at, state, closed_at FROM recording_requests"
    " WHERE opened_at >= :start AND opened_at < :end ORDER BY opened_at LIMIT :limit")
_HISTORIES = (
    "SELECT received_at, produced_at FROM history_requests"
    " WHERE received_at >= :start AND received_at < :end ORDER BY received_at LIMIT :limit")


def report_rows_sync(conn: sqlite3.Connection, *, start: str | datetime, end: str | datetime,
                     grace_cutoff: str | datetime, limit: int = DEFAULT_LIMIT) -> ReportRows:
    """The rows of ``[start, end)``; ``grace_cutoff`` = now minus ``[retention] request_grace_days``
    (a request closed after it still holds its recording)."""
    params = {"start": to_db_time(start), "end": to_db_time(end), "grace_cutoff": to_db_time(grace_cutoff),
              "limit": limit + 1}
    conn.execute("BEGIN")
    try:
        kinds = {}
        for name, sql in (("calls", _CALLS), ("recordings", _RECORDINGS), ("requests", _REQUESTS),
                          ("histories", _HISTORIES)):
            rows = [tuple(r) for r in conn.execute(sql, params).fetchall()]
            if len(rows) > limit:
                raise ReportTooLarge(f"the period holds more than {limit} {name}: ask for a shorter period")
            kinds[name] = rows
        return ReportRows(**kinds)
    finally:
        conn.execute("COMMIT")
