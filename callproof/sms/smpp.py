"""SMPP 3.4 backend: one bind (transceiver or transmitter) on asyncio, kept
alive with enquire_link, re-bound after a loss; submit_sm with the PDUs of
``smpp_pdu``; delivery receipts (deliver_sm) to the sender's receipt handler.

What this module guarantees, beyond speaking SMPP, is the bookkeeping that
keeps a protocol SMS from being sent twice or lost:

* a message waits in a queue while there is no bind, and is written only
  once bound; one whose time ran out in that queue is answered "never
  submitted" (safe to retry) and removed, so it can never be written later.
  Once written, a missing answer (timeout, connection lost) is "unknown";
* submit_sm_resp statuses map to accepted / throttled / permanent / transient;
  a message split into parts is accepted when every part is, its gateway id
  being the parts' ids joined by commas;
* a receipt is answered (deliver_sm_resp) only after the handler stored it;
  when storing fails the answer is a temporary error, so the SMSC sends the
  receipt again instead of it being lost.

Cost per message matters (the sender's rate is bounded by it; docs/sms.md,
"Throughput"): one future per message, PDUs written in one system call per
event-loop pass, answers parsed in place, timeouts checked by one periodic
sweep instead of a timer per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..logs import event
from . import smpp_pdu as P
from .backends import SendResult

log = logging.getLogger("callproof.sms.smpp")

THROTTLED = {0x58, 0x14}  # ESME_RTHROTTLED, ESME_RMSGQFUL
# statuses that a later try may not get again; everything else is permanent
TRANSIENT = {0x04, 0x08, 0x45, 0x64, 0xFF, *THROTTLED}  # not bound, system error, submit failed,
                                                       # temporary app error, unknown
STATUS_NAMES = {0x00: "ESME_ROK", 0x01: "ESME_RINVMSGLEN", 0x02: "ESME_RINVCMDLEN", 0x03: "ESME_RINVCMDID",
                0x04: "ESME_RINVBNDSTS", 0x05: "ESME_RALYBND", 0x08: "ESME_RSYSERR",
                0x0A: "ESME_RINVSRCADR", 0x0B: "ESME_RINVDSTADR", 0x0D: "ESME_RBINDFAIL",
                0x0E: "ESME_RINVPASWD", 0x0F: "ESME_RINVSYSID", 0x14: "ESME_RMSGQFUL",
                0x45: "ESME_RSUBMITFAIL", 0x58: "ESME_RTHROTTLED", 0x61: "ESME_RINVSCHED",
                0x62: "ESME_RINVEXPIRY", 0x64: "ESME_RX_T_APPN", 0x65: "ESME_RX_P_APPN",
                0x66: "ESME_RX_R_APPN", 0xFF: "ESME_RUNKNOWNERR"}
ESME_RX_T_APPN = 0x64
RECONNECT_MIN, RECONNECT_MAX = 0.25, 5.0

ReceiptHandler = Callable[[str, str, "str | None", "str | None"], Awaitable[None]]


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"status 0x{status:02X}")


@dataclass(frozen=True)
class SmppSettings:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    bind_mode: str = "transceiver"  # or transmitter (no receipts on this bind)
    source_addr: str = ""
    source_ton: int = 5  # alphanumeric
    source_npi: int = 0
    enquire_link_seconds: float = 30.0
    submit_timeout_seconds: float = 10.0
    request_dlr: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


class _Submit:
    """One message: its parts' PDU bodies, and what the gateway said so far."""

    __slots__ = ("bodies", "deadline", "future", "ids", "left", "status")

    def __init__(self, bodies: list[bytes], future: asyncio.Future, deadline: float) -> None:
        self.bodies = bodies
        self.future = future
        self.deadline = deadline
        self.ids: list[str] = [""] * len(bodies)
        self.left = len(bodies)
        self.status = P.ESME_ROK  # the first refusal among the parts

    def finish(self, result: SendResult) -> None:
        if not self.future.done():
            self.future.set_result(result)


