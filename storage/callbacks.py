"""Call-backs to customers whose call dropped after they were given a protocol.

A ``callbacks`` row is one promise to call a customer back (one per call,
``UNIQUE (call_id)``), ``callback_attempts`` its dialling attempts:

    scheduled ──claim──▶ dialling ──answered, protocol read──▶ completed
        ▲                   │
        └──retry (delay)────┤ no answer / busy / failure, attempts left
                            └── no attempts left ──▶ failed
    scheduled / dialling ──cancel──▶ cancelled

Scheduling happens in the same transaction that records the call's end
(:func:`end_call_sync`), so a crash can never keep the one without the other;
:func:`sweep_sync` still schedules dropped calls that have no row (calls ended
by another process, or before call-backs were enabled within the look-back).
Claims lease the row like the SMS outbox does: a scheduler that dies while
dialling leaves the row 'dialling' until ``lease_until``; the next claim closes
the dangling attempt as 'interrupted' and counts it.

The Q.850 cause of a call's end is kept in ``calls.hangup_cause`` as a
``q850=NN`` token (see :func:`cause_text`), so the sweep can decide later
exactly as the live hook did.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import calls as calls_table
from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import InvalidStateError, NotFoundError
from .timefmt import parse_db_time, to_db_time

if TYPE_CHECKING:
    from .db import Database

STATES = ("scheduled", "dialling", "completed", "failed", "cancelled")
FINAL_STATES = frozenset({"completed", "failed", "cancelled"})
# A call is eligible when it ended in one of these states: the protocol had
# been allocated (reading it, read, or recording) and the hand-off to an agent
# had not happened yet.
ELIGIBLE_END_STATUSES = ("abandoned_in_protocol", "protocol_given", "recording")
# Attempt outcomes.
ANSWERED_PLAYED = "answered_played"      # answered, announcement + protocol played in full
CUSTOMER_HUNG_UP = "customer_hung_up"    # answered, then hung up (normally) before the end
DROPPED = "dropped"                      # answered, then the network dropped it again
NO_ANSWER = "no_answer"
BUSY = "busy"
FAILED = "failed"                        # the call could not be placed / other network failure
INTERRUPTED = "interrupted"              # the scheduler stopped mid-attempt
OUTCOMES = frozenset({ANSWERED_PLAYED, CUSTOMER_HUNG_UP, DROPPED, NO_ANSWER, BUSY, FAILED, INTERRUPTED})
# Outcomes that end the call-back (the customer was reached); others retry.
REACHED = frozenset({ANSWERED_PLAYED, CUSTOMER_HUNG_UP})

ACTOR = "callproof-callback"
_Q850 = re.compile(r"\bq850=(\d{1,3})\b")


def cause_text(description: str, cause: int | None) -> str:
    """The ``calls.hangup_cause`` text: the event's description plus ``q850=NN`` when known."""
    return description if cause is None else f"{description} q850={cause}"


