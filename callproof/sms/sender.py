"""Delivers outbox rows through a backend.

Rows are claimed with a lease (so several sender processes never send the
same row), each attempt's outcome is written back, failures are retried with
exponential back-off and jitter, and a row that runs out of attempts goes to
the ``dead`` state for ops to look at.  ``wake()`` lets the call flow ask for
an immediate pass right after it wrote a row, so callers get their SMS within
seconds instead of waiting for the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from ..logs import event
from .backends import SmsBackend

log = logging.getLogger("callproof.sms")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class OutboxSender:
    def __init__(self, db: Any, backend: SmsBackend, *, batch_size: int = 50, lease_seconds: int = 60,
                 poll_interval: float = 1.0, max_attempts: int = 10,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.db = db
        self.backend = backend
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sms sender pass failed; retrying after the poll interval")
                sent = 0
            if sent == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def drain_once(self) -> int:
        """Claim one batch and try each row once; returns how many rows were tried."""
        now = self.clock()
        rows = await self.db.outbox.claim(self.owner, self.batch_size, self.lease_seconds, _iso(now))
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: Any) -> None:
        try:
            result = await self.backend.send(row)
        except Exception as exc:  # a backend bug or network error is a transient failure
            log.warning("sms backend raised", exc_info=True)
            from .backends import SendResult
            result = SendResult(accepted=False, reason=f"{type(exc).__name__}: {exc}")
        now = self.clock()
        if result.accepted:
            await self.db.outbox.mark_sent(row["id"], result.gateway_message_id, _iso(now))
            event(log, "sms.sent", protocol=row["protocol"], outbox_id=row["id"], backend=self.backend.name)
            return
        attempts = int(row["attempts"] or 0) + 1
        if result.permanent or attempts >= self.max_attempts:
            await self.db.outbox.mark_dead(row["id"], result.reason or "refused", _iso(now))
            event(log, "sms.dead", logging.WARNING, protocol=row["protocol"], outbox_id=row["id"], reason=result.reason)
            return
        delay = min(3600.0, 2 ** attempts) * random.uniform(0.5, 1.5)
        await self.db.outbox.mark_retry(row["id"], result.reason or "failed", _iso(now + timedelta(seconds=delay)), _iso(now))
        event(log, "sms.retry", protocol=row["protocol"], outbox_id=row["id"], reason=result.reason, delay_s=round(delay, 1))
