"""The gateway's answers to outbox attempts: each answer and the row state it
implies written together, alone (:func:`finish_attempt_sync`) or as a group
commit (:func:`finish_attempts_sync`).  Claims are :mod:`.outbox`."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import NoReturn

from ._sqlutil import fetch_one, immediate
from .errors import InvalidStateError, NotFoundError
from .outbox_receipts import attach_early_receipts, held_gateway_ids
from .timefmt import to_db_time

ATTEMPT_OUTCOMES = ("accepted", "transient", "throttled", "rejected", "unknown")
#: What a finished attempt leaves its outbox row as.
ROW_STATES = ("sent", "logged", "pending", "dead")


def _finish(
    conn: sqlite3.Connection,
    attempt_id: int,
    owner: str | None,
    allowed: tuple[str, ...],
    assignments: str,
    params: tuple,
    wanted: str,
) -> int:
    """Move the outbox row of attempt ``attempt_id`` (found in the same statement); its id.
    Refused, having written nothing: NotFoundError (no such attempt) or InvalidStateError."""
    states = ", ".join(f"'{s}'" for s in allowed)
    sql = (
        f"UPDATE sms_outbox SET {assignments}, lease_owner = NULL, lease_until = NULL"
        f" WHERE id = (SELECT outbox_id FROM sms_attempts WHERE id = ?) AND state IN ({states})"
    )
    args: tuple = (*params, attempt_id)
    if owner is not None:
        sql += " AND (lease_owner IS NULL OR lease_owner = ?)"
        args += (owner,)
    moved = conn.execute(sql + " RETURNING id", args).fetchone()
    if moved is not None:
        return int(moved[0])
    att = conn.execute("SELECT outbox_id FROM sms_attempts WHERE id = ?", (attempt_id,)).fetchone()
    if att is None:
        raise NotFoundError(f"sms_attempts row {attempt_id} does not exist")
    _explain(conn, att[0], owner, wanted)


def _explain(conn: sqlite3.Connection, outbox_id: int, owner: str | None, wanted: str) -> NoReturn:
    row = fetch_one(conn.execute("SELECT state, lease_owner FROM sms_outbox WHERE id = ?", (outbox_id,)))
    if row is None:
        raise NotFoundError(f"sms_outbox row {outbox_id} does not exist")
    if owner is not None and row["lease_owner"] not in (None, owner):
        raise InvalidStateError(
            f"sms_outbox row {outbox_id} is leased by {row['lease_owner']!r}, not {owner!r}"
        )
    raise InvalidStateError(f"sms_outbox row {outbox_id} is {row['state']!r}; cannot {wanted}")


def finish_attempt_sync(
    conn: sqlite3.Connection,
    attempt_id: int,
    *,
    outcome: str,
    row_state: str,
    now: str | datetime,
    owner: str,
    gateway_message_id: str | None = None,
    reason: str | None = None,
    next_attempt_at: str | datetime | None = None,
) -> None:
    """Record the gateway's answer and move the outbox row on, atomically.

    ``row_state``: 'sent' (accepted), 'logged' (accepted by the development ``log``
    backend: written to the log, nothing sent), 'pending' (retry at ``next_attempt_at``;
    a 'throttled' outcome does not count as an attempt) or 'dead'.
    """
    with immediate(conn):
        _finish_attempt_in_tx(conn, attempt_id, outcome=outcome, row_state=row_state, now=now,
                              owner=owner, gateway_message_id=gateway_message_id, reason=reason,
                              next_attempt_at=next_attempt_at)


def finish_attempts_sync(
    conn: sqlite3.Connection, items: list[tuple[int, dict]]
) -> list[Exception | None]:
    """Group commit: several :func:`finish_attempt_sync` calls in one transaction.

    ``items`` are ``(attempt_id, keyword arguments of finish_attempt_sync)``.
    Each item is all-or-nothing (answer and row state together), one that is
    refused (lease lost to another sender, bad arguments) is rolled back
    alone and the others commit, and a crash before the COMMIT leaves every
    attempt of the group 'in_flight' (it becomes 'unknown' when its row is
    claimed again).  Returns, per item, None or the exception that refused it.

    The usual group (every write-back allowed) costs one ``executemany`` per
    kind of answer; only when one of them is refused is the group replayed
    item by item (each refused before it writes anything), to find and report it.
    """
    with immediate(conn):
        return finish_attempts_in_tx(conn, items)


def finish_attempts_in_tx(conn: sqlite3.Connection, items: list[tuple[int, dict]]) -> list[Exception | None]:
    if len(items) > 1:
        conn.execute("SAVEPOINT finish_group")
        if _finish_group(conn, items):
            conn.execute("RELEASE finish_group")
            return [None] * len(items)
        conn.execute("ROLLBACK TO finish_group")
        conn.execute("RELEASE finish_group")
    results: list[Exception | None] = []
    for attempt_id, kwargs in items:
        # no savepoint: an item is refused before it writes anything (_finish_attempt_in_tx)
        try:
            _finish_attempt_in_tx(conn, attempt_id, **kwargs)
        except (ValueError, InvalidStateError, NotFoundError) as exc:
            results.append(exc)
        else:
            results.append(None)
    return results


# The row updates of _finish_attempt_in_tx, one statement per kind of answer, the
# row found through its attempt; each also checks the row is still 'sending' and ours.
_OWNED = (" WHERE id = (SELECT outbox_id FROM sms_attempts WHERE id = ?) AND state = 'sending'"
          " AND (lease_owner IS NULL OR lease_owner = ?)")
_GROUP_SQL = {
    "sent": "UPDATE sms_outbox SET state = 'sent', gateway_message_id = ?, next_attempt_at = NULL,"
            " reason = NULL, updated_at = ?, lease_owner = NULL, lease_until = NULL" + _OWNED,
    "logged": "UPDATE sms_outbox SET state = 'logged', gateway_message_id = ?, next_attempt_at = NULL,"
              " reason = NULL, updated_at = ?, lease_owner = NULL, lease_until = NULL" + _OWNED,
    "throttled": "UPDATE sms_outbox SET state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?,"
                 " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, throttled = throttled + 1,"
                 " lease_owner = NULL, lease_until = NULL" + _OWNED,
    "pending": "UPDATE sms_outbox SET state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?,"
               " lease_owner = NULL, lease_until = NULL" + _OWNED,
    "dead": "UPDATE sms_outbox SET state = 'dead', reason = ?, next_attempt_at = NULL, updated_at = ?,"
            " lease_owner = NULL, lease_until = NULL" + _OWNED,
}


def _finish_group(conn: sqlite3.Connection, items: list[tuple[int, dict]]) -> bool:
    """The whole group with one statement per kind; False (caller rolls back)
    as soon as any item would be refused, so the slow path can say which."""
    times: dict = {}

    def db_time(value: str | datetime) -> str:
        t = times.get(value)
        if t is None:
            t = times[value] = to_db_time(value)
        return t

    attempts: list[tuple] = []
    rows: dict[str, list[tuple]] = {k: [] for k in _GROUP_SQL}
    accepted: list[tuple[int, str]] = []
    for attempt_id, kw in items:
        outcome, state = kw.get("outcome"), kw.get("row_state")
        if (outcome not in ATTEMPT_OUTCOMES or state not in ROW_STATES
                or (state == "pending" and kw.get("next_attempt_at") is None)
                or (state == "logged" and outcome != "accepted")
                or not set(kw) <= _FINISH_KEYS):
            return False
        now, owner, gw, reason = db_time(kw["now"]), kw["owner"], kw.get("gateway_message_id"), kw.get("reason")
        attempts.append((outcome, now, gw, reason, attempt_id))
        if state == "logged":
            rows["logged"].append((gw, now, attempt_id, owner))
        elif state == "sent":
            rows["sent"].append((gw, now, attempt_id, owner))
            if gw:
                accepted.append((attempt_id, gw))
        elif state == "pending":
            kind = "throttled" if outcome == "throttled" else "pending"
            rows[kind].append((reason or ("throttled" if kind == "throttled" else outcome),
                               db_time(kw["next_attempt_at"]), now, attempt_id, owner))
        else:
            rows["dead"].append((reason or outcome, now, attempt_id, owner))
    for kind, params in rows.items():
        if params and conn.executemany(_GROUP_SQL[kind], params).rowcount != len(params):
            return False  # a row not ours or no longer 'sending' (or a missing attempt)
    if conn.executemany(
            "UPDATE sms_attempts SET outcome = ?, finished_at = ?, gateway_message_id = ?,"
            " reason = ? WHERE id = ?", attempts).rowcount != len(attempts):
        return False
    # receipts held because they raced ahead of their acceptance (rare: look only when one is held)
    held = held_gateway_ids(conn) if accepted else None
    if held:
        for attempt_id, gw in accepted:
            if not held.isdisjoint(gw.split(",")):
                oid, started_at = conn.execute("SELECT outbox_id, started_at FROM sms_attempts WHERE id = ?",
                                               (attempt_id,)).fetchone()
                attach_early_receipts(conn, oid, gw, started_at)
    return True


_FINISH_KEYS = {"outcome", "row_state", "now", "owner", "gateway_message_id", "reason", "next_attempt_at"}


def _finish_attempt_in_tx(
    conn: sqlite3.Connection,
    attempt_id: int,
    *,
    outcome: str,
    row_state: str,
    now: str | datetime,
    owner: str,
    gateway_message_id: str | None = None,
    reason: str | None = None,
    next_attempt_at: str | datetime | None = None,
) -> None:
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"outcome must be one of {ATTEMPT_OUTCOMES}, got {outcome!r}")
    if row_state not in ROW_STATES:
        raise ValueError(f"row_state must be one of {ROW_STATES}, got {row_state!r}")
    if row_state == "logged" and outcome != "accepted":
        raise ValueError("a logged row is one the log backend accepted (outcome 'accepted')")
    if row_state == "pending" and next_attempt_at is None:
        raise ValueError("a pending row needs next_attempt_at")
    now = to_db_time(now)
    # every refusal comes before the first write: the row's move (found through the attempt,
    # refused when there is no such attempt or its row is not ours or no longer 'sending',
    # having changed nothing), then the attempt's answer, so a group's refused item needs no
    # savepoint to be undone (finish_attempts_in_tx)
    oid = _move_row(conn, attempt_id, row_state, outcome, now, owner, gateway_message_id, reason,
                    next_attempt_at)
    started_at = conn.execute(
        "UPDATE sms_attempts SET outcome = ?, finished_at = ?, gateway_message_id = ?,"
        " reason = ? WHERE id = ? RETURNING started_at",
        (outcome, now, gateway_message_id, reason, attempt_id),
    ).fetchone()[0]
    if row_state == "sent" and gateway_message_id:  # a receipt may have raced ahead of the acceptance
        attach_early_receipts(conn, oid, gateway_message_id, started_at)


def _move_row(conn: sqlite3.Connection, attempt_id: int, row_state: str, outcome: str, now: str, owner: str,
              gateway_message_id: str | None, reason: str | None, next_attempt_at: str | datetime | None) -> int:
    if row_state == "logged":  # nothing reached a gateway: no receipt can come for it
        return _finish(conn, attempt_id, owner, ("sending",),
                       "state = 'logged', gateway_message_id = ?, next_attempt_at = NULL,"
                       " reason = NULL, updated_at = ?", (gateway_message_id, now), "mark it logged")
    elif row_state == "sent":
        return _finish(conn, attempt_id, owner, ("sending",),
                       "state = 'sent', gateway_message_id = ?, next_attempt_at = NULL,"
                       " reason = NULL, updated_at = ?", (gateway_message_id, now), "mark it sent")
    elif row_state == "pending":
        assert next_attempt_at is not None  # refused above for a pending row
        if outcome == "throttled":
            return _finish(conn, attempt_id, owner, ("sending",),
                           "state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?,"
                           " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, throttled = throttled + 1",
                           (reason or "throttled", to_db_time(next_attempt_at), now),
                           "put it back after throttling")
        else:
            return _finish(conn, attempt_id, owner, ("sending",),
                           "state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?",
                           (reason or outcome, to_db_time(next_attempt_at), now), "schedule a retry")
    else:
        return _finish(conn, attempt_id, owner, ("sending",),
                       "state = 'dead', reason = ?, next_attempt_at = NULL, updated_at = ?",
                       (reason or outcome, now), "mark it dead")
