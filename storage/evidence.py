"""The ``evidence_records`` table: one signed record per finalised recording.

The record's content and signature are made outside storage (callproof/evidence/records.py,
with a key that never enters the database); storage keeps them append-only and hands out
what a verifier needs: the record with its recording's row and the call's facts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from . import audit
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


#: A recording's row, its call's facts and its protocol's allocation, in one statement (three
#: round trips on PostgreSQL, where finalising a recording reads them in its transaction)
_SQL_FACTS = (
    "SELECT r.*, " + ", ".join(f"c.{name} AS c__{name}" for name in CALL_FACTS)
    + ", p.allocated_at AS p__allocated_at FROM recordings r LEFT JOIN calls c ON c.id = r.call_id"
    " LEFT JOIN protocols p ON p.protocol = c.protocol WHERE r.id = ?"
)


def facts_sync(conn: sqlite3.Connection, recording_id: int) -> dict[str, Any] | None:
    """``{"recording": row, "call": {CALL_FACTS}, "protocol_allocated_at": ...}`` or None."""
    joined = fetch_one(conn.execute(_SQL_FACTS, (recording_id,)))
    if joined is None:
        return None
    allocated = joined.pop("p__allocated_at")
    call = {name: joined.pop(f"c__{name}") for name in CALL_FACTS}
    if call["id"] is None:  # no such call row
        return {"recording": joined, "call": None, "protocol_allocated_at": None}
    return {"recording": joined, "call": call, "protocol_allocated_at": allocated if call["protocol"] else None}


class SealedRecord(Protocol):
    """A record made outside storage (callproof/evidence/records.py ``Sealed``)."""

    @property
    def record(self) -> str: ...
    @property
    def record_sha256(self) -> str: ...
    @property
    def signature(self) -> str | None: ...
    @property
    def key_fingerprint(self) -> str | None: ...


#: Makes a recording's record from its facts (:func:`facts_sync`) and the signing time: how
#: the journal's replay seals what it finalises without storage holding the key.
Sealer = Callable[[dict[str, Any], str], SealedRecord]


def insert_in_transaction_sync(conn: sqlite3.Connection, recording_id: int, protocol: str | None, record: str,
                               record_sha256: str, signature: str | None, key_fingerprint: str | None,
                               created_at: str | datetime) -> bool:
    """:func:`insert_sync` inside the caller's write transaction (one statement: the row goes in
    unless the recording has one)."""
    return conn.execute(
        "INSERT INTO evidence_records (recording_id, protocol, record, record_sha256, signature,"
        " key_fingerprint, created_at) SELECT ?, ?, ?, ?, ?, ?, ?"
        " WHERE NOT EXISTS (SELECT 1 FROM evidence_records WHERE recording_id = ?)",
        (recording_id, protocol, record, record_sha256, signature, key_fingerprint, to_db_time(created_at),
         recording_id)).rowcount > 0


def insert_sync(conn: sqlite3.Connection, recording_id: int, protocol: str | None, record: str,
                record_sha256: str, signature: str | None, key_fingerprint: str | None,
                created_at: str | datetime) -> bool:
    """Store a record; False (nothing written) when the recording has one already."""
    with immediate(conn):
        return insert_in_transaction_sync(conn, recording_id, protocol, record, record_sha256, signature,
                                          key_fingerprint, created_at)


def seal_finalised_in_transaction_sync(conn: sqlite3.Connection, recording_id: int, sealer: Sealer | None,
                                       now: str, *, journalled: bool = False,
                                       chain_locked: bool = False) -> SealedRecord | None:
    """What finalising a recording writes besides its row, inside the caller's transaction:
    its evidence record (made by ``sealer``; none without one) and its ``recording.finalised``
    audit entry, the entry ``callproof evidence seal`` trusts later."""
    facts = facts_sync(conn, recording_id)
    if facts is None:
        return None
    rec = facts["recording"]
    sealed = sealer(facts, now) if sealer is not None else None
    if sealed is not None:
        insert_in_transaction_sync(conn, recording_id, rec["protocol"], sealed.record, sealed.record_sha256,
                                   sealed.signature, sealed.key_fingerprint, now)
    details: dict[str, Any] = {"sha256": rec["sha256"], "size_bytes": rec["size_bytes"],
                               "duration_ms": rec["duration_ms"],
                               "evidence_sha256": sealed.record_sha256 if sealed else None,
                               "evidence_key": sealed.key_fingerprint if sealed else None}
    if journalled:
        details["journalled"] = True
    audit.append_in_transaction_sync(conn, "recording.finalised", "callproof", now, protocol=rec["protocol"],
                                     subject=rec["path"], details=details, chain_locked=chain_locked)
    return sealed


def seal_finalised_sync(conn: sqlite3.Connection, recording_id: int, sealer: Sealer | None,
                        now: str) -> SealedRecord | None:
    """:func:`seal_finalised_in_transaction_sync` in a transaction of its own (a live call's
    finalisation, right after its row)."""
    with immediate(conn, chains=("audit_log",)):  # the chain's lock in the BEGIN's round trip
        return seal_finalised_in_transaction_sync(conn, recording_id, sealer, now, chain_locked=True)


#: Prefer a recording's signed record (one sealed late sits next to the unsigned one).
_CHOSEN = ("SELECT id FROM evidence_records WHERE recording_id = {rid} ORDER BY signature IS NULL, id LIMIT 1")


def for_recording_sync(conn: sqlite3.Connection, recording_id: int) -> dict[str, Any] | None:
    """The recording's record: its signed one when it has one."""
    return fetch_one(conn.execute("SELECT * FROM evidence_records WHERE recording_id = ?"
                                  " ORDER BY signature IS NULL, id LIMIT 1", (recording_id,)))


