"""The ``recordings`` table: MixMonitor files and their integrity data.

Lifecycle: ``create`` (state 'recording') -> ``finalise`` (size, duration,
sha256) or ``fail`` ('failed', or 'missing' when the file never appeared).
'deleted' is set by the retention sweeper (storage/retention.py).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id, recoverable
from .errors import AlreadyExistsError, InvalidStateError, NotFoundError
from .timefmt import to_db_time, to_db_time_or_none

if TYPE_CHECKING:
    from .db import Database

FAIL_STATES = frozenset({"failed", "missing"})


def create_sync(
    conn: sqlite3.Connection,
    call_id: int,
    protocol: str | None,
    path: str,
    caller_number: str | None,
    started_at: str | datetime,
    retention_until: str | datetime | None = None,
    retention_class: str | None = None,
    node: str | None = None,
) -> int:
    """A new recording row; ``node``: the node whose root holds its file (migration 0018)."""
    values = (call_id, protocol, path, caller_number, to_db_time(started_at),
              to_db_time_or_none(retention_until), retention_class)
    try:
        with recoverable(conn):
            cur = conn.execute(
                "INSERT INTO recordings (call_id, protocol, path, caller_number, started_at, state,"
                " retention_until, retention_class, node) VALUES (?, ?, ?, ?, ?, 'recording', ?, ?, ?)",
                (*values, node),
            ) if node is not None else conn.execute(
                "INSERT INTO recordings (call_id, protocol, path, caller_number, started_at, state,"
                " retention_until, retention_class) VALUES (?, ?, ?, ?, ?, 'recording', ?, ?)", values)
    except sqlite3.IntegrityError as e:
        existing = get_by_path_sync(conn, path)
        if existing is not None:
            raise AlreadyExistsError(
                f"recording path {path!r} already registered (id {existing['id']})"
            ) from e
        raise
    return inserted_id(cur)


def _require_recording(conn: sqlite3.Connection, rec_id: int, wanted: str) -> NoReturn:
    row = get_sync(conn, rec_id)
    if row is None:
        raise NotFoundError(f"recording {rec_id} does not exist")
    raise InvalidStateError(f"recording {rec_id} is {row['state']!r}; cannot {wanted}")


def finalise_sync(
    conn: sqlite3.Connection,
    rec_id: int,
    *,
    size_bytes: int,
    duration_ms: int,
    sha256: str,
    finalised_at: str | datetime,
) -> None:
    """'recording' -> 'finalised', or 'empty' when the file holds no audio (0 ms, e.g. a
    header-only WAV): a row never presents a silent file as a recording.  Repeating it
    with the same sha256 is a no-op."""
    sha256 = sha256.lower()
    state = finished_state(duration_ms)
    cur = conn.execute(
        "UPDATE recordings SET state = ?, size_bytes = ?, duration_ms = ?,"
        " sha256 = ?, finalised_at = ?, error = NULL WHERE id = ? AND state = 'recording'",
        (state, size_bytes, duration_ms, sha256, to_db_time(finalised_at), rec_id),
    )
    if cur.rowcount == 0:
        row = get_sync(conn, rec_id)
        if row is not None and row["state"] == state and row["sha256"] == sha256:
            return
        _require_recording(conn, rec_id, "finalise")


def finished_state(duration_ms: int) -> str:
    """The state a measured recording ends in: 'empty' when it holds no audio."""
    return "finalised" if duration_ms > 0 else "empty"


def fail_sync(conn: sqlite3.Connection, rec_id: int, error: str, state: str = "failed") -> None:
    """'recording' -> 'failed' (or 'missing' when the file is not there)."""
    if state not in FAIL_STATES:
        raise ValueError(f"state must be one of {sorted(FAIL_STATES)}, got {state!r}")
    cur = conn.execute(
        "UPDATE recordings SET state = ?, error = ? WHERE id = ? AND state = 'recording'",
        (state, error, rec_id),
    )
    if cur.rowcount == 0:
        _require_recording(conn, rec_id, f"mark it {state!r}")


def get_sync(conn: sqlite3.Connection, rec_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM recordings WHERE id = ?", (rec_id,)))


def get_by_path_sync(conn: sqlite3.Connection, path: str) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM recordings WHERE path = ?", (path,)))


def for_call_sync(conn: sqlite3.Connection, call_id: int) -> list[dict]:
    return fetch_all(conn.execute(
        "SELECT * FROM recordings WHERE call_id = ? ORDER BY started_at, id", (call_id,)
    ))


def unfinalised_sync(conn: sqlite3.Connection) -> list[dict]:
    return fetch_all(conn.execute(
        "SELECT * FROM recordings WHERE state = 'recording' ORDER BY started_at, id"
    ))


class Recordings:
    """Async repository (``db.recordings``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        call_id: int,
        protocol: str | None,
        path: str,
        caller_number: str | None,
        started_at: str | datetime,
        retention_until: str | datetime | None = None,
        retention_class: str | None = None,
        node: str | None = None,
    ) -> int:
        return await self._db.run_in_connection(
            create_sync, call_id, protocol, path, caller_number, started_at,
            retention_until, retention_class, node,
        )

    async def finalise(
        self,
        rec_id: int,
        *,
        size_bytes: int,
        duration_ms: int,
        sha256: str,
        finalised_at: str | datetime,
    ) -> None:
        await self._db.run_in_connection(
            finalise_sync, rec_id, size_bytes=size_bytes, duration_ms=duration_ms,
            sha256=sha256, finalised_at=finalised_at,
        )

    async def fail(self, rec_id: int, error: str, *, state: str = "failed") -> None:
        await self._db.run_in_connection(fail_sync, rec_id, error, state)

    async def get(self, rec_id: int) -> dict | None:
        return await self._db.run_in_connection(get_sync, rec_id)

    async def get_by_path(self, path: str) -> dict | None:
        return await self._db.run_in_connection(get_by_path_sync, path)

    async def for_call(self, call_id: int) -> list[dict]:
        return await self._db.run_in_connection(for_call_sync, call_id)

    async def mark_encrypted(self, rec_id: int, *, age_path: str, ciphertext_sha256: str, ciphertext_size: int,
                             payload_sha256: str, key_ids: tuple[str, ...] | list[str]) -> None:
        await self._db.run_in_connection(mark_encrypted_sync, rec_id, age_path=age_path,
                                         ciphertext_sha256=ciphertext_sha256, ciphertext_size=ciphertext_size,
                                         payload_sha256=payload_sha256, key_ids=key_ids)

    async def mark_encryption_pending(self, rec_id: int, reason: str) -> None:
        await self._db.run_in_connection(mark_encryption_pending_sync, rec_id, reason)

    async def with_key(self, key_id: str) -> list[dict]:
        return await self._db.run_in_connection(recordings_with_key_sync, key_id)

    async def unfinalised(self) -> list[dict]:
        """Rows still 'recording' (e.g. after a crash), oldest first."""
        return await self._db.run_in_connection(unfinalised_sync)


