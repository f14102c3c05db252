"""A bound on a call's storage step that the server's silence cannot stretch.

:func:`storage.bounded.within` bounds a step by its lock wait (``lock_timeout`` = the time
left), which holds while the server answers.  A server that stops answering with the
connection left open -- a network cut, a blocked port, a hung host or a middlebox that keeps
acknowledging while forwarding nothing -- leaves the statement waiting on the socket: libpq's
keepalives and ``tcp_user_timeout`` notice a peer whose packets are dropped only after 15-20 s,
and a peer whose kernel still acknowledges (the hung server, the stalled relay) never.  The
calls' connection thread would be stuck that long, every later step of every call queued
behind it.

So each bounded step on PostgreSQL arms this watchdog: still running :data:`OVERRUN_SECONDS`
past its deadline, its connection's socket is shut down from the watchdog's thread.  The
blocked libpq call returns at once with a lost connection, the step fails as storage trouble
(the call goes on through the journal), and the connection reopens on its next statement
(its connect bounded by the time left too, :meth:`storage.pg.PgConnection._reconnect_if_lost`).
As after any lost connection, a transaction the server had not committed is rolled back; a
COMMIT that had left but was never acknowledged may have been applied (the journal's replay
is idempotent: what it brings in is not written twice).

One daemon thread per process serves every armed step; arming is a lock and a heap push.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How long past its deadline a step may still run before its connection is cut: a healthy
#: server ends a step by its deadline (its lock wait is cut to it), so this only catches silence.
OVERRUN_SECONDS = 1.0


class Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None
        self.cuts = 0  # connections cut (tests)

    def arm(self, when: float, cut: Callable[[], None]) -> int:
        """``cut()`` at ``time.monotonic()`` ``when`` unless :meth:`disarm`-ed first; a token."""
        with self._cond:
            token = next(self._tokens)
            self._armed[token] = cut
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (when, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callproof-pg-watchdog", daemon=True)
                self._thread.start()
            elif earliest is None or when < earliest:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:  # once this returns, the cut of ``token`` has run or never will
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token = heapq.heappop(self._heap)
                    cut = self._armed.pop(token, None)
                    if cut is not None:
                        self.cuts += 1
                        try:
                            cut()  # under the lock: the step cannot finish and reuse the socket meanwhile
                        except Exception:
                            log.exception("cutting a silent PostgreSQL connection failed")
                while self._heap and self._heap[0][1] not in self._armed:  # disarmed ones
                    heapq.heappop(self._heap)
                self._cond.wait(max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None)


WATCHDOG = Watchdog()