def has_signed_sync(conn: sqlite3.Connection, recording_id: int) -> bool:
    return conn.execute("SELECT 1 FROM evidence_records WHERE recording_id = ? AND signature IS NOT NULL",
                        (recording_id,)).fetchone() is not None


def unsigned_batch_sync(conn: sqlite3.Connection, *, after_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Finalised recordings with id > ``after_id`` that have no signed record, in id order."""
    return fetch_all(conn.execute(
        "SELECT r.* FROM recordings r WHERE r.state = 'finalised' AND r.id > ? AND NOT EXISTS"
        " (SELECT 1 FROM evidence_records e WHERE e.recording_id = r.id AND e.signature IS NOT NULL)"
        " ORDER BY r.id LIMIT ?", (after_id, limit)))


def finalised_entries_sync(conn: sqlite3.Connection, path: str) -> list[dict[str, Any]]:
    """The ``recording.finalised`` audit entries of the recording at ``path``, with their chain fields."""
    return fetch_all(conn.execute(
        "SELECT id, at, details, hash FROM audit_log WHERE action = 'recording.finalised' AND subject = ?"
        " ORDER BY id", (path,)))


def insert_sealed_late_sync(conn: sqlite3.Connection, recording_id: int, protocol: str | None, record: str,
                            record_sha256: str, signature: str, key_fingerprint: str, created_at: str,
                            actor: str, details: dict[str, Any]) -> bool:
    """A signed record made after the fact, with its ``evidence.sealed_late`` audit entry, in one
    transaction; False (nothing written) when the recording has a signed record already."""
    with immediate(conn):
        if has_signed_sync(conn, recording_id):
            return False
        conn.execute(
            "INSERT INTO evidence_records (recording_id, protocol, record, record_sha256, signature,"
            " key_fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (recording_id, protocol, record, record_sha256, signature, key_fingerprint, to_db_time(created_at)))
        audit.append_in_transaction_sync(conn, "evidence.sealed_late", actor, created_at, protocol=protocol,
                                         subject=f"recording:{recording_id}", details=details)
    return True


def finalised_batch_sync(conn: sqlite3.Connection, *, after_id: int, protocol: str | None = None,
                         limit: int = 500) -> list[dict[str, Any]]:
    """Finalised (and 'empty': no audio) recordings with id > ``after_id`` (id order), each with
    its state and its evidence record's columns (``record``, ``signature``, ``key_fingerprint``;
    NULL when it has none)."""
    where = "r.state IN ('finalised', 'empty') AND r.id > ?"
    params: list[object] = [after_id]
    if protocol:
        where += " AND r.protocol = ?"
        params.append(protocol)
    return fetch_all(conn.execute(
        "SELECT r.id, r.protocol, r.path, r.sha256, r.size_bytes, r.state, e.record, e.signature, e.key_fingerprint,"
        " r.encryption, r.age_path, r.payload_sha256, r.node, r.store_path"
        f" FROM recordings r LEFT JOIN evidence_records e ON e.id = ({_CHOSEN.format(rid='r.id')})"
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

    async def seal_finalised(self, recording_id: int, sealer: Sealer | None, now: str) -> SealedRecord | None:
        return await self._db.run_in_connection(seal_finalised_sync, recording_id, sealer, now)

    async def for_recording(self, recording_id: int) -> dict[str, Any] | None:
        return await self._db.run_in_connection(for_recording_sync, recording_id)