def latest_for_protocol_sync(conn: sqlite3.Connection, protocol: str) -> dict | None:
    """The newest recording row of a call protocol (any state)."""
    return fetch_one(conn.execute(
        "SELECT * FROM recordings WHERE protocol = ? ORDER BY started_at DESC, id DESC LIMIT 1", (protocol,)))


def finalised_batch_sync(conn: sqlite3.Connection, *, after_id: int, protocol: str | None = None,
                         limit: int = 500) -> list[tuple[int, str, str, str]]:
    """``(id, protocol, path, sha256)`` of finalised recordings with id > ``after_id``, in id order."""
    where = "state = 'finalised' AND id > ?"
    params: list[object] = [after_id]
    if protocol:
        where += " AND protocol = ?"
        params.append(protocol)
    return [tuple(r) for r in conn.execute(
        f"SELECT id, protocol, path, sha256 FROM recordings WHERE {where} ORDER BY id LIMIT ?", (*params, limit))]


# -- encryption at rest (migration 0014; callproof/encryption/atrest.py) -----------------

def mark_encrypted_sync(conn: sqlite3.Connection, rec_id: int, *, age_path: str, ciphertext_sha256: str,
                        ciphertext_size: int, payload_sha256: str, key_ids: tuple[str, ...] | list[str],
                        store_path: str | None = None) -> None:
    """A finalised recording's file is now the age file at ``age_path`` (same sha256 twice: no-op);
    ``store_path``: the age file's place in the shared store, for a recording already there."""
    cur = conn.execute(
        "UPDATE recordings SET encryption = 'encrypted', encryption_error = NULL, age_path = ?,"
        " ciphertext_sha256 = ?, ciphertext_size = ?, payload_sha256 = ?, key_ids = ?,"
        " store_path = COALESCE(?, store_path)"
        " WHERE id = ? AND state = 'finalised' AND (encryption IS NULL OR encryption = 'pending'"
        "  OR (encryption = 'encrypted' AND payload_sha256 = ?))",
        (age_path, ciphertext_sha256.lower(), ciphertext_size, payload_sha256.lower(), ",".join(key_ids),
         store_path, rec_id, payload_sha256.lower()))
    if cur.rowcount == 0:
        _require_recording(conn, rec_id, "mark it encrypted")


