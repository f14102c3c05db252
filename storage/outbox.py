"""The SMS outbox: rows are claimed with a lease and an attempt persisted for
each; the gateway's answer then moves the row to sent / retry / dead
(:mod:`.outbox_answers`).  Receipts and metrics are :mod:`.outbox_receipts`.

Delivery is at-least-once: a worker that dies while holding a lease leaves
the row 'sending'; after ``lease_until`` another worker may claim it again
(``attempts`` counts claims, so crashed attempts are visible).  Backends
should pass an idempotency key (the row id) to the gateway where possible.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ._sqlutil import fetch_all, fetch_one, immediate, row_locked
from .dialect import dialect_of
from .errors import InvalidStateError, NotFoundError

# the answers and receipts (also importable from here, where they were before)
from .outbox_answers import ATTEMPT_OUTCOMES, finish_attempt_sync, finish_attempts_in_tx, finish_attempts_sync  # noqa: F401
from .outbox_receipts import counters_sync, dlrs_sync, expire_held_receipts_sync, record_dlr_sync
from .timefmt import parse_db_time, to_db_time

if TYPE_CHECKING:
    from .db import Database


# The first :limit due rows of each kind, then of both.  Each branch is cut to
# :limit before the union (and the pending one walks the partial index
# sms_outbox_due in order), so a claim reads ~2 x limit rows instead of sorting
# the whole backlog (0.5 ms per claim with 2,000 rows pending, growing with it).
_SQL_DUE_SQLITE = """
SELECT id, created_at FROM (
    SELECT * FROM (SELECT id, next_attempt_at AS due, created_at FROM sms_outbox INDEXED BY sms_outbox_due
                    WHERE state = 'pending' AND next_attempt_at <= :now
                    ORDER BY next_attempt_at, id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT id, lease_until AS due, created_at FROM sms_outbox
                    WHERE state = 'sending' AND lease_until <= :now
                    ORDER BY lease_until, id LIMIT :limit)
) ORDER BY due, id LIMIT :limit
"""
# PostgreSQL: senders on several nodes claim at once; each locks the rows it takes and
# skips those another one holds (a row is attempted by one sender at a time), and a dead
# sender's rows come back once their lease has run out.  The WHERE is checked again on a
# row's newest version once locked, so a row another sender just leased is not taken.
_SQL_DUE_POSTGRESQL = """
SELECT id, created_at FROM sms_outbox
 WHERE (state = 'pending' AND next_attempt_at <= :now) OR (state = 'sending' AND lease_until <= :now)
 ORDER BY CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END, id
 LIMIT :limit FOR UPDATE SKIP LOCKED
"""
_SQL_DUE = {"sqlite": _SQL_DUE_SQLITE, "postgresql": _SQL_DUE_POSTGRESQL}
# Whether a claim would find anything, read without a transaction (each branch walks its
# partial index): a sender polls every second, and an idle poll is then one statement, where
# the claim's transaction is three round trips on PostgreSQL (BEGIN, the locking SELECT,
# COMMIT) and takes the write lock on SQLite.  A row it sees that another sender locks
# meanwhile is skipped by the claim itself, as before.
_SQL_ANY_DUE = (
    "SELECT EXISTS (SELECT 1 FROM sms_outbox WHERE state = 'pending' AND next_attempt_at <= :now)"
    " OR EXISTS (SELECT 1 FROM sms_outbox WHERE state = 'sending' AND lease_until <= :now)"
)


MAX_CLAIM = 30000  # SQLite allows 32,766 parameters per statement


def _lease_times(owner: str, limit: int, lease_seconds: float, now: str | datetime) -> tuple[str, str]:
    """Check a claim's arguments; return (now, lease_until) as database times."""
    if not owner:
        raise ValueError("owner must be a non-empty string")
    if not 1 <= limit <= MAX_CLAIM or lease_seconds <= 0:
        raise ValueError(f"limit must be 1..{MAX_CLAIM} (ids are SQL parameters) and lease_seconds > 0")
    now = to_db_time(now)
    return now, to_db_time(parse_db_time(now) + timedelta(seconds=lease_seconds))


