"""The retention sweeper's reads and writes (the sweeper itself is
:mod:`callproof.retention`; the retention *policy*, which class and until
when, is :mod:`callproof.retention.policy`).

:class:`RetentionStore` is what the sweeper needs from a database, with typed
rows; :class:`SqliteRetentionStore` implements it on one sync SQLite
connection (the sweeper runs in its own thread or process).  Every write
goes through :meth:`RetentionStore.write`: one write transaction, in which
each state change and the audit entry that records it commit together.
Times are aware datetimes; the stored format is this module's business.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias, cast

from ._sqlutil import immediate
from .audit import append_in_transaction_sync, append_many_in_transaction_sync
from .holds import held_sql
from .timefmt import to_db_time

SyncConnection: TypeAlias = sqlite3.Connection
"""What :func:`callproof.storage.connect_sync` returns."""

AuditItem: TypeAlias = tuple[str, "str | None", "str | None", "dict[str, Any] | None"]
"""(action, protocol, subject, details) of one audit entry."""


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ExpiredRecording:
    """A recording whose retention ended (or one marked by an earlier run)."""
    id: int
    protocol: str
    path: str
    sha256: str | None
    size_bytes: int | None
    state: str
    retention_until: str | None
    retention_class: str | None
    started_at: str
    held: bool  # a legal hold or an open customer request keeps it
    store_path: str | None = None  # in the shared recordings store (migration 0018): its path there
    node: str | None = None        # the node that recorded it (whose root holds it until moved)


@dataclass(frozen=True, slots=True)
class LiveRecording:
    """A 'finalised' recording not marked for deletion (the missing-file scan)."""
    id: int
    protocol: str
    path: str
    sha256: str | None
    retention_class: str | None
    retention_until: str | None


@dataclass(frozen=True, slots=True)
class AgedCall:
    """An ended call old enough to be anonymised."""
    id: int
    protocol: str | None
    held: bool


@dataclass(frozen=True, slots=True)
class ExpiredExport:
    """A request's export whose time is up."""
    id: int
    path: str
    protocol: str
    request_id: int


# --------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------

class SweepWrites(Protocol):
    """The writes of one transaction (see :meth:`RetentionStore.write`)."""

    def set_deleted(self, ids: Sequence[int]) -> set[int]:
        """State 'deleted' for those not yet deleted; returns the ids changed."""

    def set_gone_before_expiry(self, recording_id: int) -> bool:
        """A marked recording's file was gone: 'missing', unmarked (unless deleted)."""

    def set_not_found(self, recording_id: int) -> bool:
        """A 'finalised' recording's file was not found by the scan: 'missing'."""

    def unmark(self, recording_id: int) -> None: ...

    def anonymise_call(self, call_id: int, at: datetime) -> bool:
        """Erase the caller's number and name from the call and its recordings."""

    def set_export_deleted(self, export_id: int, at: datetime) -> bool: ...

    def audit(self, action: str, actor: str, at: datetime, *, protocol: str | None = None,
              subject: str | None = None, details: dict[str, Any] | None = None) -> None: ...

    def audit_many(self, actor: str, at: datetime, items: Sequence[AuditItem]) -> None: ...


