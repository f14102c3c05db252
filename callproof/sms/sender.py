"""Delivers outbox rows through a backend, exactly once as far as the gateway allows.

Rules (docs/sms.md):

* Rows are claimed with a lease (``db.outbox.sender_step``), so several sender
  processes never send the same row; every write-back names the owner, so a
  sender whose lease ran out cannot overwrite the new owner's result.
* Every attempt is persisted (``sms_attempts``, outcome 'in_flight') before the
  message goes to the backend, with the row's stable idempotency key: rows are
  claimed and their attempts written in one transaction, ahead of the sends
  (up to ``batch_size`` at a time).  The gateway's answer and the row's new
  state are written in one transaction; the answers that came back meanwhile
  are written together (group commit).  A send holds its window slot until
  its answer is committed.
  An attempt left 'in_flight' by a dead sender becomes 'unknown' when the row
  is claimed again: a message that was on the wire may be sent twice
  (at-least-once; at most ``window`` of them), and the backend is told
  (``previous_unknown``) so an idempotent gateway drops it.  Rows claimed but
  not yet sent at the crash are flagged the same way, though they were never
  on the wire.
* Up to ``window`` sends are in flight at once (SMPP window, HTTP concurrency).
* Transient failures are retried with exponential back-off and jitter until
  ``max_attempts`` or ``max_age_seconds``, then the row is 'dead' (ops list and
  retry it with ``callproof sms``).  Permanent refusals go to 'dead' at once.
* Throttling answers (SMPP ESME_RTHROTTLED, HTTP 429 + Retry-After) do not use
  up an attempt: the row waits and the whole sender pauses for that long.
* A sender given an ``instance`` name holds it alone (``identity``) and, when
  it starts, takes back at once the rows a killed earlier life of it held.
* A delivery receipt is matched after the sends on the wire when it arrived
  have their answers committed (``ledger``); one that still finds no row is
  held in storage, and held receipts expire after ``receipt_hold_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from callproof.storage import Database
from callproof.storage.errors import InvalidStateError
from callproof.storage.outbox import MAX_CLAIM
from callproof.storage.timefmt import parse_db_time

from ..logs import event
from .backends import SendResult, SmsBackend
from .identity import SenderIdentity
from .ledger import SendLedger

log = logging.getLogger("callproof.sms")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


class OutboxSender:
    def __init__(self, db: Database, backend: SmsBackend, *, batch_size: int = 50, lease_seconds: int = 60,
                 poll_interval: float = 1.0, max_attempts: int = 10, max_age_seconds: float = 86400.0,
                 window: int = 1, send_timeout: float | None = None, backoff_base: float = 2.0,
                 backoff_max: float = 3600.0, throttle_seconds: float = 1.0,
                 clock: Callable[[], datetime] | None = None,
                 owner: str | None = None, rng: random.Random | None = None,
                 instance: str | None = None, receipt_hold_seconds: float = 600.0):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.db = db
        self.backend = backend
        self.batch_size = min(max(batch_size, window), MAX_CLAIM)
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
        self.clock = clock or (lambda: datetime.now(UTC))
        if owner is not None and instance is not None:
            raise ValueError("give a sender an owner or an instance name, not both")
        if instance is not None:  # a name that survives restarts, held by this process alone
            self.identity = SenderIdentity.for_database(db, instance)
        else:
            self.identity = SenderIdentity(owner or f"{socket.gethostname()}:{os.getpid()}", False)
        self.owner = self.identity.owner
        self._reclaimed = not self.identity.exclusive  # rows of an earlier life: taken back before any claim
        if receipt_hold_seconds <= 0:
            raise ValueError("receipt_hold_seconds must be > 0")
        self.receipt_hold_seconds = receipt_hold_seconds
        self._next_expiry = 0.0  # loop time of the next pass over held receipts
        self._ledger = SendLedger()
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._pause_until: datetime | None = None
        set_handler = getattr(backend, "set_receipt_handler", None)
        if set_handler is not None:
            set_handler(self.record_receipt)

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        """Close the backend (unbinds SMPP, closes HTTP sessions) and give up
        the sender's name, so the next process may take it at once."""
        try:
            await self.backend.close()
        finally:
            self.identity.release()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not self._reclaimed:
                    await self.reclaim()
                sent = await self.drain_once()
                if loop.time() >= self._next_expiry:
                    self._next_expiry = loop.time() + min(60.0, self.receipt_hold_seconds / 4)
                    await self.expire_held_receipts()
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
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()

    async def reclaim(self) -> int:
        """Take back the rows an earlier life of this sender (same name) still
        holds: nobody else can, so their lease is ended now instead of
        waited out.  Once, before this sender claims anything."""
        n = await self.db.outbox.reclaim_own(self.owner, _iso(self.clock()))
        self._reclaimed = True
        if n:
            event(log, "sms.reclaimed", logging.WARNING, sender=self.owner, rows=n)
        return n

    async def record_receipt(self, gateway_message_id: str, status: str, detail: str | None = None,
                             idempotency_key: str | None = None) -> None:
        """Called by backends for each delivery receipt (SMPP deliver_sm):
        matched once the sends on the wire now have their answers written
        (the receipt may be for one of them; module docstring)."""
        await self._ledger.wait_settled(self.send_timeout + 1.0)
        oid = await self.db.outbox.record_dlr(gateway_message_id, status, _iso(self.clock()), detail,
                                              idempotency_key)
        if oid is None:
            event(log, "sms.dlr_held", gateway_message_id=gateway_message_id, status=status)
        else:
            event(log, "sms.dlr", gateway_message_id=gateway_message_id, status=status, outbox_id=oid)

    async def expire_held_receipts(self) -> int:
        """Held receipts no acceptance claimed within the hold time: logged
        (gateway id and status only) and kept unattached."""
        gone = await self.db.outbox.expire_held_receipts(_iso(self.clock()), self.receipt_hold_seconds)
        for r in gone[:20]:
            event(log, "sms.dlr_unmatched", logging.WARNING, gateway_message_id=r["gateway_message_id"],
                  status=r["status"], received_at=r["received_at"], held_s=self.receipt_hold_seconds,
                  same_as_outbox_id=r["same_as_outbox_id"])
        if len(gone) > 20:
            event(log, "sms.dlr_unmatched_more", logging.WARNING, count=len(gone) - 20)
        return len(gone)

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
        """Deliver what is due until nothing is (or a throttling answer asks
        for a pause); returns the rows tried.

        One pipeline per call, while messages go out into the free window
        slots: one transaction at a time writes the answers that came back
        (and gives back unsent rows), and one claims the next rows, up to
        ``batch_size``, before ``ready`` runs dry (``db.outbox.sender_step``;
        both queue on the same database thread, the claim on its own so the
        slots freed by the answers' commit are refilled while it runs).  A
        slot is held from the send until its answer is committed, so at most
        ``window`` sent messages are ever without a recorded outcome (what a
        crash can turn into duplicates).  A claimed row is sent only while its
        answer still fits inside the lease; older ones are given back.
        """
        loop = asyncio.get_running_loop()
        signal = asyncio.Event()  # an answer came back, or the database step ended
        ready: deque[dict] = deque()  # claimed, attempt persisted, not sent yet
        stale: list[dict] = []  # claimed too long ago to be sent inside the lease: to give back
        # a row may still be sent while its answer is sure to come (or time out) inside the lease
        fresh_for = self.lease_seconds - self.send_timeout
        claimed_at = 0.0  # loop time the running step's claim started
        waiting: dict[int, tuple[float, asyncio.Future, dict]] = {}  # attempt id -> sent, no answer yet
        answered: list[tuple[int, dict]] = []  # answers not yet in a step
        busy = 0  # window slots held: waiting + answered + being committed
        step: asyncio.Task | None = None  # writing answers (and giving back unsent rows)
        in_step = 0  # answers the running step writes
        ledger = self._ledger
        opened: dict[int, int] = {}  # attempt id -> its send in the ledger, until a step writes its answer
        step_seqs: list[int] = []  # the sends whose answers the running step writes
        claiming: asyncio.Task | None = None  # claiming the next rows, queued after any step
        wanted = 0  # rows the running claim asks for
        exhausted = False
        tried = 0
        submit = getattr(self.backend, "submit", None)

        def answer(fut: asyncio.Future, row: dict) -> None:
            if waiting.pop(row["attempt_id"], None) is None:
                return  # already answered as timed out
            try:
                answered.append(self._answer(row, _result_of(fut)))
            except Exception as exc:  # a bug here must not leave the slot held forever
                log.exception("sms answer for outbox row %s could not be processed", row["id"])
                answered.append((row["attempt_id"], {
                    "outcome": "unknown", "row_state": "pending", "now": _iso(self.clock()), "owner": self.owner,
                    "reason": f"internal error: {type(exc).__name__}: {exc}",
                    "next_attempt_at": _iso(self.clock() + timedelta(seconds=self.backoff_base))}))
            signal.set()

        def send(row: dict) -> asyncio.Future:
            if submit is None:
                return loop.create_task(self.backend.send(row))
            try:
                return submit(row)
            except Exception as exc:  # a backend bug: it may have reached the wire, so unknown
                failed = loop.create_future()
                failed.set_exception(exc)
                return failed

        try:
            while True:
                if waiting:  # no answer within send_timeout: unknown (in send order = deadline order)
                    now_m = loop.time()
                    expired = []
                    for aid, (deadline, _, _) in waiting.items():
                        if deadline > now_m:
                            break
                        expired.append(aid)
                    for aid in expired:
                        _, fut, row = waiting.pop(aid)
                        fut.cancel()
                        answered.append(self._answer(row, SendResult(
                            accepted=False, unknown=True, reason=f"no answer within {self.send_timeout:g} s")))
                paused = self.paused_for() > 0
                while ready and busy < self.window and not paused:
                    row = ready.popleft()
                    if loop.time() - row["_claimed_at"] > fresh_for:
                        stale.append(row)  # another sender may take it soon: never send it now
                        continue
                    busy += 1
                    if row["previous_unknown"]:
                        event(log, "sms.resend_after_unknown", logging.WARNING, protocol=row["protocol"],
                              outbox_id=row["id"], idempotency_key=row["idempotency_key"])
                    opened[row["attempt_id"]] = ledger.opened()
                    fut = send(row)
                    waiting[row["attempt_id"]] = (loop.time() + self.send_timeout, fut, row)
                    fut.add_done_callback(partial(answer, row=row))
                if step is None:
                    release = None
                    if paused:  # never sent: give the rows back, no attempt used
                        stale.extend(ready)
                        ready.clear()
                    if stale:
                        now = self.clock()
                        back_at = self._pause_until if paused and self._pause_until else now
                        release = {"attempt_ids": [r["attempt_id"] for r in stale], "owner": self.owner,
                                   "next_attempt_at": _iso(back_at), "now": _iso(now)}
                        stale.clear()
                    if answered or release:
                        items, answered = answered, []
                        in_step = len(items)
                        step_seqs = [opened.pop(aid) for aid, _ in items if aid in opened]
                        step = loop.create_task(self.db.outbox.sender_step(finish=items, release=release))
                        step.add_done_callback(lambda _: signal.set())
                # the claim is its own transaction, queued after the answers' one: the slots those
                # free are refilled from `ready` while the (longer) claim runs
                if claiming is None and not (exhausted or paused or len(ready) >= self.window):
                    wanted = self.batch_size
                    claimed_at = loop.time()
                    claiming = loop.create_task(self.db.outbox.sender_step(claim={
                        "owner": self.owner, "limit": wanted, "lease_seconds": self.lease_seconds,
                        "now": _iso(self.clock()), "backend": self.backend.name,
                        "max_age_seconds": self.max_age.total_seconds()}))
                    claiming.add_done_callback(lambda _: signal.set())
                if step is None and claiming is None and not waiting and not ready and not stale:
                    return tried
                if not signal.is_set():
                    timeout = next(iter(waiting.values()))[0] - loop.time() + 0.001 if waiting else None
                    try:
                        async with asyncio.timeout(timeout):
                            await signal.wait()
                    except TimeoutError:
                        pass
                signal.clear()
                if step is not None and step.done():
                    errors, _ = step.result()  # a database error ends the pass (run() logs it)
                    step = None
                    busy -= in_step
                    ledger.settled(step_seqs)
                    step_seqs = []
                    for error in errors:
                        if isinstance(error, InvalidStateError):  # lease expired, another sender owns the row
                            event(log, "sms.lease_lost", logging.WARNING, error=str(error))
                        elif error is not None:
                            log.error("sms answer not recorded: %s", error)
                if claiming is not None and claiming.done():
                    _, rows = claiming.result()
                    claiming = None
                    tried += len(rows)
                    for r in rows:
                        r["_claimed_at"] = claimed_at
                    ready.extend(rows)
                    exhausted = len(rows) < wanted
        finally:
            for _, fut, _ in waiting.values():
                fut.cancel()
            for task in (step, claiming):
                if task is not None:
                    task.cancel()
            ledger.settled([*step_seqs, *opened.values()])  # no answer of this pass is written after it

    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0))
        return delay * self.rng.uniform(0.5, 1.5)

    def _answer(self, row: dict, result: SendResult) -> tuple[int, dict]:
        """What to write for one gateway answer: (attempt id, keyword arguments
        of ``finish_attempt``).  A throttling answer pauses the sender now."""
        oid, now = row["id"], self.clock()
        common = {"now": _iso(now), "owner": self.owner, "reason": result.reason}
        if result.accepted:
            if not result.logged:
                event(log, "sms.sent", protocol=row["protocol"], outbox_id=oid, backend=self.backend.name,
                      gateway_message_id=result.gateway_message_id)
            return row["attempt_id"], dict(outcome="accepted", row_state="logged" if result.logged else "sent",
                                           gateway_message_id=result.gateway_message_id, **common)
        if result.throttled:
            delay = result.retry_after if result.retry_after is not None else self.throttle_seconds
            until = now + timedelta(seconds=delay)
            if self._pause_until is None or until > self._pause_until:
                self._pause_until = until
            event(log, "sms.throttled", protocol=row["protocol"], outbox_id=oid, delay_s=delay)
            return row["attempt_id"], dict(outcome="throttled", row_state="pending",
                                           next_attempt_at=_iso(until), **common)
        outcome = "rejected" if result.permanent else ("unknown" if result.unknown else "transient")
        attempts = int(row["attempts"] or 0)
        too_old = now - parse_db_time(row["created_at"]) > self.max_age
        if result.permanent or attempts >= self.max_attempts or too_old:
            event(log, "sms.dead", logging.WARNING, protocol=row["protocol"], outbox_id=oid,
                  reason=result.reason, attempts=attempts)
            return row["attempt_id"], dict(outcome=outcome, row_state="dead", **common)
        delay = self._backoff(attempts)
        event(log, "sms.retry", protocol=row["protocol"], outbox_id=oid, reason=result.reason,
              delay_s=round(delay, 1), outcome=outcome)
        return row["attempt_id"], dict(outcome=outcome, row_state="pending",
                                       next_attempt_at=_iso(now + timedelta(seconds=delay)), **common)


def _result_of(fut: asyncio.Future) -> SendResult:
    """A finished send as a SendResult (a backend bug or a cancelled send:
    the message may have reached the wire, so the outcome is unknown)."""
    if fut.cancelled():
        return SendResult(accepted=False, unknown=True, reason="send cancelled before an answer")
    exc = fut.exception()
    if exc is not None:
        log.warning("sms backend raised", exc_info=exc)
        return SendResult(accepted=False, unknown=True, reason=f"{type(exc).__name__}: {exc}")
    return fut.result()
