"""Delivers outbox rows through a backend, exactly once as far as the gateway allows.

Rules (README, "SMS delivery"):

* Rows are claimed with a lease (``db.outbox.claim``), so several sender
  processes never send the same row; every write-back names the owner, so a
  sender whose lease ran out cannot overwrite the new owner's result.
* Every attempt is persisted (``sms_attempts``, outcome 'in_flight') before the
  message goes to the backend, with the row's stable idempotency key; the
  gateway's answer and the row's new state are written in one transaction.
  Answers that come back while a previous answer is being written are written
  together in the next transaction (group commit, one SAVEPOINT each, so one
  refused write-back does not undo the others).  A delivery task ends (and
  frees its window slot) only once its answer is committed.
  An attempt left 'in_flight' by a dead sender becomes 'unknown' when the row
  is claimed again: that one message may be sent twice (at-least-once), and
  the backend is told (``previous_unknown``) so an idempotent gateway drops it.
* Up to ``window`` sends are in flight at once (SMPP window, HTTP concurrency).
* Transient failures are retried with exponential back-off and jitter until
  ``max_attempts`` or ``max_age_seconds``, then the row is 'dead' (ops list and
  retry it with ``callproof sms``).  Permanent refusals go to 'dead' at once.
* Throttling answers (SMPP ESME_RTHROTTLED, HTTP 429 + Retry-After) do not use
  up an attempt: the row waits and the whole sender pauses for that long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from storage.errors import InvalidStateError
from storage.timefmt import parse_db_time

from ..logs import event
from .backends import SendResult, SmsBackend

log = logging.getLogger("callproof.sms")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class OutboxSender:
    def __init__(self, db: Any, backend: SmsBackend, *, batch_size: int = 50, lease_seconds: int = 60,
                 poll_interval: float = 1.0, max_attempts: int = 10, max_age_seconds: float = 86400.0,
                 window: int = 1, send_timeout: float | None = None, backoff_base: float = 2.0,
                 backoff_max: float = 3600.0, throttle_seconds: float = 1.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 owner: str | None = None, rng: random.Random | None = None):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.db = db
        self.backend = backend
        self.batch_size = max(batch_size, window)
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.max_age = timedelta(seconds=max_age_seconds)
        self.window = window
        # an answer must come back well inside the lease, or another sender could take the row
        self.send_timeout = send_timeout if send_timeout is not None else lease_seconds / 2
        if self.send_timeout >= lease_seconds:
            raise ValueError("send_timeout must be shorter than lease_seconds")
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.throttle_seconds = throttle_seconds
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._pause_until: datetime | None = None
        self._results: list[tuple[int, dict, asyncio.Future]] = []  # answers waiting for a commit
        self._writer: asyncio.Task | None = None
        set_handler = getattr(backend, "set_receipt_handler", None)
        if set_handler is not None:
            set_handler(self.record_receipt)

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
            pause = self.paused_for()
            if pause > 0:
                await asyncio.sleep(pause)
            elif sent == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def record_receipt(self, gateway_message_id: str, status: str, detail: str | None = None,
                             idempotency_key: str | None = None) -> None:
        """Called by backends for each delivery receipt (SMPP deliver_sm)."""
        oid = await self.db.outbox.record_dlr(gateway_message_id, status, _iso(self.clock()), detail,
                                              idempotency_key)
        event(log, "sms.dlr", gateway_message_id=gateway_message_id, status=status, outbox_id=oid)

    def paused_for(self) -> float:
        """Seconds left of a pause a throttling answer asked for (0 when none)."""
        if self._pause_until is None:
            return 0.0
        left = (self._pause_until - self.clock()).total_seconds()
        if left <= 0:
            self._pause_until = None
            return 0.0
        return left

    async def drain_once(self) -> int:
        """Deliver what is due, keeping up to ``window`` sends in flight, until
        nothing is due or ``batch_size`` rows were tried; returns rows tried."""
        tried = 0
        inflight: set[asyncio.Task] = set()
        exhausted = False
        try:
            while True:
                free = self.window - len(inflight)
                if self.paused_for() > 0:
                    exhausted = True  # throttled: finish what is in flight, claim nothing new
                # claim in chunks (half a window at least), not one commit per freed slot
                if free >= max(1, self.window // 2) and not exhausted and tried < self.batch_size:
                    rows = await self.db.outbox.claim_for_send(
                        self.owner, min(free, self.batch_size - tried), self.lease_seconds,
                        _iso(self.clock()), self.backend.name, self.max_age.total_seconds())
                    exhausted = not rows
                    tried += len(rows)
                    inflight.update(asyncio.create_task(self._deliver(r)) for r in rows)
                if not inflight:
                    return tried
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        log.error("sms delivery task failed", exc_info=task.exception())
        finally:
            for task in inflight:
                task.cancel()

    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0))
        return delay * self.rng.uniform(0.5, 1.5)

    async def _deliver(self, row: dict) -> None:
        """Send one claimed row; its attempt was persisted by the claim."""
        oid, att = row["id"], row
        if att["previous_unknown"]:
            event(log, "sms.resend_after_unknown", logging.WARNING, protocol=row["protocol"],
                  outbox_id=oid, idempotency_key=att["idempotency_key"])
        message = dict(row)
        try:
            async with asyncio.timeout(self.send_timeout):  # no extra task per send, unlike wait_for
                result = await self.backend.send(message)
        except TimeoutError:
            result = SendResult(accepted=False, unknown=True,
                                reason=f"no answer within {self.send_timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a backend bug: it may have reached the wire, so unknown
            log.warning("sms backend raised", exc_info=True)
            result = SendResult(accepted=False, unknown=True, reason=f"{type(exc).__name__}: {exc}")
        await self._record(row, att, result)

    async def _record(self, row: dict, att: dict, result: SendResult) -> None:
        oid, now = row["id"], self.clock()
        common = {"now": _iso(now), "owner": self.owner, "reason": result.reason}
        if result.accepted:
            await self._finish(
                att["attempt_id"], outcome="accepted", row_state="sent",
                gateway_message_id=result.gateway_message_id, **common)
            event(log, "sms.sent", protocol=row["protocol"], outbox_id=oid, backend=self.backend.name,
                  gateway_message_id=result.gateway_message_id)
            return
        if result.throttled:
            delay = result.retry_after if result.retry_after is not None else self.throttle_seconds
            until = now + timedelta(seconds=delay)
            if self._pause_until is None or until > self._pause_until:
                self._pause_until = until
            await self._finish(
                att["attempt_id"], outcome="throttled", row_state="pending",
                next_attempt_at=_iso(until), **common)
            event(log, "sms.throttled", protocol=row["protocol"], outbox_id=oid, delay_s=delay)
            return
        outcome = "rejected" if result.permanent else ("unknown" if result.unknown else "transient")
        attempts = int(row["attempts"] or 0)
        too_old = now - parse_db_time(row["created_at"]) > self.max_age
        if result.permanent or attempts >= self.max_attempts or too_old:
            await self._finish(
                att["attempt_id"], outcome=outcome, row_state="dead", **common)
            event(log, "sms.dead", logging.WARNING, protocol=row["protocol"], outbox_id=oid,
                  reason=result.reason, attempts=attempts)
            return
        delay = self._backoff(attempts)
        await self._finish(
            att["attempt_id"], outcome=outcome, row_state="pending",
            next_attempt_at=_iso(now + timedelta(seconds=delay)), **common)
        event(log, "sms.retry", protocol=row["protocol"], outbox_id=oid, reason=result.reason,
              delay_s=round(delay, 1), outcome=outcome)

    async def _finish(self, attempt_id: int, **kwargs: Any) -> None:
        """Write one answer and its row state (in the next group commit); returns
        once it is committed."""
        fut = asyncio.get_running_loop().create_future()
        self._results.append((attempt_id, kwargs, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_results())
        error = await fut
        if isinstance(error, InvalidStateError):  # lease expired and another sender owns the row now
            event(log, "sms.lease_lost", logging.WARNING, error=str(error))
        elif error is not None:
            raise error

    async def _write_results(self) -> None:
        """Commit the queued answers, a group per transaction, until none is left."""
        while self._results:
            batch, self._results = self._results, []
            try:
                errors = await self.db.outbox.finish_attempts([(a, kw) for a, kw, _ in batch])
            except Exception as exc:  # the whole group was rolled back: every attempt stays in_flight
                errors = [exc] * len(batch)
            for (_, _, fut), error in zip(batch, errors):
                if not fut.done():
                    fut.set_result(error)
