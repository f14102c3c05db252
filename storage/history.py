"""The ``history_requests`` table and the reads behind a customer's contact
history (documents: callproof/rights/history.py).

A subject is a phone number (E.164) or the keyed hash of a CPF / customer
code; the column it is compared with follows from its kind.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._rows import Row, rows
from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .timefmt import to_db_time

__all__ = [
    "SUBJECT_KINDS",
    "HistoryCall",
    "HistoryRequest",
    "HistoryRequestLine",
    "collect_history_sync",
    "create_history_request_sync",
    "get_history_request_sync",
    "mark_history_produced_sync",
]

_CALL_COLUMN = {"phone": "caller_number", "cpf": "cpf_hash", "customer_code": "customer_code_hash"}
SUBJECT_KINDS = tuple(_CALL_COLUMN)


@dataclass(frozen=True, slots=True)
class HistoryRequest(Row):
    id: int
    subject_kind: str
    subject_hash: str
    received_at: str
    due_at: str
    produced_at: str | None
    format: str | None
    path: str | None
    sha256: str | None
    created_by: str


@dataclass(frozen=True, slots=True)
class HistoryCall(Row):
    id: int
    protocol: str | None
    started_at: str
    ended_at: str | None
    status: str
    recording: str | None   # state of the newest recording, None when not recorded
    language: str | None = None  # the language the call was served in (its document's, by default)


@dataclass(frozen=True, slots=True)
class HistoryRequestLine(Row):
    id: int
    protocol: str
    request_protocol: str
    state: str
    opened_at: str
    due_at: str | None
    closed_at: str | None
    refused_reason: str | None


def collect_history_sync(conn: sqlite3.Connection, kind: str,
                         key: str) -> tuple[list[HistoryCall], list[HistoryRequestLine]]:
    """The subject's calls (oldest first) with their recording state, and the
    requests on those calls or filed by the subject on other calls."""
    column = _CALL_COLUMN[kind]
    calls = fetch_all(conn.execute(
        f"SELECT id, protocol, started_at, ended_at, status, language FROM calls WHERE {column} = ?"
        " ORDER BY started_at, id", (key,)))
    protocols = [c["protocol"] for c in calls if c["protocol"]]
    for call in calls:
        rec = conn.execute(
            "SELECT state FROM recordings WHERE call_id = ? ORDER BY started_at DESC, id DESC LIMIT 1",
            (call["id"],)).fetchone()
        call["recording"] = rec[0] if rec else None
    req_column = "requester_number" if kind == "phone" else "requester_identity_hash"
    marks = ", ".join("?" for _ in protocols)
    by_protocol = f" OR protocol IN ({marks})" if protocols else ""
    requests = fetch_all(conn.execute(
        "SELECT id, protocol, request_protocol, state, opened_at, due_at, closed_at, refused_reason"
        f" FROM recording_requests WHERE request_protocol IS NOT NULL AND ({req_column} = ?{by_protocol})"
        " ORDER BY opened_at, id", (key, *protocols)))
    return rows(HistoryCall, calls), rows(HistoryRequestLine, requests)


def create_history_request_sync(conn: sqlite3.Connection, kind: str, key: str, *, received_at: str | datetime,
                                due_at: str | datetime, actor: str, fmt: str) -> int:
    """Record that a history was asked for; audited ``history.requested``."""
    received, due = to_db_time(received_at), to_db_time(due_at)
    with immediate(conn):
        history_id = inserted_id(conn.execute(
            "INSERT INTO history_requests (subject_kind, subject_hash, received_at, due_at, created_by)"
            " VALUES (?, ?, ?, ?, ?)", (kind, key, received, due, actor)))
        append_in_transaction_sync(conn, "history.requested", actor, received, subject=f"history:{history_id}",
                                   details={"by": kind, "due_at": due, "format": fmt})
    return history_id


def mark_history_produced_sync(conn: sqlite3.Connection, history_id: int, *, produced_at: str | datetime,
                               fmt: str, path: str, sha256: str, actor: str,
                               audit_details: dict[str, Any]) -> HistoryRequest:
    """When, where and what was produced; audited ``history.produced``."""
    produced = to_db_time(produced_at)
    with immediate(conn):
        conn.execute("UPDATE history_requests SET produced_at = ?, format = ?, path = ?, sha256 = ? WHERE id = ?",
                     (produced, fmt, path, sha256, history_id))
        append_in_transaction_sync(conn, "history.produced", actor, produced, subject=f"history:{history_id}",
                                   details=audit_details)
    row = get_history_request_sync(conn, history_id)
    assert row is not None
    return row


def get_history_request_sync(conn: sqlite3.Connection, history_id: int) -> HistoryRequest | None:
    return HistoryRequest.maybe(fetch_one(conn.execute("SELECT * FROM history_requests WHERE id = ?",
                                                       (history_id,))))
