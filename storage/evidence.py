"""The ``evidence_records`` table: one signed record per finalised recording.

The record's content and signature are made outside storage (callproof/evidence/records.py,
with a key that never enters the database); storage keeps them append-only and hands out
what a verifier needs: the record with its recording's row and the call's facts.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._sqlutil import fetch_all, fetch_one, immediate
from .timefmt import to_db_time

if TYPE_CHECKING:
    from .db import Database

#: The call's columns an evidence record carries (no caller number, name or CPF: the
#: record outlives the anonymisation of the call row).
CALL_FACTS = ("id", "protocol", "started_at", "language", "consent_prompt", "consent_language",
              "consent_sha256", "consent_started_at", "consent_finished_at", "consent_outcome",
              "protocol_read_count", "protocol_read_finished_at", "recording_started_at", "handed_off_at",
              "served_by")


def facts_sync(conn: sqlite3.Connection, recording_id: int) -> dict[str, Any] | None:
    """``{"recording": row, "call": {CALL_FACTS}, "protocol_allocated_at": ...}`` or None."""
    rec = fetch_one(conn.execute("SELECT * FROM recordings WHERE id = ?", (recording_id,)))
    if rec is None:
        return None
    call = fetch_one(conn.execute(f"SELECT {', '.join(CALL_FACTS)} FROM calls WHERE id = ?", (rec["call_id"],)))
    allocated = None
    if call is not None and call["protocol"]:
        row = conn.execute("SELECT allocated_at FROM protocols WHERE protocol = ?", (call["protocol"],)).fetchone()
        allocated = row[0] if row else None
    return {"recording": rec, "call": call, "protocol_allocated_at": allocated}


def insert_sync(conn: sqlite3.Connection, recording_id: int, protocol: str | None, record: str,
                record_sha256: str, signature: str | None, key_fingerprint: str | None,
                created_at: str | datetime) -> bool:
    """Store a record; False (nothing written) when the recording has one already."""
    with immediate(conn):
        if conn.execute("SELECT 1 FROM evidence_records WHERE recording_id = ?", (recording_id,)).fetchone():
            return False
        conn.execute(
            "INSERT INTO evidence_records (recording_id, protocol, record, record_sha256, signature,"
            " key_fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (recording_id, protocol, record, record_sha256, signature, key_fingerprint, to_db_time(created_at)))
    return True


def for_recording_sync(conn: sqlite3.Connection, recording_id: int) -> dict[str, Any] | None:
    return fetch_one(conn.execute("SELECT * FROM evidence_records WHERE recording_id = ?", (recording_id,)))


def finalised_batch_sync(conn: sqlite3.Connection, *, after_id: int, protocol: str | None = None,
                         limit: int = 500) -> list[dict[str, Any]]:
    """Finalised recordings with id > ``after_id`` (id order), each with its evidence record's
    columns (``record``, ``signature``, ``key_fingerprint``; NULL when it has none)."""
    where = "r.state = 'finalised' AND r.id > ?"
    params: list[object] = [after_id]
    if protocol:
        where += " AND r.protocol = ?"
        params.append(protocol)
    return fetch_all(conn.execute(
        "SELECT r.id, r.protocol, r.path, r.sha256, r.size_bytes, e.record, e.signature, e.key_fingerprint,"
        " r.encryption, r.age_path, r.payload_sha256"
        " FROM recordings r LEFT JOIN evidence_records e ON e.recording_id = r.id"
        f" WHERE {where} ORDER BY r.id LIMIT ?", (*params, limit)))


class EvidenceRecords:
    """Async repository (``db.evidence``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def facts(self, recording_id: int) -> dict[str, Any] | None:
        return await self._db.run_in_connection(facts_sync, recording_id)

    async def insert(self, recording_id: int, protocol: str | None, record: str, record_sha256: str,
                     signature: str | None, key_fingerprint: str | None, created_at: str | datetime) -> bool:
        return await self._db.run_in_connection(insert_sync, recording_id, protocol, record, record_sha256,
                                                signature, key_fingerprint, created_at)

    async def for_recording(self, recording_id: int) -> dict[str, Any] | None:
        return await self._db.run_in_connection(for_recording_sync, recording_id)