def mark_rewrapped_sync(conn: sqlite3.Connection, rec_id: int, *, ciphertext_sha256: str, ciphertext_size: int,
                        key_ids: tuple[str, ...] | list[str]) -> None:
    """An encrypted recording's header now wraps its file key to ``key_ids`` (payload unchanged)."""
    cur = conn.execute(
        "UPDATE recordings SET ciphertext_sha256 = ?, ciphertext_size = ?, key_ids = ?"
        " WHERE id = ? AND encryption = 'encrypted'",
        (ciphertext_sha256.lower(), ciphertext_size, ",".join(key_ids), rec_id))
    if cur.rowcount == 0:
        _require_recording(conn, rec_id, "record its re-wrap")


def mark_encryption_pending_sync(conn: sqlite3.Connection, rec_id: int, reason: str) -> None:
    """The plaintext stays (encryption failed or no key fitted); ``reason`` says why."""
    cur = conn.execute(
        "UPDATE recordings SET encryption = 'pending', encryption_error = ?"
        " WHERE id = ? AND state = 'finalised' AND (encryption IS NULL OR encryption = 'pending')",
        (reason, rec_id))
    if cur.rowcount == 0:
        _require_recording(conn, rec_id, "mark its encryption pending")


def key_ids_of(row: dict) -> tuple[str, ...]:
    """The key ids of a recording row (empty when it is not encrypted)."""
    return tuple(k for k in (row.get("key_ids") or "").split(",") if k)


def recordings_with_key_sync(conn: sqlite3.Connection, key_id: str) -> list[dict]:
    """Encrypted recordings not deleted whose header is wrapped to ``key_id`` (id order)."""
    rows = fetch_all(conn.execute(
        "SELECT * FROM recordings WHERE encryption = 'encrypted' AND state <> 'deleted'"
        " AND (',' || key_ids || ',') LIKE ? ESCAPE '\\' ORDER BY id",
        ("%," + key_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ",%",)))
    return rows


def plaintext_batch_sync(conn: sqlite3.Connection, *, after_id: int, limit: int = 200) -> list[dict]:
    """Finalised recordings not yet encrypted (never, or pending), id > ``after_id``, in id order."""
    return fetch_all(conn.execute(
        "SELECT * FROM recordings WHERE state = 'finalised' AND (encryption IS NULL OR encryption = 'pending')"
        " AND id > ? ORDER BY id LIMIT ?", (after_id, limit)))