class RetentionStore(Protocol):
    """What the sweeper reads and writes.  Batches are keyset-paged: rows with
    an id above ``after``, in id order, at most ``limit``.  ``grace_cutoff``
    is now minus the grace period after a customer request closes (a request
    closed later still holds its recording)."""

    def count_expired(self, now: datetime) -> int: ...

    def marked(self, after: int, limit: int, grace_cutoff: datetime) -> list[ExpiredRecording]:
        """Recordings marked by a sweep but not recorded 'deleted' (a run killed midway)."""

    def expired(self, after: int, limit: int, now: datetime,
                grace_cutoff: datetime) -> list[ExpiredRecording]:
        """Unmarked 'finalised'/'empty'/'failed' recordings whose retention ended by ``now``."""

    def mark(self, ids: Sequence[int], run_id: str, grace_cutoff: datetime) -> set[int]:
        """Mark for deletion, in its own transaction, those still unmarked and not
        held (checked again inside the transaction); returns the ids marked."""

    def live(self, after: int, limit: int) -> list[LiveRecording]: ...

    def state_of_path(self, path: str) -> str | None:
        """The state of the recording stored at ``path``, None if there is none."""

    def aged_calls(self, after: int, limit: int, cutoff: datetime,
                   grace_cutoff: datetime) -> list[AgedCall]:
        """Ended, not yet anonymised calls started at or before ``cutoff``."""

    def expired_exports(self, after: int, limit: int, now: datetime,
                        grace_cutoff: datetime) -> list[ExpiredExport]:
        """Exports whose recording was deleted, or whose request closed before
        ``grace_cutoff`` with no download link still usable at ``now``."""

    def write(self) -> AbstractContextManager[SweepWrites]:
        """One write transaction: commits when the block ends, rolls back on an error."""

    def try_sweep_lock(self) -> tuple[bool | None, str | None]:
        """The database's one-sweep-at-a-time lock (see :class:`SqliteRetentionStore`)."""

    def release_sweep_lock(self) -> None: ...

    def sweep_lock_held(self) -> bool | None:
        """Whether the lock :meth:`try_sweep_lock` took is still this session's (None: SQLite)."""

    def close(self) -> None: ...


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------

# an encrypted recording's file is its .age file (migration 0014): that is what the sweeper removes
_REC_COLUMNS = ("r.id, r.protocol, COALESCE(r.age_path, r.path), r.sha256, r.size_bytes, r.state, r.retention_until,"
                " r.retention_class, r.started_at")
# the caller number of a recording's call, for the hold rule
_HELD_REC = held_sql("r.protocol", "c.caller_number", "r.started_at")
_HELD_REC_SUBQUERY = held_sql("r.protocol", "(SELECT caller_number FROM calls c WHERE c.id = r.call_id)",
                              "r.started_at")
_HELD_CALL = held_sql("c.protocol", "c.caller_number", "c.started_at")

# a node sweeps the shared store's recordings and its own local ones; another node's local
# files are its own to delete (migration 0018).  :node NULL: every row (one host, or a caller
# that names no node)
_MINE = ("(CAST(:node AS TEXT) IS NULL OR r.store_path IS NOT NULL OR r.node IS NULL"
         " OR r.node = CAST(:node AS TEXT))")
_SQL_MARKED = (
    f"SELECT {_REC_COLUMNS}, {_HELD_REC} AS held, r.store_path, r.node FROM recordings r"
    " JOIN calls c ON c.id = r.call_id WHERE r.sweep_mark IS NOT NULL"
    f" AND r.state <> 'deleted' AND {_MINE} AND r.id > :last ORDER BY r.id LIMIT :n")
_SQL_EXPIRED = (
    f"SELECT {_REC_COLUMNS}, {_HELD_REC} AS held, r.store_path, r.node FROM recordings r"
    " JOIN calls c ON c.id = r.call_id"
    " WHERE r.retention_until IS NOT NULL AND r.retention_until <= :now"
    " AND r.state IN ('finalised', 'empty', 'failed') AND r.sweep_mark IS NULL"
    f" AND {_MINE} AND r.id > :last ORDER BY r.id LIMIT :n")
_SQL_AGED_CALLS = (
    f"SELECT c.id, c.protocol, {_HELD_CALL} FROM calls c WHERE c.anonymised_at IS NULL"
    " AND c.ended_at IS NOT NULL AND c.started_at <= :cutoff AND c.id > :last"
    " ORDER BY c.id LIMIT :n")
_SQL_EXPIRED_EXPORTS = (
    "SELECT e.id, e.path, q.protocol, e.request_id FROM request_exports e"
    " JOIN recording_requests q ON q.id = e.request_id"
    " LEFT JOIN recordings r ON r.protocol = q.protocol"
    " WHERE e.deleted_at IS NULL AND e.id > :last AND ("
    "  r.state = 'deleted' OR (q.closed_at IS NOT NULL AND q.closed_at <= :grace_cutoff"
    "  AND NOT EXISTS (SELECT 1 FROM download_links l WHERE l.export_id = e.id"
    "   AND l.revoked_at IS NULL AND l.expires_at > :now"
    "   AND (l.max_downloads IS NULL OR l.download_count < l.max_downloads))))"
    " ORDER BY e.id LIMIT :n")


