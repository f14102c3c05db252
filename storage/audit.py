"""Append-only, hash-chained audit log.

``hash = sha256(prev_hash + canonical_json(entry))`` where ``entry`` holds
id, at, actor, action, protocol, subject and details (the stored JSON text),
and canonical JSON is ``json.dumps(..., sort_keys=True, separators=(',', ':'),
ensure_ascii=False)`` encoded as UTF-8.  The first entry links to
:data:`GENESIS`.  Appends take BEGIN IMMEDIATE, so concurrent processes
extend one chain; on PostgreSQL, where writers on several nodes do not share one
write lock, an advisory transaction lock on the chain's head serialises them
(:meth:`storage.dialect.Dialect.lock_chain`) before the head is read.

Triggers refuse UPDATE/DELETE; ``verify_chain`` detects edits made after
dropping them.  Removing the newest entries is only detectable against an
externally kept head (see :meth:`AuditLog.head`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._sqlutil import fetch_all, immediate
from .dialect import dialect_of
from .timefmt import to_db_time

if TYPE_CHECKING:
    from .db import Database

GENESIS = "0" * 64
_FIELDS = ("id", "at", "actor", "action", "protocol", "subject", "details")


# One encoder, built once: json.dumps() with these options builds a new
# JSONEncoder per call (the sweeper encodes two documents per deletion).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """The chain hash of one entry (``entry`` keyed by the names in ``_FIELDS``)."""
    payload = canonical_json({k: entry[k] for k in _FIELDS})
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def append_sync(
    conn: sqlite3.Connection,
    action: str,
    actor: str,
    at: str | datetime,
    protocol: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    if not action or not actor:
        raise ValueError("audit entries need a non-empty action and actor")
    if details is not None and not isinstance(details, dict):
        raise TypeError(f"details must be a dict or None, not {type(details).__name__}")
    entry: dict[str, Any] = {
        "at": to_db_time(at),
        "actor": actor,
        "action": action,
        "protocol": protocol,
        "subject": subject,
        "details": None if details is None else canonical_json(details),
    }
    with immediate(conn):
        return _insert(conn, entry)


def append_in_transaction_sync(
    conn: sqlite3.Connection,
    action: str,
    actor: str,
    at: str | datetime,
    protocol: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    *,
    chain_locked: bool = False,
) -> int:
    """Like :func:`append_sync` for a caller that already holds a write
    transaction (BEGIN IMMEDIATE), so the entry commits or rolls back with
    the change it records (e.g. retention: state 'deleted' + its entry).
    ``chain_locked``: the transaction began with the chain's lock
    (``immediate(conn, chains=("audit_log",))``)."""
    if not conn.in_transaction:
        raise RuntimeError("append_in_transaction_sync needs an open write transaction")
    if not action or not actor:
        raise ValueError("audit entries need a non-empty action and actor")
    if details is not None and not isinstance(details, dict):
        raise TypeError(f"details must be a dict or None, not {type(details).__name__}")
    return _insert(conn, {
        "at": to_db_time(at), "actor": actor, "action": action, "protocol": protocol,
        "subject": subject, "details": None if details is None else canonical_json(details),
    }, chain_locked)


def append_many_in_transaction_sync(
    conn: sqlite3.Connection, actor: str, at: str | datetime,
    items: list[tuple[str, str | None, str | None, dict[str, Any] | None]],
) -> None:
    """Append ``(action, protocol, subject, details)`` entries in order, inside the
    caller's write transaction: one head lookup and one executemany for a batch
    (the retention sweeper writes one entry per deleted recording)."""
    if not conn.in_transaction:
        raise RuntimeError("append_many_in_transaction_sync needs an open write transaction")
    if not actor or any(not action for action, *_ in items):
        raise ValueError("audit entries need a non-empty action and actor")
    at = to_db_time(at)
    dialect_of(conn).lock_chain(conn, "audit_log")
    head = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    next_id, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    rows = []
    for action, protocol, subject, details in items:
        entry = {"id": next_id, "at": at, "actor": actor, "action": action, "protocol": protocol,
                 "subject": subject, "details": None if details is None else canonical_json(details)}
        h = entry_hash(prev_hash, entry)
        rows.append((*(entry[k] for k in _FIELDS), prev_hash, h))
        next_id, prev_hash = next_id + 1, h
    conn.executemany(
        "INSERT INTO audit_log (id, at, actor, action, protocol, subject, details,"
        " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _insert(conn: sqlite3.Connection, entry: dict[str, Any], chain_locked: bool = False) -> int:
    if not chain_locked:
        dialect_of(conn).lock_chain(conn, "audit_log")
    head = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    entry["id"], prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    conn.execute(
        "INSERT INTO audit_log (id, at, actor, action, protocol, subject, details,"
        " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*(entry[k] for k in _FIELDS), prev_hash, entry_hash(prev_hash, entry)),
    )
    return entry["id"]


def verify_chain_sync(conn: sqlite3.Connection) -> int | None:
    """Id of the first entry whose link or hash is wrong, or None if intact."""
    expected_prev = GENESIS
    cur = conn.execute(f"SELECT {', '.join(_FIELDS)}, prev_hash, hash FROM audit_log ORDER BY id")
    for row in cur:
        entry = dict(zip(_FIELDS, row, strict=False))  # the row ends with prev_hash, hash
        prev_hash, stored = row[-2], row[-1]
        if prev_hash != expected_prev or entry_hash(prev_hash, entry) != stored:
            return entry["id"]
        expected_prev = stored
    return None


def head_sync(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else (row[0], row[1])


def count_sync(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]


def hash_of_sync(conn: sqlite3.Connection, entry_id: int) -> str | None:
    row = conn.execute("SELECT hash FROM audit_log WHERE id = ?", (entry_id,)).fetchone()
    return None if row is None else row[0]


def hashes_upto_sync(conn: sqlite3.Connection, last_id: int) -> list[tuple[int, str]]:
    """``(id, hash)`` of every entry up to ``last_id``, in id order (a checkpoint's Merkle tree)."""
    return [(r[0], r[1]) for r in conn.execute("SELECT id, hash FROM audit_log WHERE id <= ? ORDER BY id",
                                               (last_id,))]


def for_protocol_sync(conn: sqlite3.Connection, protocol: str) -> list[dict[str, Any]]:
    """Every entry of a protocol with its chain fields, oldest first (evidence packages)."""
    return fetch_all(conn.execute(
        f"SELECT {', '.join(_FIELDS)}, prev_hash, hash FROM audit_log WHERE protocol = ? ORDER BY id", (protocol,)))


def range_sync(conn: sqlite3.Connection, first_id: int, last_id: int) -> list[dict[str, Any]]:
    """Entries ``first_id..last_id`` with their chain fields (a chain proof), in id order."""
    return fetch_all(conn.execute(
        f"SELECT {', '.join(_FIELDS)}, prev_hash, hash FROM audit_log WHERE id BETWEEN ? AND ? ORDER BY id",
        (first_id, last_id)))


class AuditLog:
    """Async repository (``db.audit``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        action: str,
        actor: str,
        protocol: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
        at: str | datetime | None = None,
    ) -> int:
        """Append one entry (``at`` defaults to the database clock); returns its id."""
        return await self._db.run_in_connection(
            append_sync, action, actor, self._db.now() if at is None else at,
            protocol, subject, details,
        )

    async def verify_chain(self) -> int | None:
        return await self._db.run_in_connection(verify_chain_sync)

    async def head(self) -> tuple[int, str] | None:
        """(id, hash) of the newest entry: publish it elsewhere to make
        truncation of the log detectable."""
        return await self._db.run_in_connection(head_sync)


AUDIT_PAGE = 200


def page_sync(conn: sqlite3.Connection, *, before_id: int | None = None, action: str | None = None,
              protocol: str | None = None, limit: int = AUDIT_PAGE) -> list[dict[str, Any]]:
    """Newest entries first, ``limit`` at a time (``before_id`` pages back)."""
    where: list[str] = []
    params: list[Any] = []
    for cond, value in (("id < ?", before_id), ("action = ?", action or None), ("protocol = ?", protocol)):
        if value is not None:
            where.append(cond)
            params.append(value)
    sql = "SELECT id, at, actor, action, protocol, subject, details FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return fetch_all(conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)))


def for_subject_sync(conn: sqlite3.Connection, subject: str) -> list[dict[str, Any]]:
    """Every entry about ``subject`` (e.g. ``request:12``), oldest first."""
    return fetch_all(conn.execute(
        "SELECT id, at, actor, action, details FROM audit_log WHERE subject = ? ORDER BY id", (subject,)))