def get_sync(conn: sqlite3.Connection, outbox_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM sms_outbox WHERE id = ?", (outbox_id,)))


def get_for_protocol_sync(conn: sqlite3.Connection, protocol: str) -> list[dict]:
    return fetch_all(
        conn.execute("SELECT * FROM sms_outbox WHERE protocol = ? ORDER BY id", (protocol,))
    )


# --- delivery attempts, idempotency keys, receipts (migration 0002) -------------

UNKNOWN_REASON = "sender stopped before the gateway answered"


def idempotency_key_for(protocol: str, outbox_id: int) -> str:
    """Stable for a row across attempts, unique across rows and deployments'
    protocol numbers (the same formula as migration 0002 uses)."""
    return f"cp-{protocol}-{outbox_id}"


def claim_for_send_sync(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: str | datetime,
    backend: str, max_age_seconds: float | None = None,
) -> list[dict]:
    """Lease up to ``limit`` due rows to ``owner`` ('pending' rows whose
    next_attempt_at has come, 'sending' rows whose lease has expired) and
    persist an attempt for each, in one transaction, so two owners never get
    the same row (SQLite: BEGIN IMMEDIATE; PostgreSQL: ``FOR UPDATE SKIP LOCKED``).
    ``attempts`` counts claims, so crashed attempts are visible.

    Rows older than ``max_age_seconds`` are not returned: they go to 'dead'
    ('expired') in the same transaction, with no attempt.  Each returned row
    carries ``attempt_id``, ``attempt_no``, ``idempotency_key`` and
    ``previous_unknown``: attempts of a row still 'in_flight' belong to a
    sender that died mid-send and become 'unknown', so the caller can tell a
    first try from a resend whose first copy may have reached the gateway.

    A fixed number of statements per claim, whatever its size (the lease is
    an ``UPDATE ... RETURNING``, the attempts one multi-row ``INSERT ...
    RETURNING``): the sender's cost per message is what bounds its rate.
    When nothing is due, no transaction is opened (:func:`any_due_sync`).
    """
    _lease_times(owner, limit, lease_seconds, now)  # its arguments refused whether or not rows are due
    if not any_due_sync(conn, now):
        return []
    with row_locked(conn):
        return _claim_for_send_in_tx(conn, owner, limit, lease_seconds, now, backend, max_age_seconds)


def any_due_sync(conn: sqlite3.Connection, now: str | datetime) -> bool:
    """Whether a claim at ``now`` would find a row (a hint: a row seen here may be taken by
    another sender before the claim locks it, which the claim then skips)."""
    return bool(conn.execute(_SQL_ANY_DUE, {"now": to_db_time(now)}).fetchone()[0])


def _claim_for_send_in_tx(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: str | datetime,
    backend: str, max_age_seconds: float | None = None,
) -> list[dict]:
    now, lease_until = _lease_times(owner, limit, lease_seconds, now)
    due = conn.execute(_SQL_DUE[dialect_of(conn).name], {"now": now, "limit": limit}).fetchall()
    if not due:
        return []
    ids = [r[0] for r in due]
    marks = ", ".join("?" for _ in ids)
    if max_age_seconds is not None:
        oldest = to_db_time(parse_db_time(now) - timedelta(seconds=max_age_seconds))
        # the expiry's UPDATE only when a due row is that old (stored times compare as text)
        if any(created is not None and created < oldest for _, created in due):
            expired = {r[0] for r in conn.execute(
                "UPDATE sms_outbox SET state = 'dead', lease_owner = NULL, lease_until = NULL,"
                " next_attempt_at = NULL, updated_at = ?,"
                f" reason = 'expired: not sent within {float(max_age_seconds):g} s'"
                f" WHERE id IN ({marks}) AND created_at < ? RETURNING id", (now, *ids, oldest))}
            ids = [i for i in ids if i not in expired]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
    # the lease, and each row's earlier attempts (how many, whether one is or was left
    # unresolved) read by the same statement (subqueries on sms_attempts_outbox)
    rows = fetch_all(conn.execute(
        "UPDATE sms_outbox SET state = 'sending', lease_owner = ?, lease_until = ?,"
        " attempts = attempts + 1, updated_at = ?,"
        " idempotency_key = coalesce(idempotency_key, 'cp-' || protocol || '-' || id)"
        f" WHERE id IN ({marks}) RETURNING *, {_EARLIER}",
        (owner, lease_until, now, *ids),
    ))
    rows.sort(key=lambda r: r["id"])
    earlier = {r["id"]: (r.pop("earlier_count"), r.pop("earlier_unresolved"), r.pop("earlier_in_flight"))
               for r in rows}
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
_EARLIER = ", ".join(
    f"(SELECT count(*) FROM sms_attempts a WHERE a.outbox_id = sms_outbox.id{where}) AS {name}"
    for where, name in (("", "earlier_count"),
                        (" AND a.outcome IN ('in_flight', 'unknown')", "earlier_unresolved"),
                        (" AND a.outcome = 'in_flight'", "earlier_in_flight")))


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
                " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
                " lease_owner = NULL, lease_until = NULL"
                f" WHERE id IN ({omarks}) AND state = 'sending' AND lease_owner = ?", (at, now, *oids, owner)).rowcount
    return released


