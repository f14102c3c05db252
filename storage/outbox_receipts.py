"""SMS delivery receipts (``sms_dlrs``) and the counts behind the SMS metrics."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ._sqlutil import fetch_all, immediate
from .timefmt import to_db_time


def attach_early_receipts(conn: sqlite3.Connection, oid: int, gateway_message_id: str) -> None:
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
