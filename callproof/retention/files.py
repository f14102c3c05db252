"""The file-system side of the sweeper: the one-sweeper-at-a-time lock, and
:class:`SafeTree`, which reaches files under a root only through directory
fds opened with O_NOFOLLOW (never a symlink, never outside the root).

Only one sweeper runs at a time: callproof/single_run.py's lock (an ``flock``
the kernel releases when the holder dies, so a SIGKILLed sweeper never blocks
the next run).
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import AbstractContextManager
from pathlib import Path

from callproof.single_run import AlreadyRunning, single_run_lock


class SweepLocked(AlreadyRunning):
    """Another sweeper holds the lock."""


class SweepLockLost(SweepLocked):
    """The database's sweep lock went with its session mid-sweep (PostgreSQL dropped the
    connection): the sweep stopped before its next batch rather than go on unguarded."""


class UnsafePath(Exception):
    """A path the sweeper refuses to touch (symlink, outside the root, not a file)."""


# --------------------------------------------------------------------------
# Lock
# --------------------------------------------------------------------------

def sweep_lock(path: Path) -> AbstractContextManager[None]:
    return single_run_lock(path, "retention sweep", SweepLocked)


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
