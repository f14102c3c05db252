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

_SQL_DUE = """
SELECT id FROM (
    SELECT id, next_attempt_at AS due FROM sms_outbox
     WHERE state = 'pending' AND next_attempt_at <= :now
    UNION ALL
    SELECT id, lease_until AS due FROM sms_outbox
     WHERE state = 'sending' AND lease_until <= :now
) ORDER BY due, id LIMIT :limit
"""


def claim_sync(
    conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: str | datetime
) -> list[dict]:
    """Lease up to ``limit`` due rows to ``owner``: 'pending' rows whose
    next_attempt_at has come, and 'sending' rows whose lease has expired.
    One BEGIN IMMEDIATE transaction, so two owners never get the same row.
    """
    if not owner:
        raise ValueError("owner must be a non-empty string")
    if limit < 1 or lease_seconds <= 0:
        raise ValueError("limit must be >= 1 and lease_seconds > 0")
    now = to_db_time(now)
    lease_until = to_db_time(parse_db_time(now) + timedelta(seconds=lease_seconds))
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