def sender_step_sync(
    conn: sqlite3.Connection, *, finish: Sequence[tuple[int, dict]] = (), release: dict | None = None,
    claim: dict | None = None,
) -> tuple[list[Exception | None], list[dict]]:
    """One transaction of a sender's cycle: write the answers that came back
    (:func:`finish_attempts_sync`), give back unsent rows
    (:func:`release_unsent_in_tx`, keyword arguments in ``release``), and
    claim the next rows (:func:`claim_for_send_sync`, keyword arguments in
    ``claim``).  One commit instead of three: a transaction's fixed cost
    (locking, the WAL append) is most of the cost of a small one.
    Returns (per answer None or the error that refused it, the claimed rows).
    A claim alone when nothing is due opens no transaction (:func:`any_due_sync`).
    """
    if claim and not finish and not release:
        _lease_times(claim["owner"], claim["limit"], claim["lease_seconds"], claim["now"])
        if not any_due_sync(conn, claim["now"]):
            return [], []
    with row_locked(conn):  # the rows it writes are its own leases, or locked by the claim
        errors = finish_attempts_in_tx(conn, list(finish)) if finish else []
        if release:
            release_unsent_in_tx(conn, **release)
        rows = _claim_for_send_in_tx(conn, **claim) if claim else []
    return errors, rows


def reclaim_own_sync(conn: sqlite3.Connection, owner: str, now: str | datetime) -> int:
    """Rows still leased to ``owner`` by an earlier life of this sender: their
    lease ends now, so the next claim takes them at once (and marks their
    'in_flight' attempts 'unknown').  Only for a sender that holds its name
    exclusively (``callproof.sms.identity``): no live process can hold a row
    under it.  Returns how many."""
    if not owner:
        raise ValueError("owner must be a non-empty string")
    now = to_db_time(now)
    with immediate(conn):
        return conn.execute(
            "UPDATE sms_outbox SET lease_until = ? WHERE state = 'sending' AND lease_owner = ? AND lease_until > ?",
            (now, owner, now)).rowcount


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


class Outbox:
    """Async repository (``db.outbox``): claims, answers, receipts, counts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, outbox_id: int) -> dict | None:
        return await self._db.run_in_connection(get_sync, outbox_id)

    async def get_for_protocol(self, protocol: str) -> builtins.list[dict]:
        return await self._db.run_in_connection(get_for_protocol_sync, protocol)

    async def claim_for_send(self, owner: str, limit: int, lease_seconds: float, now: str | datetime,
                             backend: str, max_age_seconds: float | None = None) -> builtins.list[dict]:
        return await self._db.run_in_connection(
            claim_for_send_sync, owner, limit, lease_seconds, now, backend, max_age_seconds)

    async def finish_attempt(self, attempt_id: int, **kwargs) -> None:
        await self._db.run_in_connection(finish_attempt_sync, attempt_id, **kwargs)

    async def finish_attempts(self, items: builtins.list[tuple[int, dict]]) -> builtins.list[Exception | None]:
        return await self._db.run_in_connection(finish_attempts_sync, list(items))

    async def sender_step(self, *, finish: Sequence[tuple[int, dict]] = (), release: dict | None = None,
                          claim: dict | None = None) -> tuple[builtins.list[Exception | None], builtins.list[dict]]:
        return await self._db.run_in_connection(sender_step_sync, finish=finish, release=release, claim=claim)

    async def retry(self, outbox_ids: builtins.list[int], now: str | datetime) -> None:
        await self._db.run_in_connection(retry_sync, list(outbox_ids), now)

    async def list(self, state: str | tuple[str, ...] | None = None, limit: int = 100) -> builtins.list[dict]:
        return await self._db.run_in_connection(list_sync, state, limit)

    async def attempts(self, outbox_id: int) -> builtins.list[dict]:
        return await self._db.run_in_connection(attempts_sync, outbox_id)

    async def dlrs(self, outbox_id: int) -> builtins.list[dict]:
        return await self._db.run_in_connection(dlrs_sync, outbox_id)

    async def record_dlr(self, gateway_message_id: str, status: str, now: str | datetime,
                         detail: str | None = None, idempotency_key: str | None = None) -> int | None:
        return await self._db.run_in_connection(
            record_dlr_sync, gateway_message_id, status, now, detail, idempotency_key)

    async def expire_held_receipts(self, now: str | datetime, hold_seconds: float) -> builtins.list[dict]:
        return await self._db.run_in_connection(expire_held_receipts_sync, now, hold_seconds)

    async def reclaim_own(self, owner: str, now: str | datetime) -> int:
        return await self._db.run_in_connection(reclaim_own_sync, owner, now)

    async def counters(self) -> dict[str, dict[str, int]]:
        return await self._db.run_in_connection(counters_sync)
