"""The retention sweeper: deletes expired recordings, anonymises old call
records, reports orphans and missing files.  Sync code (its own sqlite3
connection); ``callproof run`` runs it in a worker thread.

Crash safety, per batch of at most ``batch_size`` rows (memory stays flat):

1. **mark**   one transaction sets ``sweep_mark`` on expired, un-held rows;
2. **unlink** each marked file (never following a symlink, never outside the root);
3. **record** one transaction sets state 'deleted' and appends the audit
   entry of each deletion (the UPDATE is guarded, so an entry is written
   exactly once).

The unlinks of one batch run in a few worker threads (an unlink mostly waits
in the file system, not on the CPU) and overlap with recording the previous
batch, so at most two batches are marked and unrecorded at any moment.
A run killed anywhere leaves marked rows that are not 'deleted'; the next run
finishes them first (file still there: unlink; gone: record).  A hold placed
between mark and recovery wins if the file is still there.

Only one sweeper runs at a time: an ``flock`` on the lock file, which the
kernel releases when the holder dies, so a stale lock (a SIGKILLed sweeper)
never blocks the next run; the file only carries the holder's pid for the
message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callproof.storage._sqlutil import immediate
from callproof.storage.audit import append_in_transaction_sync, append_many_in_transaction_sync
from callproof.storage.holds import held_sql
from callproof.storage.retention import add_calendar_days
from callproof.storage.timefmt import to_db_time

ACTOR = "retention"
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron/systemd may simply try again later
UNLINK_THREADS = 4  # unlinks of one batch in flight at once (see Sweeper._expire)
_MIN_CHUNK = 2  # rows per chunk at least (small batches split too: the tests cover it)


class SweepLocked(RuntimeError):
    """Another sweeper holds the lock."""


class UnsafePath(Exception):
    """A path the sweeper refuses to touch (symlink, outside the root, not a file)."""


@dataclass
class SweepSummary:
    run_id: str = ""
    dry_run: bool = False
    expired: int = 0
    deleted: int = 0
    recovered: int = 0
    held: int = 0
    missing: int = 0
    errors: int = 0
    refused: int = 0
    bytes_freed: int = 0
    orphans: int = 0
    quarantined: int = 0
    symlinks: int = 0
    calls_anonymised: int = 0
    calls_held: int = 0
    exports_deleted: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:  # bounded: memory stays flat
            self.error_samples.append(text)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------
# Lock
# --------------------------------------------------------------------------

@contextmanager
def sweep_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise SweepLocked(
                f"another retention sweep is running ({holder}); lock file {path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


# --------------------------------------------------------------------------
# Files under the root, without following symlinks
# --------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SafeTree:
    """Unlink/stat files under ``root`` through directory fds opened with
    O_NOFOLLOW, so neither a symlinked folder nor a symlinked file is
    followed, and nothing outside the root can be reached."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._root_fd = os.open(self.root, _DIR_FLAGS)
        self._cache: tuple[tuple[str, ...], int] | None = None
        # fast path: the parent folder string of the last path, already
        # validated, and its fd (consecutive rows share a folder)
        self._last_dir: str | None = None

    def clone(self) -> SafeTree:
        """Another SafeTree on the same root (a dup of its fd), for another thread."""
        other = SafeTree.__new__(SafeTree)
        other.root = self.root
        other._root_fd = os.dup(self._root_fd)
        other._cache = None
        other._last_dir = None
        return other

    def close(self) -> None:
        self._drop_cache()
        os.close(self._root_fd)

    def _drop_cache(self) -> None:
        self._last_dir = None
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None

    def parts(self, path: str) -> tuple[str, ...]:
        if not path.startswith(self.root + "/") or os.path.normpath(path) != path or "\x00" in path:
            raise UnsafePath(f"outside the recordings root {self.root} or not normalised")
        parts = tuple(path[len(self.root) + 1:].split("/"))
        if any(p in ("", ".", "..") for p in parts):
            raise UnsafePath("path has empty, '.' or '..' components")
        return parts

    def _parent_fd(self, dirs: tuple[str, ...]) -> int:
        if self._cache is not None and self._cache[0] == dirs:
            return self._cache[1]
        self._drop_cache()
        fd = os.dup(self._root_fd)
        try:
            for name in dirs:
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath(f"{name!r} in the path is a symlink or not a folder") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._cache = (dirs, fd)
        return fd

    def _locate(self, path: str) -> tuple[int, str]:
        """(fd of the parent folder, file name).  A path in the same folder as the
        previous one only needs its last component checked: the folder part was
        validated (and opened without following symlinks) for the previous one."""
        folder, _, name = path.rpartition("/")
        if folder == self._last_dir and self._cache is not None:
            if name in ("", ".", "..") or "\x00" in name:
                raise UnsafePath("path has empty, '.' or '..' components")
            return self._cache[1], name
        parts = self.parts(path)
        fd = self._parent_fd(parts[:-1])
        self._last_dir = folder
        return fd, parts[-1]

    def lstat(self, path: str) -> os.stat_result:
        pfd, name = self._locate(path)
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)

    def unlink(self, path: str) -> int:
        """Remove a regular file; returns its size.  FileNotFoundError if gone."""
        pfd, name = self._locate(path)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath("is a symlink" if stat.S_ISLNK(st.st_mode) else "is not a regular file")
        os.unlink(name, dir_fd=pfd)
        return st.st_size


