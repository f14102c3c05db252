"""The retention sweeper: deletes expired recordings, anonymises old call
records, reports orphans and missing files.  Sync code (its own database
connection, through :class:`callproof.storage.retention.RetentionStore`);
``callproof run`` runs it in a worker thread.

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

The scans (missing files, orphans) are :mod:`.scans`; call records and
request exports are :mod:`.records`.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

from callproof.storage.retention import ExpiredRecording, RetentionStore, SweepWrites, SyncConnection, retention_store
from callproof.storage.timefmt import to_db_time

from . import records, scans
from .files import SafeTree, SweepLockLost, UnsafePath
from .summary import SweepSummary

ACTOR = "retention"
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron/systemd may simply try again later
UNLINK_THREADS = 4  # unlinks of one batch in flight at once (see Sweeper._expire)
_MIN_CHUNK = 2  # rows per chunk at least (small batches split too: the tests cover it)

Clock = Callable[[], datetime]
Report = Callable[[dict[str, Any]], None]
Outcome = tuple[ExpiredRecording, Literal["deleted", "missing", "refused", "error", "unmark"],
                "int | str | None"]
"""(row, what happened to its file, size freed or the error text)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def no_report(item: dict[str, Any]) -> None:
    """The default report: nothing (the sweeper then skips building the items)."""


