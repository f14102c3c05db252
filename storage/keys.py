"""What the key management (callproof/encryption/, docs/keys.md) reads and writes in the
database: which recordings still need a period key, whether a recording is held, the re-wrap
of a held recording to the hold key, and the audit entries of key actions.

Audit entries name keys by id and fingerprint (sha256 of the public key), never key material.
Uses the columns of the recording-encryption migration (``encryption``, ``key_ids``,
``ciphertext_sha256``, ``ciphertext_size``, ``age_path``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from ._sqlutil import fetch_one, immediate
from .audit import append_in_transaction_sync, append_sync
from .errors import NotFoundError
from .holds import held_sql
from .timefmt import to_db_time

_HELD = held_sql("r.protocol", "(SELECT caller_number FROM calls c WHERE c.id = r.call_id)", "r.started_at")


def recording_held_sync(conn: sqlite3.Connection, recording_id: int, *, grace_cutoff: str | datetime) -> bool:
    """Is the recording under a legal hold or an open customer request (closed after ``grace_cutoff``)?"""
    row = conn.execute(f"SELECT {_HELD} FROM recordings r WHERE r.id = :id",
                       {"id": recording_id, "grace_cutoff": to_db_time(grace_cutoff)}).fetchone()
    if row is None:
        raise NotFoundError(f"recording {recording_id} does not exist")
    return bool(row[0])


def record_rewrap_sync(conn: sqlite3.Connection, recording_id: int, *, from_key: str, key_ids: tuple[str, ...],
                       ciphertext_sha256: str, ciphertext_size: int, actor: str, at: str | datetime,
                       fingerprints: dict[str, str]) -> None:
    """The recording's .age file is now wrapped to ``key_ids`` (same payload): its row and
    the audit entry in one transaction."""
    with immediate(conn):
        row = fetch_one(conn.execute("SELECT protocol, key_ids FROM recordings WHERE id = ? AND encryption = "
                                     "'encrypted'", (recording_id,)))
        if row is None:
            raise NotFoundError(f"recording {recording_id} does not exist or is not encrypted")
        conn.execute("UPDATE recordings SET key_ids = ?, ciphertext_sha256 = ?, ciphertext_size = ? WHERE id = ?",
                     (",".join(key_ids), ciphertext_sha256.lower(), ciphertext_size, recording_id))
        append_in_transaction_sync(
            conn, "recording.rewrapped", actor, at, protocol=row["protocol"], subject=f"recording:{recording_id}",
            details={"from_keys": row["key_ids"], "to_keys": ",".join(key_ids), "reason": f"{from_key} destroyed",
                     "ciphertext_sha256": ciphertext_sha256.lower(), "fingerprints": fingerprints})


def recordings_per_key_sync(conn: sqlite3.Connection) -> dict[str, int]:
    """How many encrypted recordings not deleted each key id opens (``keys list``)."""
    counts: dict[str, int] = {}
    for key_ids, n in conn.execute("SELECT key_ids, count(*) FROM recordings WHERE encryption = 'encrypted'"
                                   " AND state <> 'deleted' GROUP BY key_ids"):
        for key_id in (key_ids or "").split(","):
            if key_id:
                counts[key_id] = counts.get(key_id, 0) + n
    return counts


def audit_key_sync(conn: sqlite3.Connection, action: str, actor: str, at: str | datetime, *,
                   key_id: str | None = None, details: dict[str, Any] | None = None) -> int:
    """One audit entry of a key action (``keys.created``, ``keys.destroyed``, ...)."""
    return append_sync(conn, action, actor, at, subject=None if key_id is None else f"key:{key_id}",
                       details=details)
