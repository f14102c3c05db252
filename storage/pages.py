"""Reads behind the ops web page's call page (callproof/web/views_calls.py).

The call page shows everything about one protocol in one consistent read
(one transaction) and writes the ``call.viewed`` audit entry in the same call,
so no view goes unrecorded.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._rows import Row, rows
from ._sqlutil import fetch_all, fetch_one
from .audit import AUDIT_PAGE, append_sync, page_sync
from .exports import ExportSummary, export_summaries_sync
from .lookups import HoldSummary, SmsSummary, active_holds_for_call_sync, sms_for_protocol_sync
from .recordings import for_call_sync

__all__ = ["CallPage", "DeliverySummary", "RequestOnPage", "call_page_sync"]


@dataclass(frozen=True, slots=True)
class DeliverySummary(Row):
    """A delivery with the state of its link."""

    id: int
    channel: str
    recipient: str
    state: str
    error: str | None
    created_at: str
    sent_at: str | None
    expires_at: str
    download_count: int
    max_downloads: int | None
    revoked_at: str | None


@dataclass(slots=True)
class RequestOnPage:
    """A ``recording_requests`` row (``row``) with its exports and deliveries."""

    row: dict[str, Any]
    exports: list[ExportSummary] = field(default_factory=list)
    deliveries: list[DeliverySummary] = field(default_factory=list)


@dataclass(slots=True)
class CallPage:
    call: dict[str, Any]
    recordings: list[dict[str, Any]]
    sms: list[SmsSummary]
    requests: list[RequestOnPage]
    holds: list[HoldSummary]
    audit: list[dict[str, Any]]


def _deliveries(conn: sqlite3.Connection, request_id: int) -> list[DeliverySummary]:
    return rows(DeliverySummary, fetch_all(conn.execute(
        "SELECT d.id, d.channel, d.recipient, d.state, d.error, d.created_at, d.sent_at,"
        " l.expires_at, l.download_count, l.max_downloads, l.revoked_at"
        " FROM request_deliveries d JOIN download_links l ON l.id = d.link_id"
        " WHERE d.request_id = ? ORDER BY d.id", (request_id,))))


def call_page_sync(conn: sqlite3.Connection, protocol: str, *, actor: str,
                   now: str | datetime) -> CallPage | None:
    """The call, its recordings, SMS, requests (with exports and deliveries), the
    active legal holds that cover it and its audit trail; None if no call has
    ``protocol``.  Audited as ``call.viewed``."""
    conn.execute("BEGIN")
    try:
        call = fetch_one(conn.execute("SELECT * FROM calls WHERE protocol = ?", (protocol,)))
        if call is None:
            return None
        requests = [RequestOnPage(row, export_summaries_sync(conn, row["id"]), _deliveries(conn, row["id"]))
                    for row in fetch_all(conn.execute(
                        "SELECT * FROM recording_requests WHERE protocol = ? ORDER BY opened_at, id",
                        (protocol,)))]
        page = CallPage(
            call=call,
            recordings=for_call_sync(conn, call["id"]),
            sms=sms_for_protocol_sync(conn, protocol),
            requests=requests,
            holds=active_holds_for_call_sync(conn, protocol, call["caller_number"], call["started_at"]),
            audit=[{k: v for k, v in e.items() if k != "protocol"}
                   for e in page_sync(conn, protocol=protocol, limit=AUDIT_PAGE)],
        )
    finally:
        conn.execute("COMMIT")
    append_sync(conn, "call.viewed", actor, now, protocol=protocol, details={"via": "web"})
    return page
