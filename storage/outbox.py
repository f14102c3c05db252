"""The SMS outbox: rows are claimed with a lease, then marked sent / retry / dead.

Delivery is at-least-once: a worker that dies while holding a lease leaves
the row 'sending'; after ``lease_until`` another worker may claim it again
(``attempts`` counts claims, so crashed attempts are visible).  Backends
should pass an idempotency key (the row id) to the gateway where possible.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from ._sqlutil import fetch_all, fetch_one, immediate
from .errors import InvalidStateError, NotFoundError
from .timefmt import parse_db_time, to_db_time

if TYPE_CHECKING:
    from .db import Database

# The first :limit due rows of each kind, then of both.  Each branch is cut to
# :limit before the union (and the pending one walks the partial index
# sms_outbox_due in order), so a claim reads ~2 x limit rows instead of sorting
# the whole backlog (0.5 ms per claim with 2,000 rows pending, growing with it).
_SQL_DUE = """
SELECT id FROM (
    SELECT * FROM (SELECT id, next_attempt_at AS due FROM sms_outbox INDEXED BY sms_outbox_due
                    WHERE state = 'pending' AND next_attempt_at <= :now
                    ORDER BY next_attempt_at, id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT id, lease_until AS due FROM sms_outbox
                    WHERE state = 'sending' AND lease_until <= :now
                    ORDER BY lease_until, id LIMIT :limit)
) ORDER BY due, id LIMIT :limit
"""


MAX_CLAIM = 30000  # SQLite allows 32,766 parameters per statement


def _lease_times(owner: str, limit: int, lease_seconds: float, now: str | datetime) -> tuple[str, str]:
    """Check a claim's arguments; return (now, lease_until) as database times."""
    if not owner:
        raise ValueError("owner must be a non-empty string")
    if not 1 <= limit <= MAX_CLAIM or lease_seconds <= 0:
        raise ValueError(f"limit must be 1..{MAX_CLAIM} (ids are SQL parameters) and lease_seconds > 0")
    now = to_db_time(now)
    return now, to_db_time(parse_db_time(now) + timedelta(seconds=lease_seconds))


def claim_sync(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: str | datetime
) -> list[dict]:
    """Lease up to ``limit`` due rows to ``owner``: 'pending' rows whose
    next_attempt_at has come, and 'sending' rows whose lease has expired.
    One BEGIN IMMEDIATE transaction, so two owners never get the same row.
    """
    now, lease_until = _lease_times(owner, limit, lease_seconds, now)
    with immediate(conn):
        ids = [r[0] for r in conn.execute(_SQL_DUE, {"now": now, "limit": limit})]
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        conn.execute(
            "UPDATE sms_outbox SET state = 'sending', lease_owner = ?, lease_until = ?,"
            f" attempts = attempts + 1, updated_at = ? WHERE id IN ({marks})",
            (owner, lease_until, now, *ids),
        )
        return fetch_all(
            conn.execute(f"SELECT * FROM sms_outbox WHERE id IN ({marks}) ORDER BY id", ids)
        )


def _finish(
    conn: sqlite3.Connection,
    outbox_id: int,
    owner: str | None,
    allowed: tuple[str, ...],
    assignments: str,
    params: tuple,
    wanted: str,
) -> None:
    states = ", ".join(f"'{s}'" for s in allowed)
    sql = (
        f"UPDATE sms_outbox SET {assignments}, lease_owner = NULL, lease_until = NULL"
        f" WHERE id = ? AND state IN ({states})"
    )
    args: tuple = (*params, outbox_id)
    if owner is not None:
        sql += " AND (lease_owner IS NULL OR lease_owner = ?)"
        args += (owner,)
    if conn.execute(sql, args).rowcount == 0:
        _explain(conn, outbox_id, owner, wanted)


def _explain(conn: sqlite3.Connection, outbox_id: int, owner: str | None, wanted: str) -> NoReturn:
    row = get_sync(conn, outbox_id)
    if row is None:
        raise NotFoundError(f"sms_outbox row {outbox_id} does not exist")
    if owner is not None and row["lease_owner"] not in (None, owner):
        raise InvalidStateError(
            f"sms_outbox row {outbox_id} is leased by {row['lease_owner']!r}, not {owner!r}"
        )
    raise InvalidStateError(f"sms_outbox row {outbox_id} is {row['state']!r}; cannot {wanted}")