def _recording(r: tuple) -> ExpiredRecording:
    return ExpiredRecording(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11])


class _SqliteWrites:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def set_deleted(self, ids: Sequence[int]) -> set[int]:
        # one guarded UPDATE for the batch; RETURNING gives the rows it changed
        return {r[0] for r in self._conn.execute(
            "UPDATE recordings SET state = 'deleted' WHERE state <> 'deleted'"
            f" AND id IN ({','.join('?' * len(ids))}) RETURNING id", tuple(ids))}

    def set_gone_before_expiry(self, recording_id: int) -> bool:
        return self._conn.execute(
            "UPDATE recordings SET state = 'missing', sweep_mark = NULL,"
            " error = 'file gone before its retention ended' WHERE id = ?"
            " AND state <> 'deleted'", (recording_id,)).rowcount > 0

    def set_not_found(self, recording_id: int) -> bool:
        return self._conn.execute(
            "UPDATE recordings SET state = 'missing', error = 'file not found by the"
            " retention sweep' WHERE id = ? AND state IN ('finalised', 'empty')", (recording_id,)).rowcount > 0

    def unmark(self, recording_id: int) -> None:
        self._conn.execute("UPDATE recordings SET sweep_mark = NULL WHERE id = ?", (recording_id,))

    def anonymise_call(self, call_id: int, at: datetime) -> bool:
        t = to_db_time(at)
        if not self._conn.execute(
                "UPDATE calls SET caller_number_raw = '', caller_number = NULL,"
                " caller_name = NULL, anonymised_at = ?, updated_at = ?"
                " WHERE id = ? AND anonymised_at IS NULL", (t, t, call_id)).rowcount:
            return False
        self._conn.execute("UPDATE recordings SET caller_number = NULL WHERE call_id = ?", (call_id,))
        return True

    def set_export_deleted(self, export_id: int, at: datetime) -> bool:
        return self._conn.execute(
            "UPDATE request_exports SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
            (to_db_time(at), export_id)).rowcount > 0

    def audit(self, action: str, actor: str, at: datetime, *, protocol: str | None = None,
              subject: str | None = None, details: dict[str, Any] | None = None) -> None:
        append_in_transaction_sync(self._conn, action, actor, at, protocol=protocol,
                                   subject=subject, details=details)

    def audit_many(self, actor: str, at: datetime, items: Sequence[AuditItem]) -> None:
        append_many_in_transaction_sync(self._conn, actor, at, list(items))


