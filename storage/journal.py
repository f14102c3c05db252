"""The journal: what a call flow could not write to the database, kept until it can.

When storage does not answer within ``[storage] call_wait_seconds`` (locked by another
process, read-only, disk full), the call goes on (callproof/callflow/call_store.py) and each
write it could not make is appended here instead: one JSON line per write, fsynced, in a file
of mode 0600 (``[storage] journal``, by default next to the database; put it on another file
system if the database's may fill up).  It holds only what the rows would hold.

:func:`replay_sync` applies the entries in order once the database is writable again -- by the
running process in the background and by the next process at start-up -- and deletes the file
when all of them are in.  Replay is idempotent: a call created already is not created again, a
status the row has already passed is skipped, the same values written twice are the same row,
so a crash half-way through a replay is repaired by replaying again.

Several processes may append to one journal (the ARI app, FastAGI, classic AGI scripts): an
append holds an exclusive ``flock`` on the file; a replay takes the lock, renames the file to
``<journal>.replaying-<pid>-<n>`` and releases it, so appends go on into a fresh file while the
renamed one is applied.  A renamed file left by a crash is replayed first next time.

When the journal itself cannot be written (its file system is full too), the entry is kept in
memory for the running process's own replay, and the error is logged by kind.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import calls as calls_table
from . import evidence as evidence_table
from . import recordings as recordings_table
from .call_status import IllegalTransitionError, when_ended
from .dialect import dialect_of
from .errors import (
    AlreadyExistsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
    StorageUnavailable,
    storage_problem,
)

log = logging.getLogger("callproof.storage.journal")

FILE_MODE = 0o600

#: The kinds of entries and what each holds (besides ``channel``).
OPS = ("call.create", "call.update", "call.identity", "call.ended", "recording.create", "recording.fail",
       "recording.finalise")

_counter = itertools.count(1)


@dataclass(frozen=True)
class ReplayResult:
    applied: int
    skipped: int           # already in the database (idempotent replay)
    channels: frozenset[str]
    #: recordings the replay finalised with encryption facts (encrypted, the plaintext still
    #: beside its age file, or encryption pending): the long-running process settles them
    #: (callproof/encryption/migration.py ``settle_recordings``)
    to_settle: frozenset[int] = frozenset()


class Journal:
    """The append side (thread-safe) and the bookkeeping of channels with entries not yet replayed."""

    def __init__(self, path: str | os.PathLike[str], mode: int = FILE_MODE,
                 sealer: evidence_table.Sealer | None = None):
        self.path = Path(path)
        #: signs the evidence record of each recording the replay finalises, like a live
        #: finalisation does (callproof/evidence/records.py ``sealer_for``); None: no record
        self.sealer = sealer
        self.mode = mode & 0o660 | 0o600  # never for others; the group's when the database is the group's
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._memory: list[dict[str, Any]] = []       # entries the file could not take
        self._pending: set[str] = set()               # channels with entries not yet replayed
        self._queued: list[dict[str, Any]] = []       # submitted, not written yet (submit())
        self._writing = False
        self._writer: threading.Thread | None = None

    def pending(self, channel: str) -> bool:
        """True while this process appended entries of ``channel`` that are not in the database yet."""
        return channel in self._pending

    @property
    def has_pending(self) -> bool:
        return (bool(self._pending) or bool(self._memory) or bool(self._queued) or self.path.exists()
                or any(self._replaying()))

    def append(self, channel: str, op: str, **data: Any) -> None:
        """Append one entry and wait until it is durable (fsynced), unless the journal's own
        disk refuses it (then it is kept in memory)."""
        self.submit(channel, op, **data)
        self.flush()

    def submit(self, channel: str, op: str, **data: Any) -> None:
        """Queue one entry for the journal's writer thread and return at once: a caller never
        waits on the journal's disk. Entries are written in the order submitted (a batch per
        write and fsync); :meth:`flush` waits until all are written."""
        if op not in OPS:
            raise ValueError(f"unknown journal entry {op!r}")
        entry = {"channel": channel, "op": op, **data}
        with self._cond:
            self._pending.add(channel)
            self._queued.append(entry)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, name="callproof-journal", daemon=True)
                self._writer.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted entry is written (or kept in memory); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queued and not self._writing, timeout)

    def _write_queued(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._queued), timeout=30):
                    self._writer = None  # idle: a later submit() starts another
                    return
                batch, self._queued = self._queued, []
                self._writing = True
            try:
                self._append_line(b"".join(
                    (json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n").encode() for e in batch))
            except OSError as exc:
                with self._cond:
                    self._memory.extend(batch)
                log.error("journal not writable (%s): %d entries kept in memory until replayed",
                          storage_problem(exc), len(batch))
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _append_line(self, line: bytes) -> None:
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _set_mode(fd, self.mode)
                try:  # a replay renamed the file while we waited for the lock: append to the new one
                    if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                        continue
                except FileNotFoundError:
                    continue
                os.write(fd, line)
                os.fsync(fd)
                return
            finally:
                os.close(fd)

    def _replaying(self) -> list[Path]:
        return sorted(self.path.parent.glob(self.path.name + ".replaying-*"))

    def take(self) -> tuple[list[Path], list[dict[str, Any]]]:
        """Move the current file aside (under its lock) for a replay; returns the files to
        replay, oldest first, and the in-memory entries."""
        self.flush()
        with self._lock:  # never held while waiting for the file's flock: submit() must not wait
            memory, self._memory = self._memory, []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self._replaying(), memory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            aside = self.path.with_name(f"{self.path.name}.replaying-{os.getpid()}-{next(_counter):06d}")
            with_lock_rename(self.path, aside, fd)
        finally:
            os.close(fd)
        return self._replaying(), memory

    def give_back(self, memory: list[dict[str, Any]]) -> None:
        """In-memory entries a failed replay could not apply: keep them, before newer ones."""
        with self._lock:
            self._memory = memory + self._memory

    def entries_for(self, channel: str) -> list[dict[str, Any]]:
        """The entries of ``channel`` not replayed yet, in order (files, then memory)."""
        self.flush()
        with self._lock:
            memory = list(self._memory)
        files = [*self._replaying(), *([self.path] if self.path.exists() else [])]
        out = [e for f in files for e in _read_quietly(f) if e.get("channel") == channel]
        return out + [e for e in memory if e.get("channel") == channel]

    def channels_waiting(self) -> set[str]:
        """Every channel with entries not replayed yet (this process's and the files')."""
        with self._lock:
            found = set(self._pending) | {e["channel"] for e in self._memory} | {e["channel"] for e in self._queued}
        for f in [*self._replaying(), *([self.path] if self.path.exists() else [])]:
            found.update(e.get("channel", "") for e in _read_quietly(f))
        return found

    def replayed(self, channels: Iterable[str]) -> None:
        with self._lock:
            if not self._memory:
                self._pending.difference_update(channels)


def _set_mode(fd: int, mode: int) -> None:
    """The journal's mode whatever the umask (the AGI scripts' user may share it through the group)."""
    try:
        if os.fstat(fd).st_mode & 0o777 != mode:
            os.fchmod(fd, mode)
    except PermissionError:  # another user's file: its owner set it
        pass


def mode_beside(database: str | os.PathLike[str]) -> int:
    """The journal's mode for a database: 0600, plus the group's rw when the database has it."""
    try:
        return os.stat(database).st_mode & 0o660 | 0o600
    except OSError:
        return FILE_MODE


def with_lock_rename(path: Path, aside: Path, fd: int) -> None:
    """Rename ``path`` while holding the flock taken on ``fd`` (appenders then start a new file)."""
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.rename(path, aside)
    except FileNotFoundError:
        pass


def _read_quietly(path: Path) -> list[dict[str, Any]]:
    try:
        return read_entries(path)
    except FileNotFoundError:  # replayed meanwhile
        return []


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of a journal file; a torn last line (crash during an append) is left out."""
    out = []
    for raw in path.read_bytes().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            log.warning("journal: an unreadable line (torn by a crash?) left out")
    return out


