"""Read-only SQL behind the call page and the admin pages (one function per page).

The call page shows everything about one protocol in one consistent read
(one transaction), and writes the ``call.viewed`` audit entry in the same
call so no view goes unrecorded.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from callproof.storage._sqlutil import fetch_all, fetch_one
from callproof.storage.audit import append_sync

AUDIT_PAGE = 200


def call_page_sync(conn: sqlite3.Connection, protocol: str, *, actor: str, now: str | datetime) -> dict | None:
    """The call, its recordings, SMS, requests (with exports and deliveries), the
    active legal holds that cover it and its audit trail; None if no call has
    ``protocol``.  Audited as ``call.viewed``."""
    conn.execute("BEGIN")
    try:
        call = fetch_one(conn.execute("SELECT * FROM calls WHERE protocol = ?", (protocol,)))
        if call is None:
            return None
        page: dict[str, Any] = {"call": call}
        page["recordings"] = fetch_all(conn.execute(
            "SELECT * FROM recordings WHERE call_id = ? ORDER BY started_at, id", (call["id"],)))
        page["sms"] = fetch_all(conn.execute(
            "SELECT id, destination, state, reason, attempts, created_at, updated_at, dlr_state, dlr_at"
            " FROM sms_outbox WHERE protocol = ? ORDER BY id", (protocol,)))
        requests = fetch_all(conn.execute(
            "SELECT * FROM recording_requests WHERE protocol = ? ORDER BY opened_at, id", (protocol,)))
        for req in requests:
            req["exports"] = fetch_all(conn.execute(
                "SELECT id, format, sha256, size_bytes, created_at, created_by, deleted_at"
                " FROM request_exports WHERE request_id = ? ORDER BY id", (req["id"],)))
            req["deliveries"] = fetch_all(conn.execute(
                "SELECT d.id, d.channel, d.recipient, d.state, d.error, d.created_at, d.sent_at,"
                " l.expires_at, l.download_count, l.max_downloads, l.revoked_at"
                " FROM request_deliveries d JOIN download_links l ON l.id = d.link_id"
                " WHERE d.request_id = ? ORDER BY d.id", (req["id"],)))
        page["requests"] = requests
        page["holds"] = fetch_all(conn.execute(
            "SELECT id, kind, reason, placed_by, placed_at FROM legal_holds WHERE released_at IS NULL AND ("
            " (kind = 'protocol' AND protocol = :p)"
            " OR (kind = 'caller' AND caller_number = :caller)"
            " OR (kind = 'date_range' AND :started >= from_at AND :started < to_at)) ORDER BY id",
            {"p": protocol, "caller": call["caller_number"], "started": call["started_at"]}))
        page["audit"] = fetch_all(conn.execute(
            "SELECT id, at, actor, action, subject, details FROM audit_log WHERE protocol = ?"
            " ORDER BY id DESC LIMIT ?", (protocol, AUDIT_PAGE)))
    finally:
        conn.execute("COMMIT")
    append_sync(conn, "call.viewed", actor, now, protocol=protocol, details={"via": "web"})
    return page


def audit_page_sync(conn: sqlite3.Connection, *, before_id: int | None = None,
                    action: str | None = None) -> list[dict]:
    """Newest audit entries first, AUDIT_PAGE at a time (``before_id`` pages back)."""
    where, params = [], []
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    if action:
        where.append("action = ?")
        params.append(action)
    sql = "SELECT id, at, actor, action, protocol, subject, details FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return fetch_all(conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, AUDIT_PAGE)))


def request_with_call_sync(conn: sqlite3.Connection, request_id: int) -> dict | None:
    return fetch_one(conn.execute(
        "SELECT q.*, c.caller_number AS call_caller_number, c.started_at AS call_started_at"
        " FROM recording_requests q LEFT JOIN calls c ON c.protocol = q.protocol WHERE q.id = ?",
        (request_id,)))