class SqliteRetentionStore:
    """:class:`RetentionStore` on one sync SQLite connection (autocommit mode,
    as :func:`callproof.storage.connect_sync` opens it).  ``owned``: close
    the connection with the store."""

    def __init__(self, conn: sqlite3.Connection, *, owned: bool = False) -> None:
        self._conn = conn
        self._owned = owned
        self._lookup: sqlite3.Cursor | None = None
        #: this node's name: its sweep leaves other nodes' local files to them (None: every row)
        self.node: str | None = None

    def count_expired(self, now: datetime) -> int:
        return self._conn.execute(
            "SELECT count(*) FROM recordings WHERE retention_until IS NOT NULL"
            " AND retention_until <= ? AND state IN ('finalised', 'empty', 'failed')",
            (to_db_time(now),)).fetchone()[0]

    def marked(self, after: int, limit: int, grace_cutoff: datetime) -> list[ExpiredRecording]:
        return [_recording(r) for r in self._conn.execute(
            _SQL_MARKED, {"grace_cutoff": to_db_time(grace_cutoff), "last": after, "n": limit,
                          "node": self.node})]

    def expired(self, after: int, limit: int, now: datetime,
                grace_cutoff: datetime) -> list[ExpiredRecording]:
        return [_recording(r) for r in self._conn.execute(
            _SQL_EXPIRED, {"now": to_db_time(now), "grace_cutoff": to_db_time(grace_cutoff),
                           "last": after, "n": limit, "node": self.node})]

    def mark(self, ids: Sequence[int], run_id: str, grace_cutoff: datetime) -> set[int]:
        if not ids:
            return set()
        names = {f"i{n}": rid for n, rid in enumerate(ids)}
        marks = ",".join(f":{k}" for k in names)
        with immediate(self._conn):
            # the hold is checked again inside the write transaction: a hold
            # placed after the caller's SELECT wins
            return {r[0] for r in self._conn.execute(
                f"UPDATE recordings AS r SET sweep_mark = :run WHERE r.id IN ({marks})"
                " AND r.sweep_mark IS NULL AND r.state IN ('finalised', 'empty', 'failed')"
                f" AND NOT {_HELD_REC_SUBQUERY} RETURNING id",
                {**names, "run": run_id, "grace_cutoff": to_db_time(grace_cutoff)})}

    def live(self, after: int, limit: int) -> list[LiveRecording]:
        return [LiveRecording(*r) for r in self._conn.execute(
            "SELECT id, protocol, COALESCE(age_path, path), sha256, retention_class, retention_until"
            " FROM recordings r WHERE state IN ('finalised', 'empty') AND sweep_mark IS NULL AND id > :last"
            # the files under this node's root: not those in the store, nor other nodes' own
            f" AND store_path IS NULL AND {_MINE} ORDER BY id LIMIT :n",
            {"last": after, "n": limit, "node": self.node})]

    def state_of_path(self, path: str) -> str | None:
        if self._lookup is None:  # one cursor for the many lookups of a scan
            self._lookup = self._conn.cursor()
        row = self._lookup.execute("SELECT state FROM recordings WHERE path = ? OR age_path = ?",
                                   (path, path)).fetchone()
        return None if row is None else row[0]

    def aged_calls(self, after: int, limit: int, cutoff: datetime,
                   grace_cutoff: datetime) -> list[AgedCall]:
        return [AgedCall(cid, protocol, bool(held)) for cid, protocol, held in self._conn.execute(
            _SQL_AGED_CALLS, {"cutoff": to_db_time(cutoff), "grace_cutoff": to_db_time(grace_cutoff),
                              "last": after, "n": limit})]

    def expired_exports(self, after: int, limit: int, now: datetime,
                        grace_cutoff: datetime) -> list[ExpiredExport]:
        return [ExpiredExport(*r) for r in self._conn.execute(
            _SQL_EXPIRED_EXPORTS, {"now": to_db_time(now), "grace_cutoff": to_db_time(grace_cutoff),
                                   "last": after, "n": limit})]

    def try_sweep_lock(self) -> tuple[bool | None, str | None]:
        """The database's sweep lock (PostgreSQL: a session advisory lock, so one node sweeps at a
        time): (True, None) taken, (False, who holds it) refused, (None, None) SQLite (the flock serves)."""
        from .recording_store import sweep_lock_holder_sync, try_sweep_lock

        got = try_sweep_lock(self._conn)
        return got, (sweep_lock_holder_sync(self._conn) if got is False else None)

    def release_sweep_lock(self) -> None:
        from .recording_store import release_sweep_lock

        release_sweep_lock(self._conn)

    def sweep_lock_held(self) -> bool | None:
        from .recording_store import sweep_lock_held_sync

        return sweep_lock_held_sync(self._conn)

    @contextmanager
    def write(self) -> Iterator[_SqliteWrites]:
        with immediate(self._conn):
            yield _SqliteWrites(self._conn)

    def close(self) -> None:
        if self._lookup is not None:
            self._lookup.close()
            self._lookup = None
        if self._owned:
            self._conn.close()


def retention_store(conn: SyncConnection | RetentionStore) -> RetentionStore:
    """The store on a connection from :func:`connect_sync` (not closed with the
    store), or ``conn`` itself when it already is one."""
    if isinstance(conn, sqlite3.Connection):
        return SqliteRetentionStore(conn)
    if hasattr(conn, "dialect"):  # a storage.pg.PgConnection: the same SQL serves it
        return SqliteRetentionStore(cast("sqlite3.Connection", conn))
    return conn


def open_retention_store(path: str | os.PathLike[str], *, busy_timeout_ms: int,
                         password: str = "") -> RetentionStore:
    """Open the database (a file, or a ``postgresql://`` URL) for a sweep: a store that owns its connection."""
    from .db import connect_sync

    return SqliteRetentionStore(connect_sync(path, busy_timeout_ms=busy_timeout_ms, password=password), owned=True)