class _Connection(asyncio.Protocol):
    """One TCP connection to the SMSC: framing, writes, answers."""

    def __init__(self, backend: SmppBackend) -> None:
        self.backend = backend
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.inflight: dict[int, tuple[_Submit, int]] = {}  # seq -> (message, part index)
        self.control: dict[int, asyncio.Future] = {}  # seq -> bind / enquire_link / unbind answer
        self.closed: asyncio.Future = self.loop.create_future()
        self.receipt_tasks: set[asyncio.Task] = set()

    # --- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.backend._conn is self:  # from now on messages wait for the next bind
            self.backend._conn = None
        reason = f"connection lost before submit_sm_resp ({exc or 'closed by the peer'})"
        for sub, _ in self.inflight.values():
            sub.finish(SendResult(accepted=False, unknown=True, reason=reason))
        self.inflight.clear()
        for fut in self.control.values():
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self.control.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos, end = 0, len(buf)
        try:
            while end - pos >= 16:
                length, cmd, status, seq = P.HEADER.unpack_from(buf, pos)
                if length < 16 or length > P.MAX_PDU:
                    raise P.PduError(f"PDU length {length}")
                if end - pos < length:
                    break
                body = bytes(buf[pos + 16:pos + length])
                pos += length
                self._dispatch(cmd, status, seq, body)
        except P.PduError as exc:
            event(log, "sms.smpp_protocol_error", logging.ERROR, error=str(exc))
            self.abort()
        finally:
            del buf[:pos]

    # --- writing -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue bytes for the socket; everything queued in one event-loop
        pass goes out in one write."""
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def submit(self, sub: _Submit) -> None:
        backend = self.backend
        for i, body in enumerate(sub.bodies):
            seq = backend.next_seq()
            self.inflight[seq] = (sub, i)
            self.write(P.pdu(P.SUBMIT_SM, seq, body))

    async def request(self, command_id: int, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Send a session PDU and wait for its answer: (status, body)."""
        seq = self.backend.next_seq()
        fut = self.loop.create_future()
        self.control[seq] = fut
        self.write(P.pdu(command_id, seq, body))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self.control.pop(seq, None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- reading -------------------------------------------------------------
    def _dispatch(self, cmd: int, status: int, seq: int, body: bytes) -> None:
        if cmd == P.SUBMIT_SM_RESP or (cmd == P.GENERIC_NACK and seq in self.inflight):
            entry = self.inflight.pop(seq, None)
            if entry is not None:
                self.backend.answer(entry[0], entry[1], status, body if cmd == P.SUBMIT_SM_RESP else b"")
            return
        if cmd & 0x80000000:  # bind / enquire_link / unbind answers, or a nack of one
            fut = self.control.get(seq)
            if fut is not None and not fut.done():
                fut.set_result((status if cmd != P.GENERIC_NACK else status or P.ESME_RINVCMDID, body))
            return
        if cmd == P.DELIVER_SM:
            task = self.loop.create_task(self._receipt(seq, body))
            self.receipt_tasks.add(task)
            task.add_done_callback(self.receipt_tasks.discard)
        elif cmd == P.ENQUIRE_LINK:
            self.write(P.pdu(P.ENQUIRE_LINK_RESP, seq))
        elif cmd == P.UNBIND:
            self.write(P.pdu(P.UNBIND_RESP, seq))
            self._flush()
            if self.transport is not None:
                self.transport.close()
        else:
            self.write(P.pdu(P.GENERIC_NACK, seq, status=P.ESME_RINVCMDID))

    async def _receipt(self, seq: int, body: bytes) -> None:
        status = P.ESME_ROK
        try:
            dsm = P.parse_deliver_sm(body)
            if dsm.is_receipt:
                status = await self.backend.receipt(dsm)
            else:
                event(log, "sms.smpp_mo_ignored", logging.INFO, esm_class=dsm.esm_class)
        except P.PduError as exc:
            event(log, "sms.smpp_bad_deliver_sm", logging.WARNING, error=str(exc))
        self.write(P.pdu(P.DELIVER_SM_RESP, seq, b"\0", status=status))


class SmppBackend:
    name = "smpp"
    idempotent = False  # SMPP 3.4 has no idempotency key: an unknown outcome may mean a duplicate

    def __init__(self, settings: SmppSettings) -> None:
        self.settings = settings
        self._template = P.SubmitTemplate(settings.source_addr, settings.source_ton, settings.source_npi,
                                          1 if settings.request_dlr else 0)
        self._bind_body = P.bind_body(settings.system_id, settings.password, settings.system_type)
        self._receipt_handler: ReceiptHandler | None = None
        self._conn: _Connection | None = None  # set while bound
        self._waiting: deque[_Submit] = deque()  # no bind yet: never written
        self._task: asyncio.Task | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._seq = 0
        self._ref = 0
        self._closing = False

    def set_receipt_handler(self, handler: ReceiptHandler) -> None:
        self._receipt_handler = handler

    def next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    # --- sending -------------------------------------------------------------
    async def send(self, message: Mapping[str, Any]) -> SendResult:
        return await self.submit(message)

    def submit(self, message: Mapping[str, Any]) -> asyncio.Future:
        """Hand one message to the session without a task per message: the
        returned future gets its SendResult (cancelling it before the message
        was written means it is never written)."""
        if self._task is None:
            self._start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._ref = (self._ref + 1) & 0xFF
        try:
            bodies = self._template.parts(message["destination"], message["body"], self._ref)
        except P.PduError as exc:  # this text/number can never make a valid submit_sm
            future.set_result(SendResult(accepted=False, permanent=True, reason=f"invalid submit_sm: {exc}"))
            return future
        sub = _Submit(bodies, future, time.monotonic() + self.settings.submit_timeout_seconds)
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.submit(sub)
        else:
            self._waiting.append(sub)
        return future

    def answer(self, sub: _Submit, part: int, status: int, body: bytes) -> None:
        """A part's submit_sm_resp (or generic_nack) arrived."""
        if status == P.ESME_ROK:
            sub.ids[part] = P.submit_sm_resp_message_id(body)
        elif sub.status == P.ESME_ROK:
            sub.status = status
        sub.left -= 1
        if sub.left:
            return
        status = sub.status
        if status == P.ESME_ROK:
            sub.finish(SendResult(accepted=True, gateway_message_id=",".join(sub.ids)))
        elif status in THROTTLED:
            sub.finish(SendResult(accepted=False, throttled=True, reason=f"SMPP {status_name(status)}"))
        else:
            sub.finish(SendResult(accepted=False, permanent=status not in TRANSIENT,
                                  reason=f"SMPP {status_name(status)} (0x{status:02X})"))

    def _sweep(self) -> None:
        """Answer the messages whose time ran out (one pass for all, every
        fraction of the submit timeout, instead of a timer per message)."""
        now = time.monotonic()
        timeout = self.settings.submit_timeout_seconds
        waiting = self._waiting
        while waiting and (waiting[0].deadline <= now or waiting[0].future.done()):
            sub = waiting.popleft()  # out of the queue: it can never be written now
            sub.finish(SendResult(accepted=False, reason="SMPP peer not bound: never submitted"))
        conn = self._conn
        if conn is not None:
            expired = []
            for seq, (sub, _) in conn.inflight.items():  # in sending order, so in deadline order
                if sub.deadline > now:
                    break
                expired.append(seq)
            for seq in expired:
                sub, _ = conn.inflight.pop(seq)
                sub.finish(SendResult(accepted=False, unknown=True,
                                      reason=f"no submit_sm_resp within {timeout:g} s"))
        self._sweeper = asyncio.get_running_loop().call_later(min(max(timeout / 5, 0.05), 1.0), self._sweep)

    # --- receipts ------------------------------------------------------------
    async def receipt(self, dsm: P.DeliverSm) -> int:
        """Store one delivery receipt; the deliver_sm_resp status to answer."""
        gw_id, status = dsm.receipt()
        if self._receipt_handler is None or not gw_id:
            event(log, "sms.dlr_ignored", logging.WARNING, gateway_message_id=gw_id, status=status)
            return P.ESME_ROK
        try:
            await self._receipt_handler(gw_id, status, dsm.short_message[:200].decode("latin-1"), None)
        except Exception:
            log.exception("could not record delivery receipt %s; the SMSC will send it again", gw_id)
            return ESME_RX_T_APPN
        return P.ESME_ROK

    # --- the session -----------------------------------------------------------
    def _start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="callproof-smpp-session")
        self._sweep()

    async def _run(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        delay = RECONNECT_MIN
        bind_cmd = P.BIND_TRANSMITTER if s.bind_mode == "transmitter" else P.BIND_TRANSCEIVER
        while not self._closing:
            conn: _Connection | None = None
            try:
                async with asyncio.timeout(s.submit_timeout_seconds):
                    _, conn = await loop.create_connection(lambda: _Connection(self), s.host, s.port)
                status, _ = await conn.request(bind_cmd, self._bind_body, s.submit_timeout_seconds)
                if status != P.ESME_ROK:
                    event(log, "sms.smpp_bind_refused", logging.ERROR, host=s.host, port=s.port,
                          status=status_name(status))
                    raise ConnectionError(f"bind refused: {status_name(status)}")
            except (OSError, TimeoutError, ConnectionError) as exc:
                if conn is not None:
                    conn.abort()
                event(log, "sms.smpp_connect_failed", logging.WARNING, host=s.host, port=s.port,
                      error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            delay = RECONNECT_MIN
            event(log, "sms.smpp_bound", host=s.host, port=s.port, bind_mode=s.bind_mode)
            self._conn = conn
            while self._waiting:  # written now, in the order they came
                sub = self._waiting.popleft()
                if not sub.future.done():
                    conn.submit(sub)
            try:
                await self._keep_alive(conn)
            finally:
                if self._conn is conn:
                    self._conn = None
            if not self._closing:
                event(log, "sms.smpp_connection_lost", logging.WARNING, host=s.host, port=s.port)

    async def _keep_alive(self, conn: _Connection) -> None:
        """enquire_link every ``enquire_link_seconds``; no answer: drop the
        connection (the loop in _run binds again)."""
        s = self.settings
        while not conn.closed.done():
            done, _ = await asyncio.wait([conn.closed], timeout=s.enquire_link_seconds)
            if done:
                return
            try:
                await conn.request(P.ENQUIRE_LINK, b"", s.submit_timeout_seconds)
            except (TimeoutError, ConnectionError):
                event(log, "sms.smpp_enquire_link_unanswered", logging.WARNING, host=s.host)
                conn.abort()
                await conn.closed
                return

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        conn = self._conn
        if conn is not None and conn.transport is not None:
            try:
                await conn.request(P.UNBIND, b"", 2.0)
            except (TimeoutError, ConnectionError):
                pass
            if conn.transport is not None:
                conn.transport.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().finish(SendResult(accepted=False, reason="SMPP backend closed: never submitted"))
        self._conn = self._task = None
