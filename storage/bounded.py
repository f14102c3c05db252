"""A storage step with a deadline: done in time or not at all (see :meth:`Database.run_within`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .dialect import dialect_of
from .errors import StorageUnavailable, storage_problem
from .pg_watchdog import OVERRUN_SECONDS, WATCHDOG

T = TypeVar("T")

#: What counts as "storage unavailable" for a call's step (anything else is a bug, raised as is).
UNAVAILABLE = frozenset({"locked", "read_only", "disk_full", "io_error", "timeout"})


def within(conn: sqlite3.Connection, deadline: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, ...)`` if it can finish by ``deadline`` (``time.monotonic()``): not started at
    all once the deadline has passed (it waited behind other work), and SQLite's busy wait cut
    to the time left, so a write that could not get the lock in time has certainly not happened.
    A locked, read-only or full database raises :class:`StorageUnavailable` naming which.  On
    PostgreSQL a server that stops answering (a cut network) has the connection cut once the
    step overruns its deadline by :data:`storage.pg_watchdog.OVERRUN_SECONDS`: ``io_error``.

    Only for a connection whose every use goes through here (the busy timeout is left as set)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise StorageUnavailable("timeout", "the wait ran out before the database was free")
    cut = getattr(conn, "cut", None)  # PostgreSQL: a silent server must not stretch the step
    token = None
    if cut is not None:
        conn.deadline = deadline  # type: ignore[attr-defined]
        token = WATCHDOG.arm(deadline + OVERRUN_SECONDS, cut)
    try:
        # inside: on PostgreSQL this is a statement, the first to meet a connection the
        # server dropped (an outage), which must fail the step as storage trouble, not the call
        dialect_of(conn).set_lock_wait(conn, max(1, int(left * 1000)))
        return fn(conn, *args, **kwargs)
    except sqlite3.Error as exc:
        problem = storage_problem(exc)
        if problem in UNAVAILABLE:
            raise StorageUnavailable(problem, type(exc).__name__) from exc
        raise
    finally:
        if token is not None:
            WATCHDOG.disarm(token)
            conn.deadline = None  # type: ignore[attr-defined]


class QueuedStep:
    """A bounded step handed to a connection's thread, which may be busy with other calls'
    steps: the caller waits until the deadline, not behind the queue.  A step still queued at
    the deadline is abandoned (it will never start); one already started is waited for, since
    its own busy wait ends by the deadline (:func:`within`), and on PostgreSQL a silent server
    cannot keep it past the deadline plus :data:`storage.pg_watchdog.OVERRUN_SECONDS`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "queued"

    def start(self) -> bool:
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "started"
            return True

    def abandon(self) -> bool:
        """True when the step had not started: it never will."""
        with self._lock:
            if self._state == "started":
                return False
            self._state = "abandoned"
            return True


def within_unless_abandoned(conn: sqlite3.Connection, step: QueuedStep, deadline: float,
                            fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """:func:`within`, unless the caller gave up while the step waited in the queue."""
    if not step.start():
        raise StorageUnavailable("timeout", "the wait ran out while queued behind other steps")
    return within(conn, deadline, fn, *args, **kwargs)
