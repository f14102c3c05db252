"""Where a recording's file lives (migration 0018): on the node that recorded it, or in the
shared recordings store once its node's mover has copied it there.

The mover (callproof/store/mover.py) asks for the rows of its node still local
(:func:`to_move_sync`), copies each file into the store, and then switches the row with
:func:`mark_moved_sync`: one guarded UPDATE and its ``recording.moved`` audit entry in one
transaction, so a row says "in the store" only once the store's copy was verified, and
exactly one mover can switch it.  A failed attempt leaves the row local and says why
(:func:`move_failed_sync`); a copy whose sha256 differs from the row's is refused and
audited (:func:`move_refused_sync`).

The retention sweep of several nodes takes one session-level lock on PostgreSQL
(:func:`try_sweep_lock`): two nodes whose daily timers fire at once never both sweep the
store.  SQLite (one host) has no such lock here: the sweep's ``flock`` does that.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from ._sqlutil import fetch_all, immediate
from .audit import append_in_transaction_sync
from .dialect import dialect_of
from .timefmt import to_db_time

#: ``pg_advisory_lock`` key of the retention sweep (an arbitrary constant, fixed forever).
SWEEP_LOCK = 0x63700003

_MOVABLE = "state IN ('finalised', 'empty') AND store_path IS NULL"


def set_node_sync(conn: sqlite3.Connection, rec_id: int, node: str) -> None:
    """The node that recorded ``rec_id`` (its file is under that node's root until moved)."""
    conn.execute("UPDATE recordings SET node = ? WHERE id = ? AND node IS NULL", (node, rec_id))


def to_move_sync(conn: sqlite3.Connection, node: str, *, after_id: int = 0, encrypted_only: bool = False,
                 limit: int = 100) -> list[dict]:
    """Finished recordings of ``node`` whose file is still local, id > ``after_id``, in id order.
    A recording whose encryption is pending waits (its plaintext is not to travel); with
    ``encrypted_only`` (``[encryption] enabled``) a plaintext never encrypted waits too."""
    where = f"{_MOVABLE} AND node = ? AND id > ? AND (encryption IS NULL OR encryption = 'encrypted')"
    if encrypted_only:
        where += " AND (state = 'empty' OR encryption = 'encrypted')"
    return fetch_all(conn.execute(f"SELECT * FROM recordings WHERE {where} ORDER BY id LIMIT ?",
                                  (node, after_id, limit)))


def count_local_sync(conn: sqlite3.Connection, node: str) -> int:
    """How many finished recordings of ``node`` still have their file only on it."""
    return int(conn.execute(f"SELECT count(*) FROM recordings WHERE {_MOVABLE} AND node = ?",
                            (node,)).fetchone()[0])


@dataclass(frozen=True)
class Backlog:
    """A node's finished recordings still only on it (``callproof doctor``)."""
    count: int
    oldest_finalised_at: str | None  # the oldest of them (stored time text), None when none
    errors: int                      # how many carry a move_error
    last_error: str | None           # the move_error of the most recent of those


def backlog_sync(conn: sqlite3.Connection, node: str) -> Backlog:
    row = conn.execute(
        f"SELECT count(*), min(coalesce(finalised_at, started_at)),"
        f" coalesce(sum(CASE WHEN move_error IS NOT NULL THEN 1 ELSE 0 END), 0)"
        f" FROM recordings WHERE {_MOVABLE} AND node = ?", (node,)).fetchone()
    last = conn.execute(f"SELECT move_error FROM recordings WHERE {_MOVABLE} AND node = ? AND move_error IS NOT NULL"
                        " ORDER BY id DESC LIMIT 1", (node,)).fetchone()
    return Backlog(int(row[0]), row[1], int(row[2]), last[0] if last else None)


def backlog_by_node_sync(conn: sqlite3.Connection) -> dict[str, tuple[int, int, str | None]]:
    """Per node: (finished recordings still local, how many of them carry a move_error, the
    oldest's finalised time as :func:`backlog_sync` takes it), for ``/metrics`` (every node
    that has some; a node with none is absent)."""
    return {str(node): (int(n), int(errors), oldest) for node, n, errors, oldest in conn.execute(
        f"SELECT node, count(*), coalesce(sum(CASE WHEN move_error IS NOT NULL THEN 1 ELSE 0 END), 0),"
        f" min(coalesce(finalised_at, started_at))"
        f" FROM recordings WHERE {_MOVABLE} AND node IS NOT NULL GROUP BY node").fetchall()}


def moved_since_sync(conn: sqlite3.Connection, node: str, since: str | datetime) -> list[dict]:
    """Recordings of ``node`` switched to the store at or after ``since`` (their local copies
    should be gone: the mover removes any a crash left)."""
    return fetch_all(conn.execute(
        "SELECT id, path, age_path, store_path FROM recordings WHERE node = ? AND store_path IS NOT NULL"
        " AND moved_at >= ? ORDER BY id", (node, to_db_time(since))))


def mark_moved_sync(conn: sqlite3.Connection, rec_id: int, *, node: str, store_path: str, sha256: str,
                    size_bytes: int, at: str | datetime, actor: str = "callproof") -> bool:
    """The row's file is now the store's ``store_path`` (verified: ``sha256``, ``size_bytes``);
    with its ``recording.moved`` audit entry.  False when the row was not local to ``node``
    any more (another mover, or the sweep, got there first): nothing written."""
    if not store_path or store_path.startswith("/"):
        raise ValueError("store_path must be relative to the store's root")
    with immediate(conn):
        row = conn.execute(
            f"UPDATE recordings SET store_path = ?, moved_at = ?, move_error = NULL"
            f" WHERE id = ? AND node = ? AND {_MOVABLE} RETURNING protocol",
            (store_path, to_db_time(at), rec_id, node)).fetchone()
        if row is None:
            return False
        append_in_transaction_sync(conn, "recording.moved", actor, at, protocol=row[0],
                                   subject=f"recording:{rec_id}",
                                   details={"node": node, "store_path": store_path, "sha256": sha256.lower(),
                                            "size_bytes": size_bytes})
    return True


def move_failed_sync(conn: sqlite3.Connection, rec_id: int, reason: str) -> None:
    """The move did not happen (the store unreachable, full...): the file stays local, retried later."""
    with immediate(conn):
        conn.execute(f"UPDATE recordings SET move_error = ? WHERE id = ? AND {_MOVABLE}", (reason, rec_id))


def move_refused_sync(conn: sqlite3.Connection, rec_id: int, *, node: str, reason: str, expected: str,
                      found: str, at: str | datetime, actor: str = "callproof") -> None:
    """The local file does not match its row (its sha256): not moved, and audited (``recording.move_refused``)."""
    with immediate(conn):
        row = conn.execute(f"UPDATE recordings SET move_error = ? WHERE id = ? AND {_MOVABLE} RETURNING protocol",
                           (reason, rec_id)).fetchone()
        append_in_transaction_sync(conn, "recording.move_refused", actor, at, protocol=row[0] if row else None,
                                   subject=f"recording:{rec_id}",
                                   details={"node": node, "reason": reason, "expected_sha256": expected,
                                            "found_sha256": found})


def try_sweep_lock(conn: sqlite3.Connection) -> bool | None:
    """Take the retention sweep's database lock for this connection's session: True (taken),
    False (another session holds it), None (SQLite: no such lock; the ``flock`` serves)."""
    if dialect_of(conn).name != "postgresql":
        return None
    return bool(conn.execute(f"SELECT pg_try_advisory_lock({SWEEP_LOCK})").fetchone()[0])


def release_sweep_lock(conn: sqlite3.Connection) -> None:
    if dialect_of(conn).name == "postgresql":
        conn.execute(f"SELECT pg_advisory_unlock({SWEEP_LOCK})")


def sweep_lock_held_sync(conn: sqlite3.Connection) -> bool | None:
    """Whether this connection's session still holds the sweep lock: None on SQLite (no such
    lock).  False when the session that took it is gone: the connection reconnects by itself
    after the server dropped it (storage/pg.py), and the new session holds no lock -- nor does
    a connection that cannot reach the server at all."""
    if dialect_of(conn).name != "postgresql":
        return None
    try:
        row = conn.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
            " AND CAST(objid AS bigint) = ? LIMIT 1", (SWEEP_LOCK,)).fetchone()
    except sqlite3.OperationalError:  # the connection lost (and not reopened): so is its lock
        return False
    return row is not None


def sweep_lock_holder_sync(conn: sqlite3.Connection) -> str | None:
    """Who holds the sweep lock (``application_name`` / client address and pid), for the refusal."""
    if dialect_of(conn).name != "postgresql":
        return None
    row = conn.execute(
        "SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND CAST(l.objid AS bigint) = ? LIMIT 1",
        (SWEEP_LOCK,)).fetchone()
    return None if row is None else f"backend pid {row[0]} from {row[1] or 'local socket'}"
