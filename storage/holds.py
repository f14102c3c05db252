"""Legal holds and the customer-request hook: what keeps a recording (and
its call record) from the retention sweeper.

A hold selects by protocol, by caller number (E.164, matched on
``calls.caller_number``) or by a date range on ``started_at`` ([from, to)).
Placing and releasing write an audit entry in the same transaction.

``recording_requests`` is the hook for customer requests (a later issue):
a request open on a protocol holds its recording until ``closed_at`` plus
``[retention] request_grace_days``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import InvalidStateError, NotFoundError
from .timefmt import to_db_time

KINDS = ("protocol", "caller", "date_range")

# SQL: is the row aliased ``r`` (needs r.protocol, r.started_at, and the
# caller number expression passed in) held?  Parameter :grace_cutoff = now -
# grace period (stored format).
def held_sql(protocol: str, caller: str, started_at: str) -> str:
    return (
        "(EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND ("
        f" (h.kind = 'protocol' AND h.protocol = {protocol})"
        f" OR (h.kind = 'caller' AND h.caller_number = {caller})"
        f" OR (h.kind = 'date_range' AND {started_at} >= h.from_at AND {started_at} < h.to_at)))"
        " OR EXISTS (SELECT 1 FROM recording_requests q"
        f" WHERE q.protocol = {protocol} AND (q.closed_at IS NULL OR q.closed_at > :grace_cutoff)))"
    )


def place_hold_sync(
    conn: sqlite3.Connection,
    kind: str,
    *,
    reason: str,
    placed_by: str,
    at: str | datetime,
    protocol: str | None = None,
    caller_number: str | None = None,
    from_at: str | datetime | None = None,
    to_at: str | datetime | None = None,
) -> int:
    """Place a hold; ValueError names what is wrong with the selector."""
    if kind not in KINDS:
        raise ValueError(f"hold kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not reason or not reason.strip():
        raise ValueError("a hold needs a reason")
    if not placed_by or not placed_by.strip():
        raise ValueError("a hold needs who placed it (placed_by)")
    if kind == "protocol":
        if not (isinstance(protocol, str) and len(protocol) == 17 and protocol.isdigit()
                and protocol.isascii()):
            raise ValueError(f"protocol must be 17 digits, got {protocol!r}")
        selector = {"protocol": protocol}
    elif kind == "caller":
        if not (isinstance(caller_number, str) and caller_number.startswith("+")
                and caller_number[1:].isdigit() and caller_number.isascii()
                and 3 <= len(caller_number) <= 16 and caller_number[1] != "0"):
            raise ValueError(f"caller number must be E.164 (+5511...), got {caller_number!r}")
        selector = {"caller_number": caller_number}
    else:
        if from_at is None or to_at is None:
            raise ValueError("a date_range hold needs both from and to")
        from_at, to_at = to_db_time(from_at), to_db_time(to_at)
        if not from_at < to_at:
            raise ValueError(f"date range is empty: from {from_at} is not before to {to_at}")
        selector = {"from_at": from_at, "to_at": to_at}
    at = to_db_time(at)
    with immediate(conn):
        cur = conn.execute(
            "INSERT INTO legal_holds (kind, protocol, caller_number, from_at, to_at, reason,"
            " placed_by, placed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, selector.get("protocol"), selector.get("caller_number"),
             selector.get("from_at"), selector.get("to_at"), reason, placed_by, at),
        )
        hold_id = inserted_id(cur)
        append_in_transaction_sync(
            conn, "hold.placed", placed_by, at, protocol=selector.get("protocol"),
            subject=f"hold:{hold_id}", details={"kind": kind, "reason": reason, **selector})
    return hold_id


def release_hold_sync(
    conn: sqlite3.Connection, hold_id: int, *, released_by: str, reason: str, at: str | datetime
) -> None:
    if not released_by or not reason:
        raise ValueError("releasing a hold needs who (released_by) and a reason")
    at = to_db_time(at)
    with immediate(conn):
        row = fetch_one(conn.execute("SELECT * FROM legal_holds WHERE id = ?", (hold_id,)))
        if row is None:
            raise NotFoundError(f"hold {hold_id} does not exist")
        if row["released_at"] is not None:
            raise InvalidStateError(
                f"hold {hold_id} was already released by {row['released_by']} at {row['released_at']}")
        conn.execute(
            "UPDATE legal_holds SET released_by = ?, released_at = ?, release_reason = ? WHERE id = ?",
            (released_by, at, reason, hold_id))
        append_in_transaction_sync(
            conn, "hold.released", released_by, at, protocol=row["protocol"],
            subject=f"hold:{hold_id}", details={"kind": row["kind"], "reason": reason})


def list_holds_sync(conn: sqlite3.Connection, *, include_released: bool = False) -> list[dict]:
    where = "" if include_released else " WHERE released_at IS NULL"
    return fetch_all(conn.execute(f"SELECT * FROM legal_holds{where} ORDER BY id"))


def open_request_sync(
    conn: sqlite3.Connection, protocol: str, *, at: str | datetime, reference: str | None = None
) -> int:
    """Hook for customer requests: the recording of ``protocol`` is held while open.

    A bare row (state 'received', no request protocol nor due time); customer
    requests proper are filed by callproof.rights.requests.file_request_sync."""
    at = to_db_time(at)
    cur = conn.execute(
        "INSERT INTO recording_requests (protocol, reference, opened_at, updated_at)"
        " VALUES (?, ?, ?, ?)", (protocol, reference, at, at))
    return inserted_id(cur)


def close_request_sync(conn: sqlite3.Connection, request_id: int, *, at: str | datetime) -> None:
    """Close a hook request ('delivered'): its hold ends after the grace period."""
    at = to_db_time(at)
    cur = conn.execute(
        "UPDATE recording_requests SET closed_at = ?, state = 'delivered', updated_at = ?"
        " WHERE id = ? AND closed_at IS NULL", (at, at, request_id))
    if cur.rowcount == 0:
        raise NotFoundError(f"no open recording request {request_id}")