# --------------------------------------------------------------------------
# The sweeper
# --------------------------------------------------------------------------

Clock = Callable[[], datetime]
Report = Callable[[dict[str, Any]], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _no_report(item: dict[str, Any]) -> None:
    """The default report: nothing (the sweeper then skips building the items)."""


_REC_COLUMNS = ("r.id, r.protocol, r.path, r.sha256, r.size_bytes, r.state, r.retention_until,"
                " r.retention_class, r.started_at")


class Sweeper:
    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        root: Path,
        tz: Any,
        classes: dict[str, int] | None = None,
        call_record_days: int = 730,
        request_grace_days: int = 30,
        batch_size: int = 500,
        unlink_threads: int = UNLINK_THREADS,
        quarantine_dir: Path | None = None,
        now: Clock = _utc_now,
        report: Report | None = None,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        export_dir: Path | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.conn = conn
        self.root = Path(root)
        self.tz = tz
        self.classes = classes or {}
        self.call_record_days = call_record_days
        self.request_grace_days = request_grace_days
        self.batch_size = batch_size
        self.unlink_threads = unlink_threads
        self.quarantine_dir = quarantine_dir
        self.clock = now
        self.report = report or _no_report
        self.progress = progress or (lambda n: None)

    # -- helpers ------------------------------------------------------------

    def _params(self, now: datetime) -> dict[str, str]:
        return {"now": to_db_time(now),
                "grace_cutoff": to_db_time(now - timedelta(days=self.request_grace_days))}

    def count_expired(self) -> int:
        now = to_db_time(self.clock())
        return self.conn.execute(
            "SELECT count(*) FROM recordings WHERE retention_until IS NOT NULL"
            " AND retention_until <= ? AND state IN ('finalised', 'failed')", (now,)).fetchone()[0]

    # -- entry point --------------------------------------------------------

    def sweep(self, *, dry_run: bool = False, scan: bool = True) -> SweepSummary:
        now = self.clock()
        s = SweepSummary(run_id=f"{socket.gethostname()}:{os.getpid()}:{to_db_time(now)}",
                         dry_run=dry_run)
        if not self.root.is_dir():
            raise FileNotFoundError(f"recordings root {self.root} is not a folder")
        tree = SafeTree(self.root)
        try:
            if not dry_run:
                self._recover(tree, s)
            self._expire(tree, s, dry_run)
            if scan:
                self._scan_missing(tree, s, dry_run)
                self._scan_orphans(tree, s, dry_run)
            self._anonymise_calls(s, dry_run)
            self._expire_exports(s, dry_run)
        finally:
            tree.close()
        return s

    # -- recordings ---------------------------------------------------------

    def _held_expr(self) -> str:
        return held_sql("r.protocol", "c.caller_number", "r.started_at")

    def _recover(self, tree: SafeTree, s: SweepSummary) -> None:
        """Finish the work of a sweeper killed between mark and record."""
        last = 0
        while True:
            rows = self.conn.execute(
                f"SELECT {_REC_COLUMNS}, {self._held_expr()} AS held FROM recordings r"
                " JOIN calls c ON c.id = r.call_id WHERE r.sweep_mark IS NOT NULL"
                " AND r.state <> 'deleted' AND r.id > :last ORDER BY r.id LIMIT :n",
                {**self._params(self.clock()), "last": last, "n": self.batch_size}).fetchall()
            if not rows or self.stop.is_set():
                return
            last = rows[-1][0]
            self._unlink_and_record(tree, s, [self._row(r) for r in rows], recovering=True)

    @staticmethod
    def _row(r: tuple) -> dict[str, Any]:
        keys = ("id", "protocol", "path", "sha256", "size_bytes", "state", "retention_until",
                "retention_class", "started_at", "held")
        return dict(zip(keys, r))

    def _expire(self, tree: SafeTree, s: SweepSummary, dry_run: bool) -> None:
        """Batches go mark -> unlink -> record; the unlinks of batch k run in worker
        threads while this thread records batch k-1 and marks batch k+1 (SQLite and
        unlink both release the GIL).  So at most two marked batches are in flight;
        each is recorded only after all its own unlinks finished: crash safety is unchanged.

        A batch's unlinks are split into ``unlink_threads`` contiguous chunks (rows
        of one folder stay together): an unlink mostly waits in the file
        system, not on the CPU, so a few at once finish sooner than one after another.  Each worker
        thread has its own :class:`SafeTree` (same root fd, own folder fd cache)."""
        params = self._params(self.clock())
        workers = max(1, self.unlink_threads)
        local = threading.local()
        trees: list[SafeTree] = []
        trees_lock = threading.Lock()

        def unlink_chunk(chunk: list[dict]) -> list[tuple]:
            own = getattr(local, "tree", None)
            if own is None:
                own = local.tree = tree.clone()
                with trees_lock:
                    trees.append(own)
            return self._unlink_all(own, chunk, False)

        def submit(pool: ThreadPoolExecutor, todo: list[dict]) -> list[Future]:
            size = max(_MIN_CHUNK, -(-len(todo) // workers))
            return [pool.submit(unlink_chunk, todo[i:i + size]) for i in range(0, len(todo), size)]

        def outcomes(jobs: list[Future]) -> list[tuple]:
            return [o for job in jobs for o in job.result()]

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retention-unlink") as pool:
                self._expire_batches(s, dry_run, params, pool, submit, outcomes)
        finally:
            for own in trees:
                own.close()

    def _expire_batches(self, s: SweepSummary, dry_run: bool, params: dict[str, str],
                        pool: ThreadPoolExecutor, submit: Callable, outcomes: Callable) -> None:
        last = 0
        pending: tuple[list[Future], int] | None = None
        try:
            while True:
                rows = [self._row(r) for r in self.conn.execute(
                    f"SELECT {_REC_COLUMNS}, {self._held_expr()} AS held FROM recordings r"
                    " JOIN calls c ON c.id = r.call_id"
                    " WHERE r.retention_until IS NOT NULL AND r.retention_until <= :now"
                    " AND r.state IN ('finalised', 'failed') AND r.sweep_mark IS NULL"
                    " AND r.id > :last ORDER BY r.id LIMIT :n",
                    {**params, "last": last, "n": self.batch_size})]
                if not rows or self.stop.is_set():
                    return
                last = rows[-1]["id"]
                s.expired += len(rows)
                todo = []
                for row in rows:
                    if row["held"]:
                        s.held += 1
                        self.report({"action": "keep", "why": "held", **_public(row)})
                    elif dry_run:
                        self.report({"action": "would_delete", "why": _why(row), **_public(row)})
                    else:
                        todo.append(row)
                if dry_run:
                    self.progress(len(rows))
                    continue
                marked = self._mark(s, [r["id"] for r in todo], params)
                todo = [r for r in todo if r["id"] in marked]
                # rows a hold caught between the SELECT and the mark
                s.held += len(rows) - len(todo) - sum(1 for r in rows if r["held"])
                jobs = submit(pool, todo)
                if pending is not None:
                    self._record_outcomes(s, outcomes(pending[0]), False)
                    self.progress(pending[1])
                pending = (jobs, len(rows))
        finally:
            if pending is not None and not sys.exc_info()[0]:
                self._record_outcomes(s, outcomes(pending[0]), False)
                self.progress(pending[1])

    def _mark(self, s: SweepSummary, ids: list[int], params: dict[str, str]) -> set[int]:
        if not ids:
            return set()
        names = {f"i{n}": rid for n, rid in enumerate(ids)}
        marks = ",".join(f":{k}" for k in names)
        caller = "(SELECT caller_number FROM calls c WHERE c.id = r.call_id)"
        with immediate(self.conn):
            # The hold is checked again inside the write transaction: a hold
            # placed after our SELECT wins.
            return {r[0] for r in self.conn.execute(
                f"UPDATE recordings AS r SET sweep_mark = :run WHERE r.id IN ({marks})"
                " AND r.sweep_mark IS NULL AND r.state IN ('finalised', 'failed')"
                f" AND NOT {held_sql('r.protocol', caller, 'r.started_at')} RETURNING id",
                {**names, "run": s.run_id, "grace_cutoff": params["grace_cutoff"]})}

    def _unlink_and_record(self, tree: SafeTree, s: SweepSummary, rows: list[dict],
                           recovering: bool) -> None:
        self._record_outcomes(s, self._unlink_all(tree, rows, recovering), recovering)

    def _unlink_all(self, tree: SafeTree, rows: list[dict], recovering: bool) -> list[tuple]:
        """Filesystem half of a batch (no database access: may run in the worker thread)."""
        outcomes: list[tuple[dict, str, Any]] = []
        for row in rows:
            if recovering and row["held"]:
                try:
                    tree.lstat(row["path"])
                    outcomes.append((row, "unmark", "held since it was marked"))
                    continue
                except (FileNotFoundError, UnsafePath):
                    pass  # already gone: record the deletion we made
            try:
                size = tree.unlink(row["path"])
                outcomes.append((row, "deleted", size))
            except FileNotFoundError:
                outcomes.append((row, "deleted" if recovering else "missing", None))
            except UnsafePath as e:
                outcomes.append((row, "refused", str(e)))
            except OSError as e:
                outcomes.append((row, "error", f"{type(e).__name__}: {e.strerror or e}"))
        return outcomes

    def _record_outcomes(self, s: SweepSummary, outcomes: list[tuple], recovering: bool) -> None:
        if not outcomes:
            return
        at = self.clock()
        with immediate(self.conn):
            deleted = [(row, info) for row, outcome, info in outcomes if outcome == "deleted"]
            if deleted:
                self._record_deleted(s, deleted, at, recovering)
            for row, outcome, info in outcomes:
                if outcome != "deleted":
                    self._record(s, row, outcome, info, at, recovering)

    def _record_deleted(self, s: SweepSummary, deleted: list[tuple[dict, Any]], at: datetime,
                        recovering: bool) -> None:
        """State 'deleted' + one audit entry per row, batched.  Inside the write
        transaction the rows not yet 'deleted' cannot change under us, so each
        deletion is audited exactly once."""
        ids = [row["id"] for row, _ in deleted]
        # One guarded UPDATE for the batch; RETURNING gives the rows it changed
        # (ids are integers from our own SELECT, bound as parameters).
        todo = {r[0] for r in self.conn.execute(
            f"UPDATE recordings SET state = 'deleted' WHERE state <> 'deleted'"
            f" AND id IN ({','.join('?' * len(ids))}) RETURNING id", ids)}
        deleted = [(row, size) for row, size in deleted if row["id"] in todo]
        items = []
        run = s.run_id
        for row, size in deleted:
            why = _why(row)
            items.append(("recording.deleted", row["protocol"], f"recording:{row['id']}",
                          {"path": row["path"], "sha256": row["sha256"],
                           "policy": row["retention_class"], "retention_until": row["retention_until"],
                           "run": run, "reason": why, "size_bytes": size, "recovered": recovering}))
        append_many_in_transaction_sync(self.conn, ACTOR, at, items)
        s.deleted += len(deleted)
        s.recovered += len(deleted) if recovering else 0
        for row, size in deleted:
            s.bytes_freed += size or 0
        if self.report is not _no_report:
            for (row, _), item in zip(deleted, items):
                self.report({"action": "deleted", "why": item[3]["reason"], **_public(row)})

    def _record(self, s: SweepSummary, row: dict, outcome: str, info: Any, at: datetime,
                recovering: bool) -> None:
        conn = self.conn
        base = {"path": row["path"], "sha256": row["sha256"], "policy": row["retention_class"],
                "retention_until": row["retention_until"], "run": s.run_id}
        if outcome == "deleted":
            cur = conn.execute("UPDATE recordings SET state = 'deleted' WHERE id = ?"
                               " AND state <> 'deleted'", (row["id"],))
            if cur.rowcount:
                append_in_transaction_sync(
                    conn, "recording.deleted", ACTOR, at, protocol=row["protocol"],
                    subject=f"recording:{row['id']}",
                    details={**base, "reason": _why(row), "size_bytes": info,
                             "recovered": recovering})
                s.deleted += 1
                s.recovered += recovering
                s.bytes_freed += info or 0
                self.report({"action": "deleted", "why": _why(row), **_public(row)})
        elif outcome == "missing":
            cur = conn.execute("UPDATE recordings SET state = 'missing', sweep_mark = NULL,"
                               " error = 'file gone before its retention ended' WHERE id = ?"
                               " AND state <> 'deleted'", (row["id"],))
            if cur.rowcount:
                append_in_transaction_sync(conn, "recording.missing", ACTOR, at,
                                           protocol=row["protocol"], subject=f"recording:{row['id']}",
                                           details=base)
                s.missing += 1
                self.report({"action": "missing", **_public(row)})
        else:
            conn.execute("UPDATE recordings SET sweep_mark = NULL WHERE id = ?", (row["id"],))
            if outcome == "unmark":
                s.held += 1
                return
            action = "recording.delete_refused" if outcome == "refused" else "recording.delete_failed"
            append_in_transaction_sync(conn, action, ACTOR, at, protocol=row["protocol"],
                                       subject=f"recording:{row['id']}", details={**base, "error": info})
            if outcome == "refused":
                s.refused += 1
            s.error(f"recording {row['id']} {row['path']}: {info}")
            self.report({"action": outcome, "error": info, **_public(row)})

    def _scan_missing(self, tree: SafeTree, s: SweepSummary, dry_run: bool) -> None:
        """Live rows ('finalised') whose file is gone: flag 'missing', audited."""
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT id, protocol, path, sha256, retention_class, retention_until FROM recordings"
                " WHERE state = 'finalised' AND sweep_mark IS NULL AND id > ? ORDER BY id LIMIT ?",
                (last, self.batch_size)).fetchall()
            if not rows or self.stop.is_set():
                return
            last = rows[-1][0]
            gone = []
            for rid, protocol, path, sha, cls, until in rows:
                try:
                    tree.lstat(path)
                except FileNotFoundError:
                    gone.append((rid, protocol, path, sha, cls, until))
                except (UnsafePath, OSError):
                    continue  # reported by the sweep when it expires
            if not gone:
                continue
            for rid, protocol, path, *_ in gone:
                self.report({"action": "missing", "id": rid, "protocol": protocol, "path": path})
            if dry_run:
                s.missing += len(gone)
                continue
            at = self.clock()
            with immediate(self.conn):
                for rid, protocol, path, sha, cls, until in gone:
                    cur = self.conn.execute(
                        "UPDATE recordings SET state = 'missing', error = 'file not found by the"
                        " retention sweep' WHERE id = ? AND state = 'finalised'", (rid,))
                    if cur.rowcount:
                        append_in_transaction_sync(
                            self.conn, "recording.missing", ACTOR, at, protocol=protocol,
                            subject=f"recording:{rid}",
                            details={"path": path, "sha256": sha, "policy": cls,
                                     "retention_until": until, "run": s.run_id})
                        s.missing += 1

    def _scan_orphans(self, tree: SafeTree, s: SweepSummary, dry_run: bool) -> None:
        """Files under the root with no live row: reported (optionally moved to
        the quarantine folder), never deleted.  Symlinks are reported, not followed."""
        root = tree.root
        quarantine = os.path.realpath(self.quarantine_dir) if self.quarantine_dir else None
        lookup = self.conn.cursor()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            if self.stop.is_set():
                return
            if quarantine and (dirpath == quarantine or dirpath.startswith(quarantine + "/")):
                dirnames[:] = []
                continue
            for name in list(dirnames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    s.symlinks += 1
                    self.report({"action": "symlink", "path": full})
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    s.symlinks += 1
                    self.report({"action": "symlink", "path": full})
                    continue
                row = lookup.execute("SELECT state FROM recordings WHERE path = ?", (full,)).fetchone()
                if row is not None and row[0] != "deleted":
                    continue
                s.orphans += 1
                if quarantine and not dry_run and stat.S_ISREG(st.st_mode):
                    dest = os.path.join(quarantine, os.path.relpath(full, root))
                    try:
                        os.makedirs(os.path.dirname(dest), mode=0o750, exist_ok=True)
                        os.rename(full, dest)  # same file system expected (documented)
                    except OSError as e:
                        s.error(f"orphan {full}: cannot quarantine: {e}")
                        continue
                    with immediate(self.conn):
                        append_in_transaction_sync(
                            self.conn, "recording.orphan_quarantined", ACTOR, self.clock(),
                            subject=full, details={"to": dest, "size_bytes": st.st_size,
                                                   "run": s.run_id})
                    s.quarantined += 1
                    self.report({"action": "quarantined", "path": full, "to": dest})
                else:
                    self.report({"action": "orphan", "path": full, "size_bytes": st.st_size})

    # -- call records -------------------------------------------------------

    def _anonymise_calls(self, s: SweepSummary, dry_run: bool) -> None:
        """LGPD minimisation of call records older than call_record_days:
        caller number/name erased; protocol, times, statuses and counts stay."""
        now = self.clock()
        params = self._params(now)
        cutoff = to_db_time(add_calendar_days(now, -self.call_record_days, self.tz))
        held = held_sql("c.protocol", "c.caller_number", "c.started_at")
        last = 0
        while True:
            rows = self.conn.execute(
                f"SELECT c.id, c.protocol, {held} FROM calls c WHERE c.anonymised_at IS NULL"
                " AND c.ended_at IS NOT NULL AND c.started_at <= :cutoff AND c.id > :last"
                " ORDER BY c.id LIMIT :n",
                {**params, "cutoff": cutoff, "last": last, "n": self.batch_size}).fetchall()
            if not rows or self.stop.is_set():
                return
            last = rows[-1][0]
            todo = []
            for cid, protocol, is_held in rows:
                if is_held:
                    s.calls_held += 1
                else:
                    todo.append((cid, protocol))
                    self.report({"action": "would_anonymise" if dry_run else "anonymised",
                                 "call_id": cid, "protocol": protocol})
            if dry_run or not todo:
                if dry_run:
                    s.calls_anonymised += len(todo)
                continue
            at = self.clock()
            with immediate(self.conn):
                for cid, protocol in todo:
                    cur = self.conn.execute(
                        "UPDATE calls SET caller_number_raw = '', caller_number = NULL,"
                        " caller_name = NULL, anonymised_at = ?, updated_at = ?"
                        " WHERE id = ? AND anonymised_at IS NULL",
                        (to_db_time(at), to_db_time(at), cid))
                    if cur.rowcount:
                        self.conn.execute("UPDATE recordings SET caller_number = NULL"
                                          " WHERE call_id = ?", (cid,))
                        append_in_transaction_sync(
                            self.conn, "call.anonymised", ACTOR, at, protocol=protocol,
                            subject=f"call:{cid}",
                            details={"fields": ["caller_number_raw", "caller_number", "caller_name"],
                                     "policy_days": self.call_record_days, "run": s.run_id})
                        s.calls_anonymised += 1


    # -- exports made for customer requests -------------------------------------

    def _expire_exports(self, s: SweepSummary, dry_run: bool) -> None:
        """An export is a copy of a recording made for one request: it goes once
        that request has been closed for the grace period and no download link
        to it is still usable, or as soon as its recording was deleted.  Unlink
        first (never following a symlink, never outside ``export_dir``), then
        record ``deleted_at`` + audit in one transaction; a run killed between
        the two finds the file gone next time and records it then."""
        if self.export_dir is None or not self.export_dir.is_dir():
            return
        now = self.clock()
        params = {**self._params(now), "n": self.batch_size, "last": 0}
        tree = SafeTree(self.export_dir)
        try:
            while not self.stop.is_set():
                rows = self.conn.execute(
                    "SELECT e.id, e.path, q.protocol, e.request_id FROM request_exports e"
                    " JOIN recording_requests q ON q.id = e.request_id"
                    " LEFT JOIN recordings r ON r.protocol = q.protocol"
                    " WHERE e.deleted_at IS NULL AND e.id > :last AND ("
                    "  r.state = 'deleted' OR (q.closed_at IS NOT NULL AND q.closed_at <= :grace_cutoff"
                    "  AND NOT EXISTS (SELECT 1 FROM download_links l WHERE l.export_id = e.id"
                    "   AND l.revoked_at IS NULL AND l.expires_at > :now"
                    "   AND (l.max_downloads IS NULL OR l.download_count < l.max_downloads))))"
                    " ORDER BY e.id LIMIT :n", params).fetchall()
                if not rows:
                    return
                params["last"] = rows[-1][0]
                done = []
                for export_id, path, protocol, request_id in rows:
                    self.report({"action": "would_delete_export" if dry_run else "export_deleted",
                                 "export_id": export_id, "protocol": protocol})
                    if dry_run:
                        s.exports_deleted += 1
                        continue
                    try:
                        # exports are flat files in export_dir (callproof/rights/export.py)
                        folder, name = os.path.split(path)
                        if os.path.realpath(folder) != tree.root:
                            raise UnsafePath(f"not in rights.export_dir {self.export_dir}")
                        size = tree.unlink(f"{tree.root}/{name}")
                    except FileNotFoundError:
                        size = 0
                    except (UnsafePath, OSError) as exc:
                        s.error(f"export {export_id}: {exc}")
                        continue
                    done.append((export_id, protocol, request_id, size))
                if done:
                    at = self.clock()
                    with immediate(self.conn):
                        for export_id, protocol, request_id, size in done:
                            cur = self.conn.execute(
                                "UPDATE request_exports SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                                (to_db_time(at), export_id))
                            if cur.rowcount:
                                append_in_transaction_sync(
                                    self.conn, "export.deleted", ACTOR, at, protocol=protocol,
                                    subject=f"export:{export_id}",
                                    details={"request_id": request_id, "bytes": size, "run": s.run_id})
                                s.exports_deleted += 1
                                s.bytes_freed += size
        finally:
            tree.close()


def _why(row: dict) -> str:
    return f"retention {row['retention_class'] or 'unknown'} ended {row['retention_until']}"


def _public(row: dict) -> dict[str, Any]:
    return {"id": row["id"], "protocol": row["protocol"], "path": row["path"],
            "retention_until": row["retention_until"], "class": row["retention_class"]}


# --------------------------------------------------------------------------
# Glue for the CLI and ``callproof run``
# --------------------------------------------------------------------------

def lock_path(config: Any) -> Path:
    rt = config.retention
    if rt.lock_file is not None:
        return rt.lock_file
    db = Path(config.storage.database)
    return db.with_name(db.name + ".retention.lock")


def run_sweep(config: Any, *, dry_run: bool = False, scan: bool = True,
              report: Report | None = None, progress_total: Callable[[int], Any] | None = None,
              now: Clock = _utc_now, stop: threading.Event | None = None) -> SweepSummary:
    """Take the lock, open the database, sweep.  Raises SweepLocked."""
    from callproof.storage import connect_sync

    with sweep_lock(lock_path(config)):
        conn = connect_sync(config.storage.database, busy_timeout_ms=config.storage.busy_timeout_ms)
        try:
            sweeper = Sweeper(
                conn, root=config.recording.root, tz=config.general.tz,
                classes=dict(config.retention.classes),
                call_record_days=config.retention.call_record_days,
                request_grace_days=config.retention.request_grace_days,
                batch_size=config.retention.batch_size,
                quarantine_dir=config.retention.quarantine_dir, now=now, report=report, stop=stop,
                export_dir=config.rights.export_dir)
            if progress_total is not None:
                sweeper.progress = progress_total(sweeper.count_expired()) or sweeper.progress
            return sweeper.sweep(dry_run=dry_run, scan=scan)
        finally:
            conn.close()


def print_summary(s: SweepSummary, out=sys.stdout) -> None:
    verb = "would delete" if s.dry_run else "deleted"
    print(f"retention sweep{' (dry run)' if s.dry_run else ''}: {verb} {s.deleted if not s.dry_run else s.expired - s.held}"
          f" recording(s), {s.bytes_freed} bytes freed; held {s.held}; missing {s.missing};"
          f" errors {s.errors} (refused {s.refused}); orphans {s.orphans}"
          f" (quarantined {s.quarantined}); symlinks {s.symlinks};"
          f" recovered {s.recovered}; call records anonymised {s.calls_anonymised}"
          f" (held {s.calls_held}); request exports deleted {s.exports_deleted}", file=out)
    for line in s.error_samples:
        print(f"  error: {line}", file=out)


def json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


async def periodic_sweep(config: Any, *, first_delay: float = 60.0) -> None:
    """``[retention] sweep_in_run``: sweep every ``sweep_interval_seconds`` inside
    ``callproof run``, in a worker thread (own connection; the event loop never
    blocks).  Another sweeper (cron) holding the lock just means skip this turn.
    Cancelling stops the sweep at the next batch boundary (crash-safe anyway)."""
    import asyncio
    import logging

    from .logs import event

    log = logging.getLogger("callproof.retention")
    stop = threading.Event()
    delay = first_delay
    try:
        while True:
            await asyncio.sleep(delay)
            delay = config.retention.sweep_interval_seconds
            try:
                summary = await asyncio.to_thread(run_sweep, config, stop=stop)
            except SweepLocked as exc:
                event(log, "retention.sweep_skipped", reason=str(exc))
                continue
            except Exception as exc:  # keep the app running; the next turn retries
                event(log, "retention.sweep_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                continue
            event(log, "retention.swept", **{k: v for k, v in summary.as_dict().items()
                                             if k != "error_samples"})
    finally:
        stop.set()