def encrypted_unfinished_sync(conn: sqlite3.Connection, *, after_id: int, limit: int = 200) -> list[dict]:
    """Encrypted recordings (any id > ``after_id``): the migration checks their plaintext is gone."""
    return fetch_all(conn.execute(
        "SELECT * FROM recordings WHERE state = 'finalised' AND encryption = 'encrypted' AND id > ?"
        " ORDER BY id LIMIT ?", (after_id, limit)))


def record_encrypted_sync(conn: sqlite3.Connection, rec_id: int, *, age_path: str, ciphertext_sha256: str,
                          ciphertext_size: int, payload_sha256: str, key_ids: tuple[str, ...] | list[str],
                          actor: str, at: str | datetime, details: dict, store_path: str | None = None) -> None:
    """:func:`mark_encrypted_sync` and its ``recording.encrypted`` audit entry in one transaction
    (the migration: the entry is what binds the payload of a recording signed before it was
    encrypted, so the row never says encrypted without it)."""
    from .audit import append_in_transaction_sync

    with immediate(conn):
        mark_encrypted_sync(conn, rec_id, age_path=age_path, ciphertext_sha256=ciphertext_sha256,
                            ciphertext_size=ciphertext_size, payload_sha256=payload_sha256, key_ids=key_ids,
                            store_path=store_path)
        row = get_sync(conn, rec_id)
        append_in_transaction_sync(conn, "recording.encrypted", actor, at, protocol=row["protocol"] if row else None,
                                   subject=f"recording:{rec_id}",
                                   details={**details, "payload_sha256": payload_sha256.lower(),
                                            "ciphertext_sha256": ciphertext_sha256.lower(), "key_ids": list(key_ids)})


#: What a journalled ``recording.finalise`` entry's facts hold besides the measurements
#: (callproof/callflow/recording_files.py ``journal_facts``).
_JOURNALLED_ENCRYPTION = ("encryption", "encryption_pending")


def measured(facts: dict) -> dict:
    """A journalled finalisation's measurements (what :func:`finalise_sync` takes)."""
    return {k: v for k, v in facts.items() if k not in _JOURNALLED_ENCRYPTION}


def apply_journalled_encryption_sync(conn: sqlite3.Connection, rec_id: int, facts: dict, now: str) -> bool:
    """Inside the replay's transaction, after :func:`finalise_sync`: what the call found of the
    recording's encryption (its age file's digests, or why it stays pending), with the audit
    entry a live finalisation writes.  True when the recording needs settling afterwards (its
    plaintext removed, or its encryption retried): see ``ReplayResult.to_settle``."""
    from .audit import append_in_transaction_sync

    enc, pending = facts.get("encryption"), facts.get("encryption_pending")
    row = get_sync(conn, rec_id)
    if row is None or row["state"] != "finalised" or not (enc or pending):
        return False  # an empty recording keeps what it has: no audio to protect or to prove
    if enc:
        key_ids = tuple(enc["key_ids"])
        mark_encrypted_sync(conn, rec_id, age_path=enc["age_path"], ciphertext_sha256=enc["ciphertext_sha256"],
                            ciphertext_size=int(enc["ciphertext_size"]), payload_sha256=enc["payload_sha256"],
                            key_ids=key_ids)
        details = {"sha256": row["sha256"], "payload_sha256": enc["payload_sha256"].lower(),
                   "ciphertext_sha256": enc["ciphertext_sha256"].lower(), "key_ids": list(key_ids),
                   "via": "journal"}
        append_in_transaction_sync(conn, "recording.encrypted", "callproof", now, protocol=row["protocol"],
                                   subject=f"recording:{rec_id}", details=details)
    else:
        mark_encryption_pending_sync(conn, rec_id, str(pending))
        append_in_transaction_sync(conn, "recording.encryption_pending", "callproof", now, protocol=row["protocol"],
                                   subject=f"recording:{rec_id}", details={"reason": str(pending), "via": "journal"})
    return True