def cause_of(hangup_cause: str | None) -> int | None:
    """The Q.850 cause recorded by :func:`cause_text`, else None."""
    m = _Q850.search(hangup_cause or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class Plan:
    """How to schedule: the [callback] limits that apply."""

    first_delay_seconds: int
    max_attempts: int


def _at(now: str | datetime, seconds: float) -> str:
    return to_db_time(parse_db_time(to_db_time(now)) + timedelta(seconds=seconds))


# --------------------------------------------------------------- scheduling
def schedule_in_transaction_sync(conn: sqlite3.Connection, call_id: int, *, reason: str, plan: Plan,
                                 now: str | datetime, actor: str = ACTOR) -> int | None:
    """Insert the call-back of ``call_id`` inside the caller's write transaction.

    Returns the new id, or None when the call already has one (idempotent) or
    cannot be called back (no protocol, no E.164 caller number); the reason is
    then in :func:`why_not_schedulable`.
    """
    if not conn.in_transaction:
        raise RuntimeError("schedule_in_transaction_sync needs an open write transaction")
    call = calls_table.get_sync(conn, call_id)
    if call is None:
        raise NotFoundError(f"call {call_id} does not exist")
    if why_not_schedulable(call) is not None:
        return None
    now = to_db_time(now)
    cur = conn.execute(
        "INSERT INTO callbacks (call_id, protocol, destination, language, reason, state, max_attempts,"
        " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'scheduled', ?, ?, ?, ?)"
        " ON CONFLICT (call_id) DO NOTHING",
        (call_id, call["protocol"], call["caller_number"], call["language"] or "", reason,
         plan.max_attempts, _at(now, plan.first_delay_seconds), now, now))
    if cur.rowcount == 0:
        return None
    callback_id = inserted_id(cur)
    append_in_transaction_sync(conn, "callback.scheduled", actor, now, protocol=call["protocol"],
                               subject=f"callback:{callback_id}",
                               details={"call_id": call_id, "reason": reason})
    return callback_id


def why_not_schedulable(call: dict[str, Any]) -> str | None:
    """None when ``call`` can be called back, else what is missing."""
    if not call.get("protocol"):
        return "the call has no protocol"
    number = call.get("caller_number") or ""
    if not (number.startswith("+") and number[1:].isdigit() and number[1:2] != "0"):
        return "the caller number is not a callable E.164 number"
    return None


def end_call_sync(conn: sqlite3.Connection, call_id: int, changes: dict[str, Any], *, now: str | datetime,
                  schedule_reason: str | None = None, plan: Plan | None = None) -> int | None:
    """Record a call's end (``calls.update``) and, when ``schedule_reason`` is
    given, its call-back, in one transaction.  Returns the call-back id (None
    when nothing was scheduled).  Without a call-back the end is one statement, which needs no
    transaction of its own (on PostgreSQL two round trips fewer)."""
    if schedule_reason is None or plan is None:
        calls_table.update_sync(conn, call_id, changes, now)
        return None
    with immediate(conn):
        calls_table.update_sync(conn, call_id, changes, now)
        return schedule_in_transaction_sync(conn, call_id, reason=schedule_reason, plan=plan, now=now)


def sweep_sync(conn: sqlite3.Connection, *, drop_causes: Iterable[int], since: str | datetime,
               plan: Plan, now: str | datetime) -> list[int]:
    """Schedule call-backs for eligible calls ended since ``since`` by a drop
    cause and with no call-back row (what a crash or another process missed)."""
    drops = frozenset(drop_causes)
    statuses = ", ".join(f"'{s}'" for s in ELIGIBLE_END_STATUSES)
    with immediate(conn):
        rows = fetch_all(conn.execute(
            f"SELECT c.id, c.hangup_cause FROM calls c WHERE c.status IN ({statuses})"
            " AND c.ended_at >= ? AND c.protocol IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM callbacks b WHERE b.call_id = c.id) ORDER BY c.ended_at, c.id",
            (to_db_time(since),)))
        scheduled = []
        for row in rows:
            cause = cause_of(row["hangup_cause"])
            if cause in drops:
                cid = schedule_in_transaction_sync(conn, row["id"], reason=f"dropped q850={cause} (sweep)",
                                                   plan=plan, now=now)
                if cid is not None:
                    scheduled.append(cid)
        return scheduled


def schedule_manual_sync(conn: sqlite3.Connection, protocol: str, *, actor: str, plan: Plan,
                         now: str | datetime) -> int:
    """An operator asks for a call-back of the call with ``protocol``.

    A finished call-back of that call (completed, failed, cancelled) is opened
    again with ``plan.max_attempts`` more attempts; one still scheduled or
    dialling is refused (InvalidStateError)."""
    if not actor:
        raise ValueError("who schedules the call-back (--by) is required")
    now = to_db_time(now)
    with immediate(conn):
        call = calls_table.get_by_protocol_sync(conn, protocol)
        if call is None:
            raise NotFoundError(f"no call has protocol {protocol}")
        missing = why_not_schedulable(call)
        if missing is not None:
            raise InvalidStateError(f"cannot call back protocol {protocol}: {missing}")
        existing = fetch_one(conn.execute("SELECT * FROM callbacks WHERE call_id = ?", (call["id"],)))
        if existing is None:
            cid = schedule_in_transaction_sync(conn, call["id"], reason=f"manual by {actor}",
                                               plan=Plan(0, plan.max_attempts), now=now, actor=actor)
            assert cid is not None
            return cid
        if existing["state"] not in FINAL_STATES:
            raise InvalidStateError(f"call-back {existing['id']} of protocol {protocol} is already "
                                    f"{existing['state']}")
        conn.execute(
            "UPDATE callbacks SET state = 'scheduled', next_attempt_at = ?, max_attempts = attempts + ?,"
            " reason = ?, outcome = NULL, completed_at = NULL, updated_at = ? WHERE id = ?",
            (now, plan.max_attempts, f"manual by {actor}", now, existing["id"]))
        append_in_transaction_sync(conn, "callback.scheduled", actor, now, protocol=protocol,
                                   subject=f"callback:{existing['id']}",
                                   details={"call_id": call["id"], "reason": "manual", "reopened": True})
        return existing["id"]


def cancel_sync(conn: sqlite3.Connection, callback_id: int, *, reason: str, actor: str,
                now: str | datetime) -> None:
    """Cancel a scheduled (or dialling) call-back; an attempt already ringing finishes
    and is recorded, but no further attempt is made."""
    if not reason or not actor:
        raise ValueError("a cancellation needs a reason (--reason) and who cancels it (--by)")
    now = to_db_time(now)
    with immediate(conn):
        row = get_sync(conn, callback_id)
        if row is None:
            raise NotFoundError(f"call-back {callback_id} does not exist")
        if row["state"] in FINAL_STATES:
            raise InvalidStateError(f"call-back {callback_id} is already {row['state']}")
        conn.execute(
            "UPDATE callbacks SET state = 'cancelled', outcome = ?, next_attempt_at = NULL,"
            " completed_at = ?, updated_at = ? WHERE id = ?",
            (f"cancelled: {reason}", now, now, callback_id))
        append_in_transaction_sync(conn, "callback.cancelled", actor, now, protocol=row["protocol"],
                                   subject=f"callback:{callback_id}", details={"reason": reason})


# ----------------------------------------------------------------- dialling
_SQL_DUE = """
SELECT id FROM (
    SELECT id, next_attempt_at AS due FROM callbacks INDEXED BY callbacks_due
        WHERE state = 'scheduled' AND next_attempt_at <= :now
    UNION ALL
    SELECT id, lease_until AS due FROM callbacks WHERE state = 'dialling' AND lease_until <= :now
) AS due_rows ORDER BY due, id LIMIT :limit
"""


def claim_sync(conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float,
               now: str | datetime) -> list[dict]:
    """Lease up to ``limit`` due call-backs to ``owner`` and open an attempt for each.

    Due: 'scheduled' with ``next_attempt_at`` reached, or 'dialling' whose lease
    expired (its open attempt is closed as 'interrupted').  A row whose attempts
    are used up becomes 'failed' instead.  Each returned row carries
    ``attempt_id`` and ``attempt``.
    """
    if not owner or limit < 1 or lease_seconds <= 0:
        raise ValueError("claim needs an owner, limit >= 1 and lease_seconds > 0")
    now = to_db_time(now)
    lease_until = _at(now, lease_seconds)
    claimed = []
    with immediate(conn):
        for (cid,) in conn.execute(_SQL_DUE, {"now": now, "limit": limit}).fetchall():
            conn.execute("UPDATE callback_attempts SET ended_at = ?, outcome = ? WHERE callback_id = ?"
                         " AND ended_at IS NULL", (now, INTERRUPTED, cid))
            row = _locked_row(conn, cid)
            if row["attempts"] >= row["max_attempts"]:
                _final(conn, row, "failed", f"gave up after {row['attempts']} attempts "
                       f"(last: {_last_outcome(conn, cid)})", now)
                continue
            attempt = row["attempts"] + 1
            conn.execute("UPDATE callbacks SET state = 'dialling', attempts = ?, lease_owner = ?,"
                         " lease_until = ?, updated_at = ? WHERE id = ?",
                         (attempt, owner, lease_until, now, cid))
            cur = conn.execute("INSERT INTO callback_attempts (callback_id, attempt, started_at)"
                               " VALUES (?, ?, ?)", (cid, attempt, now))
            claimed.append({**_locked_row(conn, cid), "attempt_id": inserted_id(cur), "attempt": attempt})
    return claimed


def _last_outcome(conn: sqlite3.Connection, callback_id: int) -> str | None:
    row = conn.execute("SELECT outcome FROM callback_attempts WHERE callback_id = ? ORDER BY attempt DESC"
                       " LIMIT 1", (callback_id,)).fetchone()
    return row[0] if row else None


def _final(conn: sqlite3.Connection, row: dict, state: str, outcome: str, now: str) -> None:
    conn.execute("UPDATE callbacks SET state = ?, outcome = ?, next_attempt_at = NULL, lease_owner = NULL,"
                 " lease_until = NULL, completed_at = ?, updated_at = ? WHERE id = ?",
                 (state, outcome, now, now, row["id"]))
    append_in_transaction_sync(conn, f"callback.{state}", ACTOR, now, protocol=row["protocol"],
                               subject=f"callback:{row['id']}",
                               details={"attempts": row["attempts"], "outcome": outcome})


def attempt_dialled_sync(conn: sqlite3.Connection, attempt_id: int, channel_id: str) -> None:
    conn.execute("UPDATE callback_attempts SET channel_id = ? WHERE id = ?", (channel_id, attempt_id))


def attempt_answered_sync(conn: sqlite3.Connection, attempt_id: int, now: str | datetime) -> None:
    conn.execute("UPDATE callback_attempts SET answered_at = ? WHERE id = ? AND answered_at IS NULL",
                 (to_db_time(now), attempt_id))


def finish_attempt_sync(conn: sqlite3.Connection, attempt_id: int, *, owner: str, outcome: str,
                        cause: int | None, retry_delay_seconds: float, now: str | datetime) -> dict:
    """Close an attempt and move its call-back on: 'completed' when the customer
    was reached, else 'scheduled' again after ``retry_delay_seconds`` while
    attempts remain, else 'failed'.  A call-back cancelled meanwhile, or
    re-leased by another owner, only gets its attempt recorded.  Returns the
    call-back row after the change."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r} (known: {', '.join(sorted(OUTCOMES))})")
    now = to_db_time(now)
    with immediate(conn):
        attempt = fetch_one(conn.execute("SELECT * FROM callback_attempts WHERE id = ?", (attempt_id,)))
        if attempt is None:
            raise NotFoundError(f"call-back attempt {attempt_id} does not exist")
        conn.execute("UPDATE callback_attempts SET ended_at = ?, hangup_cause = ?, outcome = ?"
                     " WHERE id = ? AND ended_at IS NULL", (now, cause, outcome, attempt_id))
        row = _locked_row(conn, attempt["callback_id"])
        if row["state"] != "dialling" or row["lease_owner"] != owner:
            return row
        if outcome in REACHED:
            _final(conn, row, "completed", outcome, now)
        elif row["attempts"] >= row["max_attempts"]:
            _final(conn, row, "failed", f"gave up after {row['attempts']} attempts (last: {outcome})", now)
        else:
            conn.execute("UPDATE callbacks SET state = 'scheduled', next_attempt_at = ?, lease_owner = NULL,"
                         " lease_until = NULL, outcome = ?, updated_at = ? WHERE id = ?",
                         (_at(now, retry_delay_seconds), f"retrying (last: {outcome})", now, row["id"]))
        return _locked_row(conn, row["id"])


def next_due_sync(conn: sqlite3.Connection) -> str | None:
    """When the next claim can find something (earliest due or lease end), else None."""
    row = conn.execute(
        "SELECT min(due) FROM (SELECT min(next_attempt_at) AS due FROM callbacks WHERE state = 'scheduled'"
        " UNION ALL SELECT min(lease_until) FROM callbacks WHERE state = 'dialling') AS due_rows").fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------ reading
def _locked_row(conn: sqlite3.Connection, callback_id: int) -> dict:
    """A call-back row read inside the write transaction that found it."""
    row = get_sync(conn, callback_id)
    assert row is not None  # rows are never deleted, and the transaction is ours
    return row


def get_sync(conn: sqlite3.Connection, callback_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM callbacks WHERE id = ?", (callback_id,)))


def get_for_call_sync(conn: sqlite3.Connection, call_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM callbacks WHERE call_id = ?", (call_id,)))


def list_sync(conn: sqlite3.Connection, state: str | None = None, limit: int = 100) -> list[dict]:
    if state is not None and state not in STATES:
        raise ValueError(f"unknown call-back state {state!r} (known: {', '.join(STATES)})")
    where, args = ("WHERE state = ?", [state]) if state else ("", [])
    return fetch_all(conn.execute(f"SELECT * FROM callbacks {where} ORDER BY id DESC LIMIT ?", (*args, limit)))


def attempts_sync(conn: sqlite3.Connection, callback_id: int) -> list[dict]:
    return fetch_all(conn.execute("SELECT * FROM callback_attempts WHERE callback_id = ? ORDER BY attempt",
                                  (callback_id,)))


class Callbacks:
    """Async repository over the sync functions (``Callbacks(db)``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def end_call(self, call_id: int, changes: dict[str, Any], *, schedule_reason: str | None = None,
                       plan: Plan | None = None) -> int | None:
        return await self._db.run_in_connection(end_call_sync, call_id, changes, now=self._db.now(),
                                                schedule_reason=schedule_reason, plan=plan)

    async def sweep(self, *, drop_causes: Iterable[int], since: str | datetime, plan: Plan) -> list[int]:
        return await self._db.run_in_connection(sweep_sync, drop_causes=tuple(drop_causes), since=since,
                                                plan=plan, now=self._db.now())

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[dict]:
        return await self._db.run_in_connection(claim_sync, owner, limit, lease_seconds, self._db.now())

    async def dialled(self, attempt_id: int, channel_id: str) -> None:
        await self._db.run_in_connection(attempt_dialled_sync, attempt_id, channel_id)

    async def answered(self, attempt_id: int) -> None:
        await self._db.run_in_connection(attempt_answered_sync, attempt_id, self._db.now())

    async def finish_attempt(self, attempt_id: int, *, owner: str, outcome: str, cause: int | None,
                             retry_delay_seconds: float) -> dict:
        return await self._db.run_in_connection(finish_attempt_sync, attempt_id, owner=owner, outcome=outcome,
                                                cause=cause, retry_delay_seconds=retry_delay_seconds,
                                                now=self._db.now())

    async def next_due(self) -> str | None:
        return await self._db.run_in_connection(next_due_sync)

    async def get(self, callback_id: int) -> dict | None:
        return await self._db.run_in_connection(get_sync, callback_id)

    async def get_for_call(self, call_id: int) -> dict | None:
        return await self._db.run_in_connection(get_for_call_sync, call_id)

    async def attempts(self, callback_id: int) -> list[dict]:
        return await self._db.run_in_connection(attempts_sync, callback_id)