class Sweeper:
    actor = ACTOR  # who the sweeper's audit entries name

    def __init__(
        self,
        store: RetentionStore | SyncConnection,
        *,
        root: Path,
        tz: tzinfo,
        classes: dict[str, int] | None = None,
        call_record_days: int = 730,
        request_grace_days: int = 30,
        batch_size: int = 500,
        unlink_threads: int = UNLINK_THREADS,
        quarantine_dir: Path | None = None,
        now: Clock = utc_now,
        report: Report | None = None,
        progress: Callable[[int], Any] | None = None,
        stop: threading.Event | None = None,
        export_dir: Path | None = None,
        recordings_store: Path | None = None,
        node: str | None = None,
        guarded: bool = False,
    ) -> None:
        """``store``: the database (a connection from ``connect_sync`` is wrapped).
        ``recordings_store``: the shared store (``[recording] store``) whose files the rows that
        were moved there name; ``node``: this node (other nodes' local files are left to them).
        ``guarded``: the store holds the database's sweep lock (PostgreSQL), checked before each
        batch: lost (its session dropped), the sweep stops with :class:`SweepLockLost`."""
        self.guarded = guarded
        self.recordings_store = Path(recordings_store) if recordings_store is not None else None
        self.stop = stop or threading.Event()
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.store = retention_store(store)
        if node is not None:
            self.store.node = node  # type: ignore[attr-defined]
        self.root = Path(root)
        self.tz = tz
        self.classes = classes or {}
        self.call_record_days = call_record_days
        self.request_grace_days = request_grace_days
        self.batch_size = batch_size
        self.unlink_threads = unlink_threads
        self.quarantine_dir = quarantine_dir
        self.clock = now
        self.report = report or no_report
        self.progress = progress or (lambda n: None)

    # -- helpers ------------------------------------------------------------

    def grace_cutoff(self, now: datetime) -> datetime:
        """A customer request closed after this still holds its recording."""
        return now - timedelta(days=self.request_grace_days)

    def count_expired(self) -> int:
        return self.store.count_expired(self.clock())

    def check_lock(self) -> None:
        """Before a batch that deletes or rewrites rows: the sweep lock is still ours.  The
        storage connection reopens itself after PostgreSQL dropped it, without the session's
        lock: another node's sweep may have taken it since, so this one stops here.  What it
        had marked and not recorded is finished by the next sweep's recovery."""
        if self.guarded and self.store.sweep_lock_held() is False:
            raise SweepLockLost("the database's sweep lock was lost mid-sweep (the connection to PostgreSQL"
                                " dropped); stopped before the next batch, the next run finishes it")

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
                scans.scan_missing(self, tree, s, dry_run)
                scans.scan_orphans(self, tree, s, dry_run)
            records.anonymise_calls(self, s, dry_run)
            records.expire_exports(self, s, dry_run)
        finally:
            tree.close()
        return s

    # -- recordings ---------------------------------------------------------

    def _recover(self, tree: SafeTree, s: SweepSummary) -> None:
        """Finish the work of a sweeper killed between mark and record."""
        last = 0
        while True:
            self.check_lock()
            rows = self.store.marked(last, self.batch_size, self.grace_cutoff(self.clock()))
            if not rows or self.stop.is_set():
                return
            last = rows[-1].id
            self._record_outcomes(s, self._unlink_all(tree, rows, True), True)

    def _expire(self, tree: SafeTree, s: SweepSummary, dry_run: bool) -> None:
        """Batches go mark -> unlink -> record; the unlinks of batch k run in worker
        threads while this thread records batch k-1 and marks batch k+1 (SQLite and
        unlink both release the GIL).  So at most two marked batches are in flight;
        each is recorded only after all its own unlinks finished: crash safety is unchanged.

        A batch's unlinks are split into ``unlink_threads`` contiguous chunks (rows
        of one folder stay together): an unlink mostly waits in the file
        system, not on the CPU, so a few at once finish sooner than one after another.  Each worker
        thread has its own :class:`SafeTree` (same root fd, own folder fd cache)."""
        now = self.clock()
        workers = max(1, self.unlink_threads)
        local = threading.local()
        trees: list[SafeTree] = []
        trees_lock = threading.Lock()

        def unlink_chunk(chunk: list[ExpiredRecording]) -> list[Outcome]:
            own = getattr(local, "tree", None)
            if own is None:
                own = local.tree = tree.clone()
                with trees_lock:
                    trees.append(own)
            return self._unlink_all(own, chunk, False)

        def submit(pool: ThreadPoolExecutor, todo: list[ExpiredRecording]) -> list[Future[list[Outcome]]]:
            size = max(_MIN_CHUNK, -(-len(todo) // workers))
            return [pool.submit(unlink_chunk, todo[i:i + size]) for i in range(0, len(todo), size)]

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retention-unlink") as pool:
                self._expire_batches(s, dry_run, now, lambda todo: submit(pool, todo))
        finally:
            for own in trees:
                own.close()

    def _expire_batches(self, s: SweepSummary, dry_run: bool, now: datetime,
                        submit: Callable[[list[ExpiredRecording]], list[Future[list[Outcome]]]]) -> None:
        grace_cutoff = self.grace_cutoff(now)
        last = 0
        pending: tuple[list[Future[list[Outcome]]], int] | None = None

        def outcomes(jobs: list[Future[list[Outcome]]]) -> list[Outcome]:
            return [o for job in jobs for o in job.result()]

        try:
            while True:
                self.check_lock()
                rows = self.store.expired(last, self.batch_size, now, grace_cutoff)
                if not rows or self.stop.is_set():
                    return
                last = rows[-1].id
                s.expired += len(rows)
                todo = []
                for row in rows:
                    if row.held:
                        s.held += 1
                        self.report({"action": "keep", "why": "held", **_public(row)})
                    elif dry_run:
                        self.report({"action": "would_delete", "why": _why(row), **_public(row)})
                    else:
                        todo.append(row)
                if dry_run:
                    self.progress(len(rows))
                    continue
                marked = self.store.mark([r.id for r in todo], s.run_id, grace_cutoff)
                todo = [r for r in todo if r.id in marked]
                # rows a hold caught between the SELECT and the mark
                s.held += len(rows) - len(todo) - sum(1 for r in rows if r.held)
                jobs = submit(todo)
                if pending is not None:
                    self._record_outcomes(s, outcomes(pending[0]), False)
                    self.progress(pending[1])
                pending = (jobs, len(rows))
        finally:
            if pending is not None and not sys.exc_info()[0]:
                self._record_outcomes(s, outcomes(pending[0]), False)
                self.progress(pending[1])

    def _unlink_all(self, local: SafeTree, rows: list[ExpiredRecording], recovering: bool) -> list[Outcome]:
        """Filesystem half of a batch (no database access: may run in the worker thread).  A row
        moved to the shared store is deleted there (its own SafeTree on the store, this call's)."""
        outcomes: list[Outcome] = []
        shared: SafeTree | None = None
        try:
            for row in rows:
                if row.store_path:
                    if self.recordings_store is None:
                        outcomes.append((row, "error", "in the shared recordings store, which [recording] store"
                                         " does not name on this node"))
                        continue
                    if shared is None:
                        try:
                            shared = SafeTree(self.recordings_store)
                        except OSError as e:
                            outcomes.append((row, "error", f"the shared store cannot be opened: {e.strerror or e}"))
                            continue
                    outcomes.append(self._unlink_one(shared, row, os.path.join(shared.root, row.store_path),
                                                     recovering))
                else:
                    outcomes.append(self._unlink_one(local, row, row.path, recovering))
        finally:
            if shared is not None:
                shared.close()
        return outcomes

    def _unlink_one(self, tree: SafeTree, row: ExpiredRecording, path: str, recovering: bool) -> Outcome:
        if recovering and row.held:
            try:
                tree.lstat(path)
                return (row, "unmark", "held since it was marked")
            except (FileNotFoundError, UnsafePath):
                pass  # already gone: record the deletion we made
        try:
            return (row, "deleted", tree.unlink(path))
        except FileNotFoundError:
            return (row, "deleted" if recovering else "missing", None)
        except UnsafePath as e:
            return (row, "refused", str(e))
        except OSError as e:
            return (row, "error", f"{type(e).__name__}: {e.strerror or e}")

    def _record_outcomes(self, s: SweepSummary, outcomes: list[Outcome], recovering: bool) -> None:
        if not outcomes:
            return
        at = self.clock()
        with self.store.write() as tx:
            deleted = [(row, info) for row, outcome, info in outcomes if outcome == "deleted"]
            if deleted:
                self._record_deleted(tx, s, deleted, at, recovering)
            for row, outcome, info in outcomes:
                if outcome != "deleted":
                    self._record(tx, s, row, outcome, info, at)

    def _record_deleted(self, tx: SweepWrites, s: SweepSummary,
                        deleted: list[tuple[ExpiredRecording, int | str | None]], at: datetime,
                        recovering: bool) -> None:
        """State 'deleted' + one audit entry per row, batched.  Inside the write
        transaction the rows not yet 'deleted' cannot change under us, so each
        deletion is audited exactly once."""
        todo = tx.set_deleted([row.id for row, _ in deleted])
        done = [(row, size) for row, size in deleted if row.id in todo]
        items = []
        run = s.run_id
        for row, size in done:
            items.append(("recording.deleted", row.protocol, f"recording:{row.id}",
                          {"path": row.path, "sha256": row.sha256, **({"store_path": row.store_path}
                                                                       if row.store_path else {}),
                           "policy": row.retention_class, "retention_until": row.retention_until,
                           "run": run, "reason": _why(row), "size_bytes": size, "recovered": recovering}))
        tx.audit_many(self.actor, at, items)
        s.deleted += len(done)
        s.recovered += len(done) if recovering else 0
        for _, size in done:
            s.bytes_freed += size if isinstance(size, int) else 0
        if self.report is not no_report:
            for (row, _), item in zip(done, items, strict=True):
                self.report({"action": "deleted", "why": item[3]["reason"], **_public(row)})

    def _record(self, tx: SweepWrites, s: SweepSummary, row: ExpiredRecording, outcome: str,
                info: int | str | None, at: datetime) -> None:
        """A marked row whose file was not deleted: missing, held again, refused or failed."""
        base = {"path": row.path, "sha256": row.sha256, "policy": row.retention_class,
                "retention_until": row.retention_until, "run": s.run_id}
        if outcome == "missing":
            if tx.set_gone_before_expiry(row.id):
                tx.audit("recording.missing", self.actor, at, protocol=row.protocol,
                         subject=f"recording:{row.id}", details=base)
                s.missing += 1
                self.report({"action": "missing", **_public(row)})
            return
        tx.unmark(row.id)
        if outcome == "unmark":
            s.held += 1
            return
        action = "recording.delete_refused" if outcome == "refused" else "recording.delete_failed"
        tx.audit(action, self.actor, at, protocol=row.protocol, subject=f"recording:{row.id}",
                 details={**base, "error": info})
        if outcome == "refused":
            s.refused += 1
        s.error(f"recording {row.id} {row.path}: {info}")
        self.report({"action": outcome, "error": info, **_public(row)})


def _why(row: ExpiredRecording) -> str:
    return f"retention {row.retention_class or 'unknown'} ended {row.retention_until}"


def _public(row: ExpiredRecording) -> dict[str, Any]:
    return {"id": row.id, "protocol": row.protocol, "path": row.path,
            "retention_until": row.retention_until, "class": row.retention_class}
