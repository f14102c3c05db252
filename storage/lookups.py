"""Reads behind a customer lookup (callproof/rights/lookup.py) and the call page:
calls by one selector, what holds a call's recording, deletion receipts and
the protocol SMS of a call.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from ._rows import Row, rows
from ._sqlutil import fetch_all, fetch_one

__all__ = ["CALL_SELECTORS", "DeletionReceipt", "HoldSummary", "SmsSummary", "active_holds_for_call_sync",
           "deletion_receipt_sync", "find_calls_sync", "open_request_ids_sync", "sms_for_protocol_sync"]

# selector kind -> the calls column it is compared with
CALL_SELECTORS = {"protocol": "protocol", "phone": "caller_number", "cpf": "cpf_hash",
                  "customer_code": "customer_code_hash"}


@dataclass(frozen=True, slots=True)
class HoldSummary(Row):
    """An active legal hold covering a call."""

    id: int
    kind: str
    reason: str
    placed_by: str
    placed_at: str


@dataclass(frozen=True, slots=True)
class DeletionReceipt(Row):
    """The audit entry that records a recording's deletion by retention."""

    id: int
    hash: str
    at: str
    actor: str
    details: str | None


@dataclass(frozen=True, slots=True)
class SmsSummary(Row):
    id: int
    state: str
    destination: str | None
    attempts: int
    reason: str | None
    created_at: str
    updated_at: str
    dlr_state: str | None = None
    dlr_at: str | None = None


def find_calls_sync(conn: sqlite3.Connection, kind: str, value: str, *, start: str | None = None,
                    stop: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Call rows whose ``kind`` (a key of :data:`CALL_SELECTORS`) equals ``value``,
    started in ``[start, stop)``, newest first, at most ``limit``."""
    where, params = [f"c.{CALL_SELECTORS[kind]} = ?"], [value]
    if start:
        where.append("c.started_at >= ?")
        params.append(start)
    if stop:
        where.append("c.started_at < ?")
        params.append(stop)
    return fetch_all(conn.execute(
        f"SELECT c.* FROM calls c WHERE {' AND '.join(where)} ORDER BY c.started_at DESC, c.id DESC LIMIT ?",
        (*params, limit)))


def active_holds_for_call_sync(conn: sqlite3.Connection, protocol: str | None, caller_number: str | None,
                               started_at: str) -> list[HoldSummary]:
    """The unreleased legal holds that cover a call (storage/holds.py rule)."""
    return rows(HoldSummary, fetch_all(conn.execute(
        "SELECT id, kind, reason, placed_by, placed_at FROM legal_holds WHERE released_at IS NULL AND ("
        " (kind = 'protocol' AND protocol = ?) OR (kind = 'caller' AND caller_number = ?)"
        " OR (kind = 'date_range' AND ? >= from_at AND ? < to_at)) ORDER BY id",
        (protocol, caller_number, started_at, started_at))))


def open_request_ids_sync(conn: sqlite3.Connection, protocol: str, grace_cutoff: str) -> list[int]:
    """Requests on ``protocol`` still open, or closed after ``grace_cutoff``."""
    return [r[0] for r in conn.execute(
        "SELECT id FROM recording_requests WHERE protocol = ? AND (closed_at IS NULL OR closed_at > ?)"
        " ORDER BY id", (protocol, grace_cutoff))]


def deletion_receipt_sync(conn: sqlite3.Connection, recording_id: int) -> DeletionReceipt | None:
    return DeletionReceipt.maybe(fetch_one(conn.execute(
        "SELECT id, hash, at, actor, details FROM audit_log WHERE action = 'recording.deleted'"
        " AND subject = ? ORDER BY id DESC LIMIT 1", (f"recording:{recording_id}",))))


def sms_for_protocol_sync(conn: sqlite3.Connection, protocol: str) -> list[SmsSummary]:
    return rows(SmsSummary, fetch_all(conn.execute(
        "SELECT id, state, destination, attempts, reason, created_at, updated_at, dlr_state, dlr_at"
        " FROM sms_outbox WHERE protocol = ? ORDER BY id", (protocol,))))
