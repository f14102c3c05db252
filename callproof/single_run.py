"""A command that must run once at a time (the retention sweep, ``callproof recording
encrypt``): an ``flock`` on a lock file that says who holds it.

The kernel releases the flock when its holder dies, so a stale lock (a SIGKILLed run) never
blocks the next one; the file only carries the holder's pid, host and start time, read back
into the refusal so an operator sees who is running.  The lock is per open file description:
a second take in the same process is refused like one from another process.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE_MODE = 0o600
_HOLDER_BYTES = 200


class AlreadyRunning(RuntimeError):
    """Another run holds the lock; the message names it and the lock file."""


@contextmanager
def single_run_lock(path: Path, what: str, error: type[AlreadyRunning] = AlreadyRunning) -> Iterator[None]:
    """Hold the lock at ``path`` for the block; ``error`` ("another {what} is running (holder);
    lock file path") when another run holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace").strip() or "unknown"
            raise error(f"another {what} is running ({holder}); lock file {path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