def mark_sent_sync(
    conn: sqlite3.Connection,
    outbox_id: int,
    gateway_message_id: str | None,
    now: str | datetime,
    owner: str | None = None,
) -> None:
    _finish(conn, outbox_id, owner, ("sending",),
            "state = 'sent', gateway_message_id = ?, next_attempt_at = NULL, reason = NULL,"
            " updated_at = ?",
            (gateway_message_id, to_db_time(now)), "mark it sent")


def mark_retry_sync(
    conn: sqlite3.Connection,
    outbox_id: int,
    reason: str,
    next_attempt_at: str | datetime,
    now: str | datetime,
    owner: str | None = None,
) -> None:
    _finish(conn, outbox_id, owner, ("sending",),
            "state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?",
            (reason, to_db_time(next_attempt_at), to_db_time(now)), "schedule a retry")


def mark_dead_sync(
    conn: sqlite3.Connection,
    outbox_id: int,
    reason: str,
    now: str | datetime,
    owner: str | None = None,
) -> None:
    _finish(conn, outbox_id, owner, ("pending", "sending", "failed"),
            "state = 'dead', reason = ?, next_attempt_at = NULL, updated_at = ?",
            (reason, to_db_time(now)), "mark it dead")


def get_sync(conn: sqlite3.Connection, outbox_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM sms_outbox WHERE id = ?", (outbox_id,)))


def get_for_protocol_sync(conn: sqlite3.Connection, protocol: str) -> list[dict]:
    return fetch_all(
        conn.execute("SELECT * FROM sms_outbox WHERE protocol = ? ORDER BY id", (protocol,))
    )


# --- delivery attempts, idempotency keys, receipts (migration 0002) -------------

ATTEMPT_OUTCOMES = ("accepted", "transient", "throttled", "rejected", "unknown")
UNKNOWN_REASON = "sender stopped before the gateway answered"


def idempotency_key_for(protocol: str, outbox_id: int) -> str:
    """Stable for a row across attempts, unique across rows and deployments'
    protocol numbers (the same formula as migration 0002 uses)."""
    return f"cp-{protocol}-{outbox_id}"


def begin_attempt_sync(
    conn: sqlite3.Connection, outbox_id: int, owner: str, backend: str, now: str | datetime
) -> dict:
    """Persist an attempt before anything goes to the gateway.

    The row must be 'sending' and leased by ``owner``.  Attempts of this row
    still 'in_flight' belong to a sender that died mid-send: they become
    'unknown' (``previous_unknown`` in the answer), so the caller can tell a
    first try from a resend whose first copy may have reached the gateway.
    """
    now = to_db_time(now)
    with immediate(conn):
        row = get_sync(conn, outbox_id)
        if row is None:
            raise NotFoundError(f"sms_outbox row {outbox_id} does not exist")
        if row["state"] != "sending" or row["lease_owner"] != owner:
            raise InvalidStateError(
                f"sms_outbox row {outbox_id} is {row['state']!r} leased by"
                f" {row['lease_owner']!r}; {owner!r} cannot start an attempt"
            )
        key = row["idempotency_key"] or idempotency_key_for(row["protocol"], outbox_id)
        if row["idempotency_key"] is None:
            conn.execute("UPDATE sms_outbox SET idempotency_key = ? WHERE id = ?", (key, outbox_id))
        unknown = conn.execute(
            "UPDATE sms_attempts SET outcome = 'unknown', finished_at = ?, reason = ?"
            " WHERE outbox_id = ? AND outcome = 'in_flight'",
            (now, UNKNOWN_REASON, outbox_id),
        ).rowcount
        (count,) = conn.execute(
            "SELECT count(*) FROM sms_attempts WHERE outbox_id = ?", (outbox_id,)
        ).fetchone()
        cur = conn.execute(
            "INSERT INTO sms_attempts (outbox_id, attempt_no, idempotency_key, backend, owner,"
            " started_at) VALUES (?, ?, ?, ?, ?, ?)",
            (outbox_id, count + 1, key, backend, owner, now),
        )
        prior_unknown = unknown > 0 or conn.execute(
            "SELECT 1 FROM sms_attempts WHERE outbox_id = ? AND outcome = 'unknown' LIMIT 1",
            (outbox_id,),
        ).fetchone() is not None
        return {"attempt_id": cur.lastrowid, "attempt_no": count + 1, "idempotency_key": key,
                "previous_unknown": prior_unknown}


def claim_for_send_sync(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: str | datetime,
    backend: str, max_age_seconds: float | None = None,
) -> list[dict]:
    """Claim due rows and persist an attempt for each, in one transaction
    (what ``claim`` + ``begin_attempt`` do, without a commit per row).

    Rows older than ``max_age_seconds`` are not returned: they go to 'dead'
    ('expired') in the same transaction, with no attempt.  Each returned row
    carries ``attempt_id``, ``attempt_no``, ``idempotency_key`` and
    ``previous_unknown`` (see :func:`begin_attempt_sync`).

    A fixed number of statements per claim, whatever its size (the lease is
    an ``UPDATE ... RETURNING``, the attempts one multi-row ``INSERT ...
    RETURNING``): the sender's cost per message is what bounds its rate.
    """
    with immediate(conn):
        return _claim_for_send_in_tx(conn, owner, limit, lease_seconds, now, backend, max_age_seconds)


def _claim_for_send_in_tx(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: str | datetime,
    backend: str, max_age_seconds: float | None = None,
) -> list[dict]:
    now, lease_until = _lease_times(owner, limit, lease_seconds, now)
    ids = [r[0] for r in conn.execute(_SQL_DUE, {"now": now, "limit": limit})]
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    if max_age_seconds is not None:
        oldest = to_db_time(parse_db_time(now) - timedelta(seconds=max_age_seconds))
        expired = [r[0] for r in conn.execute(
            "UPDATE sms_outbox SET state = 'dead', lease_owner = NULL, lease_until = NULL,"
            " next_attempt_at = NULL, updated_at = ?,"
            f" reason = 'expired: not sent within {float(max_age_seconds):g} s'"
            f" WHERE id IN ({marks}) AND created_at < ? RETURNING id", (now, *ids, oldest))]
        if expired:
            gone = set(expired)
            ids = [i for i in ids if i not in gone]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
    rows = fetch_all(conn.execute(
        "UPDATE sms_outbox SET state = 'sending', lease_owner = ?, lease_until = ?,"
        " attempts = attempts + 1, updated_at = ?,"
        " idempotency_key = coalesce(idempotency_key, 'cp-' || protocol || '-' || id)"
        f" WHERE id IN ({marks}) RETURNING *",
        (owner, lease_until, now, *ids),
    ))
    rows.sort(key=lambda r: r["id"])
    # earlier attempts of these rows: how many, and whether one is (or was left) unresolved
    earlier = {oid: (count, unresolved, in_flight) for oid, count, unresolved, in_flight in conn.execute(
        "SELECT outbox_id, count(*), sum(outcome IN ('in_flight', 'unknown')),"
        f" sum(outcome = 'in_flight') FROM sms_attempts WHERE outbox_id IN ({marks})"
        " GROUP BY outbox_id", ids)}
    if any(v[2] for v in earlier.values()):
        conn.execute(
            "UPDATE sms_attempts SET outcome = 'unknown', finished_at = ?, reason = ?"
            f" WHERE outbox_id IN ({marks}) AND outcome = 'in_flight'", (now, UNKNOWN_REASON, *ids))
    params: list = []
    for row in rows:
        count, unresolved, _ = earlier.get(row["id"], (0, 0, 0))
        row["attempt_no"] = count + 1
        row["previous_unknown"] = bool(unresolved)
        params += (row["id"], count + 1, row["idempotency_key"], backend, owner, now)
    # at most _ATTEMPT_CHUNK rows per INSERT (SQLite allows 32,766 parameters)
    attempt_ids: dict[int, int] = {}
    for i in range(0, len(rows), _ATTEMPT_CHUNK):
        part = params[i * 6:(i + _ATTEMPT_CHUNK) * 6]
        values = ", ".join("(?, ?, ?, ?, ?, ?)" for _ in range(len(part) // 6))
        attempt_ids.update(conn.execute(
            "INSERT INTO sms_attempts (outbox_id, attempt_no, idempotency_key, backend, owner,"
            f" started_at) VALUES {values} RETURNING outbox_id, id", part))
    for row in rows:
        row["attempt_id"] = attempt_ids[row["id"]]
    return rows


_ATTEMPT_CHUNK = 5000


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

    ``row_state``: 'sent' (accepted), 'pending' (retry at ``next_attempt_at``;
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
    item by item, each in its own SAVEPOINT, to find and report it.
    """
    with immediate(conn):
        return _finish_attempts_in_tx(conn, items)


def _finish_attempts_in_tx(conn: sqlite3.Connection, items: list[tuple[int, dict]]) -> list[Exception | None]:
    if len(items) > 1:
        conn.execute("SAVEPOINT finish_group")
        if _finish_group(conn, items):
            conn.execute("RELEASE finish_group")
            return [None] * len(items)
        conn.execute("ROLLBACK TO finish_group")
        conn.execute("RELEASE finish_group")
    results: list[Exception | None] = []
    for attempt_id, kwargs in items:
        conn.execute("SAVEPOINT finish_attempt")
        try:
            _finish_attempt_in_tx(conn, attempt_id, **kwargs)
        except (ValueError, InvalidStateError, NotFoundError) as exc:
            conn.execute("ROLLBACK TO finish_attempt")
            results.append(exc)
        else:
            results.append(None)
        conn.execute("RELEASE finish_attempt")
    return results


def release_unsent_in_tx(conn: sqlite3.Connection, attempt_ids: list[int], owner: str,
                         next_attempt_at: str | datetime, now: str | datetime) -> int:
    """Give back claimed rows whose message was never handed to the gateway
    (the sender paused for throttling with them still queued): their
    'in_flight' attempt is deleted, because it never happened, and the row
    is 'pending' again at ``next_attempt_at`` with its attempt count as it
    was.  Only rows still leased by ``owner``; returns how many."""
    if not attempt_ids:
        return 0
    now, at = to_db_time(now), to_db_time(next_attempt_at)
    released = 0
    for i in range(0, len(attempt_ids), _ATTEMPT_CHUNK):
        part = attempt_ids[i:i + _ATTEMPT_CHUNK]
        marks = ", ".join("?" for _ in part)
        oids = [r[0] for r in conn.execute(
            f"DELETE FROM sms_attempts WHERE id IN ({marks}) AND outcome = 'in_flight' AND owner = ?"
            " RETURNING outbox_id", (*part, owner))]
        if oids:
            omarks = ", ".join("?" for _ in oids)
            released += conn.execute(
                "UPDATE sms_outbox SET state = 'pending', next_attempt_at = ?, updated_at = ?,"
                " attempts = max(attempts - 1, 0), lease_owner = NULL, lease_until = NULL"
                f" WHERE id IN ({omarks}) AND state = 'sending' AND lease_owner = ?", (at, now, *oids, owner)).rowcount
    return released


def sender_step_sync(
    conn: sqlite3.Connection, *, finish: list[tuple[int, dict]] = (), release: dict | None = None,
    claim: dict | None = None,
) -> tuple[list[Exception | None], list[dict]]:
    """One transaction of a sender's cycle: write the answers that came back
    (:func:`finish_attempts_sync`), give back unsent rows
    (:func:`release_unsent_in_tx`, keyword arguments in ``release``), and
    claim the next rows (:func:`claim_for_send_sync`, keyword arguments in
    ``claim``).  One commit instead of three: a transaction's fixed cost
    (locking, the WAL append) is most of the cost of a small one.
    Returns (per answer None or the error that refused it, the claimed rows).
    """
    with immediate(conn):
        errors = _finish_attempts_in_tx(conn, list(finish)) if finish else []
        if release:
            release_unsent_in_tx(conn, **release)
        rows = _claim_for_send_in_tx(conn, **claim) if claim else []
    return errors, rows


# The row updates of _finish_attempt_in_tx, one statement per kind of answer, the
# row found through its attempt; each also checks the row is still 'sending' and ours.
_OWNED = (" WHERE id = (SELECT outbox_id FROM sms_attempts WHERE id = ?) AND state = 'sending'"
          " AND (lease_owner IS NULL OR lease_owner = ?)")
_GROUP_SQL = {
    "sent": "UPDATE sms_outbox SET state = 'sent', gateway_message_id = ?, next_attempt_at = NULL,"
            " reason = NULL, updated_at = ?, lease_owner = NULL, lease_until = NULL" + _OWNED,
    "throttled": "UPDATE sms_outbox SET state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?,"
                 " attempts = max(attempts - 1, 0), throttled = throttled + 1,"
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
        if (outcome not in ATTEMPT_OUTCOMES or state not in ("sent", "pending", "dead")
                or (state == "pending" and kw.get("next_attempt_at") is None)
                or not set(kw) <= _FINISH_KEYS):
            return False
        now, owner, gw, reason = db_time(kw["now"]), kw["owner"], kw.get("gateway_message_id"), kw.get("reason")
        attempts.append((outcome, now, gw, reason, attempt_id))
        if state == "sent":
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
    # receipts that raced ahead of their acceptance (rare: look only when one is waiting)
    if accepted and conn.execute("SELECT 1 FROM sms_dlrs WHERE outbox_id IS NULL LIMIT 1").fetchone():
        for attempt_id, gw in accepted:
            (oid,) = conn.execute("SELECT outbox_id FROM sms_attempts WHERE id = ?", (attempt_id,)).fetchone()
            _attach_early_receipts(conn, oid, gw)
    return True


_FINISH_KEYS = {"outcome", "row_state", "now", "owner", "gateway_message_id", "reason", "next_attempt_at"}


def _attach_early_receipts(conn: sqlite3.Connection, oid: int, gateway_message_id: str) -> None:
    """Receipts stored before the acceptance they belong to was written (a
    message sent in parts has one gateway id per part, joined by commas)."""
    ids = gateway_message_id.split(",")
    conn.execute("UPDATE sms_dlrs SET outbox_id = ? WHERE outbox_id IS NULL"
                 f" AND gateway_message_id IN ({', '.join('?' for _ in ids)})", (oid, *ids))
    last = conn.execute("SELECT status, received_at FROM sms_dlrs WHERE outbox_id = ?"
                        " ORDER BY id DESC LIMIT 1", (oid,)).fetchone()
    if last is not None:
        conn.execute("UPDATE sms_outbox SET dlr_state = ?, dlr_at = ? WHERE id = ?",
                     (last[0], last[1], oid))


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
    if row_state not in ("sent", "pending", "dead"):
        raise ValueError(f"row_state must be sent, pending or dead, got {row_state!r}")
    if row_state == "pending" and next_attempt_at is None:
        raise ValueError("a pending row needs next_attempt_at")
    now = to_db_time(now)
    att = fetch_one(conn.execute("SELECT * FROM sms_attempts WHERE id = ?", (attempt_id,)))
    if att is None:
        raise NotFoundError(f"sms_attempts row {attempt_id} does not exist")
    conn.execute(
        "UPDATE sms_attempts SET outcome = ?, finished_at = ?, gateway_message_id = ?,"
        " reason = ? WHERE id = ?",
        (outcome, now, gateway_message_id, reason, attempt_id),
    )
    oid = att["outbox_id"]
    if row_state == "sent":
        _finish(conn, oid, owner, ("sending",),
                "state = 'sent', gateway_message_id = ?, next_attempt_at = NULL,"
                " reason = NULL, updated_at = ?", (gateway_message_id, now), "mark it sent")
        if gateway_message_id:  # a receipt may have raced ahead of the acceptance
            _attach_early_receipts(conn, oid, gateway_message_id)
    elif row_state == "pending" and outcome == "throttled":
        _finish(conn, oid, owner, ("sending",),
                "state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?,"
                " attempts = max(attempts - 1, 0), throttled = throttled + 1",
                (reason or "throttled", to_db_time(next_attempt_at), now),
                "put it back after throttling")
    elif row_state == "pending":
        _finish(conn, oid, owner, ("sending",),
                "state = 'pending', reason = ?, next_attempt_at = ?, updated_at = ?",
                (reason or outcome, to_db_time(next_attempt_at), now), "schedule a retry")
    else:
        _finish(conn, oid, owner, ("sending",),
                "state = 'dead', reason = ?, next_attempt_at = NULL, updated_at = ?",
                (reason or outcome, now), "mark it dead")


def retry_sync(conn: sqlite3.Connection, outbox_ids: list[int], now: str | datetime) -> None:
    """Operator retry: dead (or failed) rows go back to 'pending' with a fresh
    attempt budget.  All or nothing: an unknown id or a row in another state
    refuses the whole request, naming it."""
    now = to_db_time(now)
    with immediate(conn):
        for oid in outbox_ids:
            row = get_sync(conn, oid)
            if row is None:
                raise NotFoundError(f"sms_outbox row {oid} does not exist")
            if row["state"] not in ("dead", "failed"):
                raise InvalidStateError(
                    f"sms_outbox row {oid} is {row['state']!r}; only dead or failed rows can be retried"
                )
            conn.execute(
                "UPDATE sms_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                " reason = 'retry requested by operator', updated_at = ? WHERE id = ?",
                (now, now, oid),
            )


def list_sync(conn: sqlite3.Connection, state: str | tuple[str, ...] | None = None,
              limit: int = 100) -> list[dict]:
    if state is not None:
        states = (state,) if isinstance(state, str) else tuple(state)
        marks = ", ".join("?" for _ in states)
        return fetch_all(conn.execute(
            f"SELECT * FROM sms_outbox WHERE state IN ({marks}) ORDER BY id LIMIT ?", (*states, limit)))
    return fetch_all(conn.execute("SELECT * FROM sms_outbox ORDER BY id LIMIT ?", (limit,)))


def attempts_sync(conn: sqlite3.Connection, outbox_id: int) -> list[dict]:
    return fetch_all(conn.execute(
        "SELECT * FROM sms_attempts WHERE outbox_id = ? ORDER BY id", (outbox_id,)))


def dlrs_sync(conn: sqlite3.Connection, outbox_id: int) -> list[dict]:
    return fetch_all(conn.execute(
        "SELECT * FROM sms_dlrs WHERE outbox_id = ? ORDER BY id", (outbox_id,)))


def record_dlr_sync(
    conn: sqlite3.Connection, gateway_message_id: str, status: str, now: str | datetime,
    detail: str | None = None, idempotency_key: str | None = None,
) -> int | None:
    """Store a delivery receipt; returns the outbox row it belongs to (None
    when no row carries that gateway id: the receipt is kept anyway)."""
    if not gateway_message_id:
        raise ValueError("a delivery receipt needs the gateway's message id")
    now = to_db_time(now)
    with immediate(conn):
        hit = conn.execute(
            "SELECT id FROM sms_outbox WHERE gateway_message_id = ? ORDER BY id DESC LIMIT 1",
            (gateway_message_id,),
        ).fetchone()
        if hit is None:  # a later part of a split message, or an earlier accepted copy
            hit = conn.execute(
                "SELECT outbox_id FROM sms_attempts WHERE gateway_message_id = ?"
                " OR (',' || gateway_message_id || ',') LIKE ('%,' || ? || ',%')"
                " ORDER BY id DESC LIMIT 1",
                (gateway_message_id, gateway_message_id),
            ).fetchone()
        if hit is None and idempotency_key:
            hit = conn.execute("SELECT id FROM sms_outbox WHERE idempotency_key = ?",
                               (idempotency_key,)).fetchone()
        oid = hit[0] if hit else None
        conn.execute(
            "INSERT INTO sms_dlrs (outbox_id, gateway_message_id, status, received_at, detail)"
            " VALUES (?, ?, ?, ?, ?)", (oid, gateway_message_id, status, now, detail))
        if oid is not None:
            conn.execute("UPDATE sms_outbox SET dlr_state = ?, dlr_at = ? WHERE id = ?",
                         (status, now, oid))
        return oid


def counters_sync(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Counts for the metrics exposition, read from the tables so that every
    sender process (and a restart) adds to the same monotonic figures."""
    attempts = dict(conn.execute(
        "SELECT outcome, count(*) FROM sms_attempts GROUP BY outcome").fetchall())
    retried = conn.execute("SELECT count(*) FROM sms_attempts WHERE attempt_no > 1").fetchone()[0]
    throttled = conn.execute("SELECT coalesce(sum(throttled), 0) FROM sms_outbox").fetchone()[0]
    dlrs = dict(conn.execute("SELECT status, count(*) FROM sms_dlrs GROUP BY status").fetchall())
    states = dict(conn.execute("SELECT state, count(*) FROM sms_outbox GROUP BY state").fetchall())
    return {"attempts": attempts, "retried": {"": retried}, "throttled": {"": throttled},
            "dlrs": dlrs, "states": states}


class Outbox:
    """Async repository (``db.outbox``).  ``owner=`` on the mark_* methods is
    optional: when given, a row re-leased by another worker is refused."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self, owner: str, limit: int, lease_seconds: float, now: str | datetime
    ) -> list[dict]:
        return await self._db.run_in_connection(claim_sync, owner, limit, lease_seconds, now)

    async def mark_sent(
        self, outbox_id: int, gateway_message_id: str | None, now: str | datetime,
        *, owner: str | None = None,
    ) -> None:
        await self._db.run_in_connection(mark_sent_sync, outbox_id, gateway_message_id, now, owner)

    async def mark_retry(
        self, outbox_id: int, reason: str, next_attempt_at: str | datetime, now: str | datetime,
        *, owner: str | None = None,
    ) -> None:
        await self._db.run_in_connection(
            mark_retry_sync, outbox_id, reason, next_attempt_at, now, owner
        )

    async def mark_dead(
        self, outbox_id: int, reason: str, now: str | datetime, *, owner: str | None = None
    ) -> None:
        await self._db.run_in_connection(mark_dead_sync, outbox_id, reason, now, owner)

    async def get(self, outbox_id: int) -> dict | None:
        return await self._db.run_in_connection(get_sync, outbox_id)

    async def get_for_protocol(self, protocol: str) -> list[dict]:
        return await self._db.run_in_connection(get_for_protocol_sync, protocol)

    async def begin_attempt(self, outbox_id: int, owner: str, backend: str,
                            now: str | datetime) -> dict:
        return await self._db.run_in_connection(begin_attempt_sync, outbox_id, owner, backend, now)

    async def claim_for_send(self, owner: str, limit: int, lease_seconds: float, now: str | datetime,
                             backend: str, max_age_seconds: float | None = None) -> list[dict]:
        return await self._db.run_in_connection(
            claim_for_send_sync, owner, limit, lease_seconds, now, backend, max_age_seconds)

    async def finish_attempt(self, attempt_id: int, **kwargs) -> None:
        await self._db.run_in_connection(finish_attempt_sync, attempt_id, **kwargs)

    async def finish_attempts(self, items: list[tuple[int, dict]]) -> list[Exception | None]:
        return await self._db.run_in_connection(finish_attempts_sync, list(items))

    async def sender_step(self, *, finish: list[tuple[int, dict]] = (), release: dict | None = None,
                          claim: dict | None = None) -> tuple[list[Exception | None], list[dict]]:
        return await self._db.run_in_connection(sender_step_sync, finish=finish, release=release, claim=claim)

    async def retry(self, outbox_ids: list[int], now: str | datetime) -> None:
        await self._db.run_in_connection(retry_sync, list(outbox_ids), now)

    async def list(self, state: str | tuple[str, ...] | None = None, limit: int = 100) -> list[dict]:
        return await self._db.run_in_connection(list_sync, state, limit)

    async def attempts(self, outbox_id: int) -> list[dict]:
        return await self._db.run_in_connection(attempts_sync, outbox_id)

    async def dlrs(self, outbox_id: int) -> list[dict]:
        return await self._db.run_in_connection(dlrs_sync, outbox_id)

    async def record_dlr(self, gateway_message_id: str, status: str, now: str | datetime,
                         detail: str | None = None, idempotency_key: str | None = None) -> int | None:
        return await self._db.run_in_connection(
            record_dlr_sync, gateway_message_id, status, now, detail, idempotency_key)

    async def counters(self) -> dict[str, dict[str, int]]:
        return await self._db.run_in_connection(counters_sync)
