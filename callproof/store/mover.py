"""The mover: a finalised recording's file from this node's root into the shared store.

Never on a caller's path: ``callproof run`` and ``callproof fastagi`` run :func:`periodic_move`
in a worker thread, and ``callproof recording move`` (cron, for classic AGI, or to catch up)
runs :func:`move_pending`.  Each recording, crash-safe at every step:

1. copy the local file (opened with O_NOFOLLOW, under the root) to a temporary name in its
   store folder (O_EXCL, mode 0640), hashing what it reads; fsync;
2. the copy's sha256 must be the row's (the age file's when encrypted): a file that is not
   what its row says is refused and audited (``recording.move_refused``), never moved;
   the copy is then read back from the store and hashed again (what the mount holds);
3. ``link`` the temporary file to its final name (never replacing one), unlink the
   temporary name, fsync the folder;
4. switch the row (``store_path``, ``moved_at``, a ``recording.moved`` audit entry, one
   transaction);
5. remove the local file, fsync its folder.

Killed between 1 and 3: a ``.part`` file is left in the store (removed by a later pass once
an hour old), the row is local, the next pass copies again.  Killed between 3 and 4: the
final file is in the store, the row local; the next pass finds it, checks its sha256 and
switches the row without copying.  Killed between 4 and 5: the row says store, the local
copy lingers; :func:`remove_leftovers` (each ``recording move`` and the first pass of a
process) removes it.  A store that is not mounted (its marker file missing), full or
unreachable leaves the file local and the row's ``move_error`` saying why; it is retried at
the next pass.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callproof.logs import event
from callproof.storage import recording_store as rs
from callproof.storage.timefmt import to_db_time

from . import node_name
from .layout import store_name

log = logging.getLogger("callproof.store")

#: the file that says the folder is the mounted store, not the empty mount point below it
MARKER = ".callproof-store"
FILE_MODE = 0o640
DIR_MODE = 0o750
PART_SUFFIX = ".part"
STALE_PART_SECONDS = 3600.0
_READ = 64 * 1024
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SRC = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class StoreUnavailable(Exception):
    """The store cannot take files now (not mounted, unreachable, full): retried later."""


class Mismatch(Exception):
    """The local file is not what its row says (sha256): refused, audited."""


@dataclass
class MoveSummary:
    moved: int = 0
    adopted: int = 0   # found complete in the store by a later pass (a crash after the link)
    failed: int = 0
    refused: int = 0
    skipped: int = 0   # switched meanwhile by another mover (or no longer finished)
    leftovers_removed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"moved": self.moved, "adopted": self.adopted, "failed": self.failed, "refused": self.refused,
                "skipped": self.skipped, "leftovers_removed": self.leftovers_removed}


@dataclass(frozen=True)
class Mover:
    conn: Any            # a sync connection (storage.connect_sync)
    root: Path           # [recording] root
    store: Path          # [recording] store
    node: str
    encrypted_only: bool = False
    clock: Any = None

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else datetime.now(UTC)

    # ---------------------------------------------------------------- a pass
    def run(self, *, limit: int = 500, summary: MoveSummary | None = None) -> MoveSummary:
        s = summary or MoveSummary()
        last = 0
        while s.moved + s.adopted + s.failed + s.refused < limit:
            rows = rs.to_move_sync(self.conn, self.node, after_id=last, encrypted_only=self.encrypted_only,
                                   limit=min(100, limit))
            if not rows:
                break
            for row in rows:
                last = row["id"]
                outcome = self.move(row)
                if outcome == "unavailable":  # the other rows would fail alike: the next pass tries again
                    s.failed += 1
                    s.errors.append(str(row.get("move_error")))
                    return s
                setattr(s, outcome, getattr(s, outcome) + 1)
        return s

    def move(self, row: dict) -> str:
        """'moved', 'adopted', 'failed', 'unavailable' (the store), 'refused' or 'skipped' for one row."""
        rec_id = row["id"]
        encrypted = row.get("encryption") == "encrypted"
        source = str(row["age_path"] if encrypted else row["path"])
        expected = str((row["ciphertext_sha256"] if encrypted else row["sha256"]) or "").lower()
        rel = store_name(row)
        if encrypted and os.path.lexists(str(row["path"])):
            # its plaintext not yet removed (a finalisation under way, a journal replay to settle,
            # an interrupted `recording encrypt`): the step that removes it needs the row local
            return "skipped"
        try:
            adopted = self._copy(source, rel, expected)
        except Mismatch as exc:
            rs.move_refused_sync(self.conn, rec_id, node=self.node, reason=str(exc.args[0]), expected=expected,
                                 found=exc.args[1] if len(exc.args) > 1 else "", at=self.now())
            event(log, "recording.move_refused", logging.ERROR, recording_id=rec_id, protocol=row.get("protocol"),
                  reason=str(exc.args[0]))
            return "refused"
        except (StoreUnavailable, OSError) as exc:
            reason = _why(exc)
            row["move_error"] = reason
            rs.move_failed_sync(self.conn, rec_id, reason)
            event(log, "recording.move_failed", logging.WARNING, recording_id=rec_id, protocol=row.get("protocol"),
                  reason=reason)
            return "unavailable" if isinstance(exc, StoreUnavailable) else "failed"
        size = os.stat(os.path.join(self.store, rel), follow_symlinks=False).st_size
        if not rs.mark_moved_sync(self.conn, rec_id, node=self.node, store_path=rel, sha256=expected,
                                  size_bytes=size, at=self.now()):
            return "skipped"  # another mover switched it (or it left 'finalised'): its local file is not ours to touch
        self._remove_local(source)
        event(log, "recording.moved", recording_id=rec_id, protocol=row.get("protocol"), store_path=rel,
              adopted=adopted)
        return "adopted" if adopted else "moved"

    # ------------------------------------------------------------ the copy
    def _store_dir(self, rel_dir: str) -> int:
        """A descriptor on the store folder ``rel_dir`` (made 0750 when missing), reached without
        following a symbolic link; StoreUnavailable when the store is not mounted."""
        try:
            fd = os.open(self.store, _DIR)
        except OSError as exc:
            raise StoreUnavailable(f"the store folder cannot be opened: {exc.strerror}") from None
        try:
            os.stat(MARKER, dir_fd=fd, follow_symlinks=False)
        except OSError:
            os.close(fd)
            raise StoreUnavailable(f"the store is not mounted here (no {MARKER} in it)") from None
        try:
            for part in rel_dir.split("/"):
                try:
                    os.mkdir(part, DIR_MODE, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _copy(self, source: str, rel: str, expected: str) -> bool:
        """Put ``source`` at ``rel`` in the store, verified; True when a complete copy was there already."""
        if not _inside(self.root, source):
            raise Mismatch("the row's file is not under the recordings root", "")
        rel_dir, name = rel.rsplit("/", 1)
        dfd = self._store_dir(rel_dir)
        try:
            _remove_stale_parts(dfd)
            try:
                found = _sha256_at(dfd, name)
            except FileNotFoundError:
                found = None
            if found is not None:  # a pass killed after the link, before the row's switch
                if found != expected:
                    raise Mismatch("a different file is in the store at the recording's place", found)
                return True
            part = f".{name}.{secrets.token_hex(6)}{PART_SUFFIX}"
            src = _open_source(source)
            try:
                if not stat.S_ISREG(os.fstat(src).st_mode):
                    raise Mismatch("the recording's file is not a regular file", "")
                copied = _copy_into(src, dfd, part)
            finally:
                os.close(src)
            try:
                if copied != expected:
                    raise Mismatch("the local file's sha256 is not the row's", copied)
                if _sha256_at(dfd, part) != expected:  # what the mount holds, read back
                    raise StoreUnavailable("the store's copy does not read back as written")
                try:
                    os.link(part, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                except FileExistsError:  # another mover of this node got there first
                    if _sha256_at(dfd, name) != expected:
                        raise Mismatch("a different file is in the store at the recording's place", "") from None
                    return True
            finally:
                try:
                    os.unlink(part, dir_fd=dfd)
                except FileNotFoundError:
                    pass
            os.fsync(dfd)
            return False
        finally:
            os.close(dfd)

    def _remove_local(self, source: str) -> None:
        try:
            folder, name = os.path.split(source)
            dfd = os.open(folder, _DIR)
        except OSError:
            return
        try:
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                return
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove_leftovers(self, *, since: timedelta = timedelta(days=2)) -> int:
        """Local copies of recordings already switched to the store (a pass killed after the
        switch, before the removal), moved within ``since``: removed."""
        n = 0
        for row in rs.moved_since_sync(self.conn, self.node, to_db_time(self.now() - since)):
            for local in {row["path"], row.get("age_path")} - {None}:
                if _inside(self.root, str(local)) and os.path.lexists(str(local)) \
                        and os.path.isfile(str(local)) and not os.path.islink(str(local)):
                    self._remove_local(str(local))
                    n += 1
        return n


# ------------------------------------------------------------------ helpers

def _inside(root: Path, path: str) -> bool:
    """``path`` is a normalised absolute path under ``root`` (as configured, or its real path)."""
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        return False
    return any(path.startswith(r + "/") for r in {os.path.normpath(root), os.path.realpath(root)})


def _open_source(source: str) -> int:
    try:
        return os.open(source, _SRC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Mismatch("the recording's file is a symbolic link", "") from None
        raise


def _copy_into(src: int, dfd: int, part: str) -> str:
    out = os.open(part, _NEW, FILE_MODE, dir_fd=dfd)
    digest = hashlib.sha256()
    try:
        os.fchmod(out, FILE_MODE)  # whatever the umask
        while chunk := os.read(src, _READ):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
        os.fsync(out)
    except BaseException:
        os.close(out)
        try:
            os.unlink(part, dir_fd=dfd)
        except FileNotFoundError:
            pass
        raise
    os.close(out)
    return digest.hexdigest()


def _sha256_at(dfd: int, name: str) -> str:
    fd = os.open(name, _SRC, dir_fd=dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a regular file"
        digest = hashlib.sha256()
        while chunk := os.read(fd, _READ):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _remove_stale_parts(dfd: int) -> None:
    """Temporary files a killed pass left in this folder, once an hour old (a live pass's is younger)."""
    now = time.time()
    for entry in os.scandir(dfd):
        if entry.name.startswith(".") and entry.name.endswith(PART_SUFFIX):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PART_SECONDS:
                    os.unlink(entry.name, dir_fd=dfd)
            except FileNotFoundError:
                pass


def _why(exc: BaseException) -> str:
    """Why a move failed, without a path (a recording's local name holds the caller's digits)."""
    if isinstance(exc, StoreUnavailable):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "the recording's local file is not there"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def mover_for(config: Any, conn: Any, clock: Any = None) -> Mover:
    store = config.recording.store
    if store is None:
        raise ValueError("[recording] store is not set")
    return Mover(conn, Path(config.recording.root), Path(store), node_name(config),
                 encrypted_only=bool(config.encryption.enabled), clock=clock)


def move_pending(config: Any, *, limit: int = 100000, leftovers: bool = True) -> MoveSummary:
    """One pass on its own connection (blocking: ``callproof recording move``, or a worker thread)."""
    from callproof.storage import connect_sync

    st = config.storage
    conn = connect_sync(st.target, busy_timeout_ms=st.busy_timeout_ms, password=st.password)
    try:
        mover = mover_for(config, conn)
        s = MoveSummary()
        if leftovers:
            s.leftovers_removed = mover.remove_leftovers()
        return mover.run(limit=limit, summary=s)
    finally:
        conn.close()


async def periodic_move(config: Any, observe: Any = None) -> None:
    """``[recording] store`` set: a pass every ``move_interval_seconds`` in a worker thread of
    ``callproof run`` / ``callproof fastagi`` (never on a call's path).  ``observe``: called
    with each pass's counts (``MoveSummary.as_dict()``), the process's metrics."""
    import asyncio

    first = True
    while True:
        try:
            s = await asyncio.to_thread(move_pending, config, limit=2000, leftovers=first)
            first = False
            if observe is not None:
                observe(s.as_dict())
            if s.moved or s.adopted or s.refused or s.leftovers_removed:
                event(log, "store.pass", **s.as_dict())
        except Exception as exc:  # storage away, say: the next pass retries
            event(log, "store.pass_failed", logging.ERROR, error=_why(exc))  # no path: it may hold the caller's digits
        await asyncio.sleep(config.recording.move_interval_seconds)
