"""The ``recording_requests`` table: a customer's request for the recording of a call.

A request has its own protocol (allocated here, in the same transaction as the
row and its audit entry, so an intake that fails leaves neither a request nor a
used protocol number), a state, a due time and who acted.  State changes follow
the diagram in docs/customer-rights.md and each one writes an audit entry in
the same transaction.  ``closed_at`` (set when the request reaches
``delivered`` or ``refused``) is what the retention sweeper's hold rule reads
(storage/holds.py): an open request holds the recording.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import InvalidStateError, NotFoundError, ProtocolRangeError
from .protocols import _SQL_BUMP, _SQL_PROTOCOL, MAX_SEQUENCE, _check_year
from .timefmt import to_db_time

__all__ = [
    "CHANNELS",
    "CLOSED_STATES",
    "STATES",
    "TRANSITIONS",
    "NewRequest",
    "count_open_sync",
    "create_request_sync",
    "get_request_by_protocol_sync",
    "get_request_sync",
    "list_requests_sync",
    "requests_for_call_sync",
    "set_state_in_transaction_sync",
    "set_state_sync",
]

STATES = ("needs_identity_check", "received", "exported", "delivered", "refused")
CLOSED_STATES = frozenset({"delivered", "refused"})
CHANNELS = ("cli", "http", "ivr", "web")

# state -> states it may move to (docs/customer-rights.md, "Request states").
# exported -> exported (another format) and delivered -> delivered (a new link)
# are allowed; nothing leaves 'refused', and nothing reopens a closed request.
TRANSITIONS: dict[str, frozenset[str]] = {
    "needs_identity_check": frozenset({"received", "refused"}),
    "received": frozenset({"exported", "refused"}),
    "exported": frozenset({"exported", "delivered", "refused"}),
    "delivered": frozenset({"delivered"}),
    "refused": frozenset(),
}

# The audit action written for each transition (old state, new state).
_ACTIONS = {
    ("needs_identity_check", "received"): "request.identity_verified",
    ("received", "exported"): "request.exported",
    ("exported", "exported"): "request.exported",
    ("exported", "delivered"): "request.delivered",
    ("delivered", "delivered"): "request.delivered",
}


@dataclass(frozen=True, slots=True)
class NewRequest:
    """What intake knows about a request before it is stored."""

    call_protocol: str
    state: str                        # 'received' or 'needs_identity_check'
    channel: str                      # one of CHANNELS
    opened_at: str | datetime
    due_at: str | datetime
    created_by: str
    requester_number: str | None = None         # E.164
    requester_identity_hash: str | None = None  # keyed hash of a CPF / customer code
    deliver_to: str | None = None               # 'sms:+55...' or 'email:a@b'
    identity_basis: str | None = None           # why it is 'received' (storage/request_codes.py)


def _allocate_request_protocol(conn: sqlite3.Connection, year: int, at: str) -> str:
    """The next protocol of ``year`` (kind 'request'), inside the caller's transaction.

    The same statements as storage.protocols.allocate_sync, which opens its own
    transaction and so cannot share ours."""
    _check_year(year)
    sequence = conn.execute(_SQL_BUMP, (year,)).fetchall()[0][0]
    if sequence > MAX_SEQUENCE:
        raise ProtocolRangeError(f"protocol sequence for {year} exhausted ({MAX_SEQUENCE})")
    protocol = f"{year:04d}{sequence:013d}"
    conn.execute(_SQL_PROTOCOL, (protocol, year, sequence, at, "request", None))
    return protocol


_SQL_SAME_OPEN = (
    "SELECT * FROM recording_requests WHERE protocol = ? AND closed_at IS NULL"
    " AND requester_number IS ? AND requester_identity_hash IS ? AND request_protocol IS NOT NULL"
    " ORDER BY id LIMIT 1"
)


def create_request_sync(
    conn: sqlite3.Connection,
    new: NewRequest,
    *,
    year: int,
    audit_action: str,
    audit_details: dict[str, Any] | None = None,
) -> tuple[dict, bool]:
    """Store a request with its own protocol and audit entry, in one transaction.

    Returns ``(row, created)``.  When the same requester (same number and same
    identity hash) already has an open request on that call protocol, that row
    is returned with ``created=False`` and nothing is written: intake is
    idempotent (a customer who calls twice gets the same request protocol).
    """
    if new.state not in ("received", "needs_identity_check"):
        raise ValueError(f"a new request is 'received' or 'needs_identity_check', not {new.state!r}")
    if new.channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {new.channel!r}")
    if not new.created_by or not new.created_by.strip():
        raise ValueError("a request needs who filed it (created_by)")
    opened_at, due_at = to_db_time(new.opened_at), to_db_time(new.due_at)
    with immediate(conn):
        existing = fetch_one(conn.execute(
            _SQL_SAME_OPEN, (new.call_protocol, new.requester_number, new.requester_identity_hash)))
        if existing is not None:
            return existing, False
        request_protocol = _allocate_request_protocol(conn, year, opened_at)
        cur = conn.execute(
            "INSERT INTO recording_requests (protocol, opened_at, request_protocol, state, channel,"
            " due_at, requester_number, requester_identity_hash, deliver_to, created_by, updated_by,"
            " updated_at, identity_basis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new.call_protocol, opened_at, request_protocol, new.state, new.channel, due_at,
             new.requester_number, new.requester_identity_hash, new.deliver_to, new.created_by,
             new.created_by, opened_at, new.identity_basis))
        request_id = inserted_id(cur)
        append_in_transaction_sync(
            conn, audit_action, new.created_by, opened_at, protocol=new.call_protocol,
            subject=f"request:{request_id}",
            details={"request_protocol": request_protocol, "state": new.state,
                     "channel": new.channel, "due_at": due_at, **(audit_details or {})})
        row = get_request_sync(conn, request_id)
    assert row is not None  # written just above, in this transaction
    return row, True


def get_request_sync(conn: sqlite3.Connection, request_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM recording_requests WHERE id = ?", (request_id,)))


def get_request_by_protocol_sync(conn: sqlite3.Connection, request_protocol: str) -> dict | None:
    """The request whose *own* protocol is ``request_protocol``."""
    return fetch_one(conn.execute(
        "SELECT * FROM recording_requests WHERE request_protocol = ?", (request_protocol,)))


def requests_for_call_sync(conn: sqlite3.Connection, call_protocol: str) -> list[dict]:
    """Every request (open or closed) on a call's protocol, oldest first."""
    return fetch_all(conn.execute(
        "SELECT * FROM recording_requests WHERE protocol = ? ORDER BY opened_at, id",
        (call_protocol,)))