# --------------------------------------------------------------------------
# Replay (sync: runs on a connection of its own, in a thread or an AGI process)
# --------------------------------------------------------------------------

def _call_id(conn: sqlite3.Connection, channel: str) -> int | None:
    row = calls_table.get_by_channel_sync(conn, channel)
    return None if row is None else int(row["id"])


def _apply(conn: sqlite3.Connection, entry: dict[str, Any], now: str,
           sealer: evidence_table.Sealer | None = None, settle: set[int] | None = None) -> bool:
    """Apply one entry; False when the database already had it."""
    op, channel = entry["op"], entry["channel"]
    if op == "call.create":
        try:  # a refused duplicate leaves the transaction usable on both engines (create_sync)
            calls_table.create_sync(conn, calls_table.NewCall(**entry["call"]), now)
        except AlreadyExistsError:
            return False
        return True
    call_id = _call_id(conn, channel)
    if call_id is None:
        raise NotFoundError(f"journal: no call row for an entry {op!r} (its creation is missing)")
    if op == "call.update":
        try:
            calls_table.update_sync(conn, call_id, entry["changes"], now)
        except IllegalTransitionError:
            # the row is already past this status: apply the other columns, if any
            rest = {k: v for k, v in entry["changes"].items() if k != "status"}
            if not rest:
                return False
            calls_table.update_sync(conn, call_id, rest, now)
        return True
    if op == "call.identity":
        calls_table.set_identity_hashes_sync(conn, call_id, updated_at=now, **entry["hashes"])
        return True
    if op == "call.ended":  # the channel is gone: what that makes of the status the row has by now
        row = calls_table.get_sync(conn, call_id)
        assert row is not None
        changes: dict[str, Any] = {}
        status = when_ended(row["status"])
        if status != row["status"]:
            changes["status"] = status
        if row["ended_at"] is None:
            changes["ended_at"] = entry["ended_at"]
        if row["hangup_cause"] is None and entry.get("hangup_cause"):
            changes["hangup_cause"] = entry["hangup_cause"]
        if not changes:
            return False
        calls_table.update_sync(conn, call_id, changes, now)
        return True
    path = entry["path"]
    existing = recordings_table.get_by_path_sync(conn, path)
    if op == "recording.create":
        if existing is not None:
            return False
        r = entry["recording"]
        recordings_table.create_sync(conn, call_id, r["protocol"], path, r["caller_number"], r["started_at"],
                                     r["retention_until"], r["retention_class"], r.get("node"))
        return True
    if existing is None:
        raise NotFoundError("journal: a recording entry without its row")
    if existing["state"] != "recording":  # finalised or failed already (a replay repeated)
        return False
    try:
        if op == "recording.fail":
            recordings_table.fail_sync(conn, existing["id"], entry["error"], entry.get("state", "failed"))
        else:
            recordings_table.finalise_sync(conn, existing["id"], **recordings_table.measured(entry["facts"]))
    except InvalidStateError:
        return False
    if op == "recording.finalise":  # its evidence record and audit entry, as a live finalisation writes
        if recordings_table.apply_journalled_encryption_sync(conn, existing["id"], entry["facts"], now) \
                and settle is not None:
            settle.add(existing["id"])
        # sealed after the encryption facts: the record binds the age payload too, as a live one
        evidence_table.seal_finalised_in_transaction_sync(conn, existing["id"], sealer, now, journalled=True)
    return True