def list_requests_sync(
    conn: sqlite3.Connection,
    *,
    states: list[str] | tuple[str, ...] | None = None,
    open_only: bool = False,
    due_before: str | datetime | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Requests ordered by due time (soonest first; rows without one last).

    ``states``: only these states; ``open_only``: not yet delivered/refused;
    ``due_before``: due at or before this time (with ``open_only`` this is the
    "due soon or overdue" queue)."""
    where: list[str] = []
    params: list[Any] = []
    if states:
        bad = sorted(set(states) - set(STATES))
        if bad:
            raise ValueError(f"unknown request state(s) {', '.join(bad)} (known: {', '.join(STATES)})")
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        params.extend(states)
    if open_only:
        where.append("closed_at IS NULL")
    if due_before is not None:
        where.append("due_at <= ?")
        params.append(to_db_time(due_before))
    sql = "SELECT * FROM recording_requests"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY due_at IS NULL, due_at, id"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        sql += " LIMIT ?"
        params.append(limit)
    return fetch_all(conn.execute(sql, params))


def count_open_sync(conn: sqlite3.Connection, *, now: str | datetime,
                    soon_until: str | datetime) -> dict[str, int]:
    """Open requests: all, overdue (due before ``now``) and due soon (due between
    ``now`` and ``soon_until``)."""
    now, soon_until = to_db_time(now), to_db_time(soon_until)
    row = conn.execute(
        "SELECT count(*), coalesce(sum(CASE WHEN due_at < ? THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN due_at >= ? AND due_at <= ? THEN 1 ELSE 0 END), 0)"
        " FROM recording_requests WHERE closed_at IS NULL", (now, now, soon_until)).fetchone()
    return {"open": row[0], "overdue": row[1], "due_soon": row[2]}


def set_state_in_transaction_sync(
    conn: sqlite3.Connection,
    request_id: int,
    state: str,
    *,
    actor: str,
    at: str | datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict:
    """:func:`set_state_sync` for a caller already holding a write transaction
    (e.g. an export that stores its ``request_exports`` row in the same one)."""
    if not conn.in_transaction:
        raise RuntimeError("set_state_in_transaction_sync needs an open write transaction")
    if state not in STATES:
        raise ValueError(f"unknown request state {state!r} (known: {', '.join(STATES)})")
    if not actor or not actor.strip():
        raise ValueError("a request state change needs who acted (actor)")
    if state == "refused" and (not reason or not reason.strip()):
        raise ValueError("refusing a request needs a reason")
    at = to_db_time(at)
    row = get_request_sync(conn, request_id)
    if row is None:
        raise NotFoundError(f"recording request {request_id} does not exist")
    old = row["state"]
    if state not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "none (it is final)"
        raise InvalidStateError(
            f"request {request_id} is {old!r}; it cannot become {state!r} (allowed: {allowed})")
    closed_at = row["closed_at"]
    if state in CLOSED_STATES and closed_at is None:
        closed_at = max(at, row["opened_at"])  # the CHECK wants closed_at >= opened_at
    conn.execute(
        "UPDATE recording_requests SET state = ?, closed_at = ?, refused_reason = ?,"
        " updated_by = ?, updated_at = ? WHERE id = ?",
        (state, closed_at, (reason or "").strip() if state == "refused" else row["refused_reason"],
         actor, at, request_id))
    if (old, state) == ("needs_identity_check", "received"):  # who showed the requester is the caller
        basis = (details or {}).get("identity_basis", "agent")
        conn.execute("UPDATE recording_requests SET identity_basis = ? WHERE id = ?", (basis, request_id))
    action = _ACTIONS.get((old, state), f"request.{state}")
    audit = {"request_protocol": row["request_protocol"], "from": old, "to": state}
    if state == "refused":
        audit["reason"] = (reason or "").strip()  # not empty: checked above
    append_in_transaction_sync(conn, action, actor, at, protocol=row["protocol"],
                               subject=f"request:{request_id}", details={**audit, **(details or {})})
    updated = get_request_sync(conn, request_id)
    assert updated is not None  # still there: the transaction is ours
    return updated


def set_state_sync(
    conn: sqlite3.Connection,
    request_id: int,
    state: str,
    *,
    actor: str,
    at: str | datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict:
    """Move a request to ``state`` (allowed transitions only) and audit it, in one
    transaction; returns the updated row.

    InvalidStateError names the current state and what it may become;
    NotFoundError for an unknown id; ValueError for a refusal without reason.
    ``closed_at`` is set the first time the request reaches delivered/refused
    (delivering again does not move it).  ``details`` are added to the audit entry.
    """
    with immediate(conn):
        return set_state_in_transaction_sync(conn, request_id, state, actor=actor, at=at,
                                             reason=reason, details=details)


def count_by_state_sync(conn: sqlite3.Connection) -> dict[str, int]:
    """Number of requests in each of :data:`STATES` (0 for a state without any)."""
    found = dict(conn.execute("SELECT state, count(*) FROM recording_requests GROUP BY state").fetchall())
    return {s: found.get(s, 0) for s in STATES}


def request_with_call_sync(conn: sqlite3.Connection, request_id: int) -> dict | None:
    """The request plus its call's ``call_caller_number`` and ``call_started_at``."""
    return fetch_one(conn.execute(
        "SELECT q.*, c.caller_number AS call_caller_number, c.started_at AS call_started_at"
        " FROM recording_requests q LEFT JOIN calls c ON c.protocol = q.protocol WHERE q.id = ?",
        (request_id,)))