def apply_entries(conn: sqlite3.Connection, entries: list[dict[str, Any]], now: str,
                  sealer: evidence_table.Sealer | None = None, settle: set[int] | None = None) -> tuple[int, int]:
    """Apply ``entries`` in order, each in its own transaction; (applied, skipped).  The ids
    of recordings finalised with encryption facts are added to ``settle``."""
    applied = skipped = 0
    begin = dialect_of(conn).begin_write  # SQLite's BEGIN IMMEDIATE, PostgreSQL's writer lock
    for entry in entries:
        begin(conn)
        try:
            done = _apply(conn, entry, now, sealer, settle)
        except (NotFoundError, ValueError, TypeError, KeyError) as exc:  # this entry, not the database
            conn.execute("ROLLBACK")
            log.error("journal: entry %r left out: %s", entry.get("op"), type(exc).__name__)
            skipped += 1
            continue
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied, skipped = applied + done, skipped + (not done)
    return applied, skipped


def replay_sync(conn: sqlite3.Connection, journal: Journal, now: str) -> ReplayResult:
    """Apply every journal file (and this process's in-memory entries); a file is deleted
    once all its entries are in.  A storage error stops the replay (the rest stays for next time).
    One replay at a time over all processes (``<journal>.lock``); StorageUnavailable('locked')
    when another is under way."""
    if not journal.has_pending:
        return ReplayResult(0, 0, frozenset())
    lock = os.open(journal.path.with_name(journal.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   journal.mode)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageUnavailable("locked", "another process is replaying the journal") from None
        return _replay_locked(conn, journal, now)
    finally:
        os.close(lock)


def _replay_locked(conn: sqlite3.Connection, journal: Journal, now: str) -> ReplayResult:
    files, memory = journal.take()
    applied = skipped = 0
    channels: set[str] = set()
    settle: set[int] = set()
    try:
        for path in files:
            entries = read_entries(path)
            a, s = apply_entries(conn, entries, now, journal.sealer, settle)
            applied, skipped = applied + a, skipped + s
            channels.update(e["channel"] for e in entries)
            path.unlink(missing_ok=True)
        a, s = apply_entries(conn, memory, now, journal.sealer, settle)
        applied, skipped = applied + a, skipped + s
        channels.update(e["channel"] for e in memory)
        memory = []
    except (StorageError, sqlite3.Error):
        journal.give_back(memory)
        raise
    journal.replayed(channels)
    return ReplayResult(applied, skipped, frozenset(channels), frozenset(settle))


class ReplayConnection:
    """A connection of the replay's own (a worker thread's), opened when first needed and
    dropped after a storage error, so the next attempt starts clean."""

    def __init__(self, database: str | os.PathLike[str], busy_timeout_ms: int,
                 now: Callable[[], str] | None = None, password: str = ""):
        self.database, self.busy_timeout_ms = os.fspath(database), busy_timeout_ms
        self._now = now
        self._password = password  # a postgresql:// database's (never logged)
        self._conn: sqlite3.Connection | None = None

    def replay(self, journal: Journal) -> ReplayResult:
        from .db import connect_sync
        from .timefmt import to_db_time, utc_now

        try:
            if self._conn is None:
                self._conn = connect_sync(self.database, busy_timeout_ms=self.busy_timeout_ms,
                                          password=self._password)
            return replay_sync(self._conn, journal, self._now() if self._now else to_db_time(utc_now()))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
