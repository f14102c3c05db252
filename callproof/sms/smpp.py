"""SMPP 3.4 backend on aiosmpplib (asyncio; binding, enquire_link, re-bind,
GSM-7/UCS-2 choice and UDH splitting are the library's).

What this module adds is the bookkeeping that keeps a protocol SMS from being
sent twice or lost:

* a message is handed to the library through our own broker, and the hook
  that runs right before its PDU is written refuses one whose send() already
  gave up.  So "never written" (safe to retry) and "written, no answer"
  (outcome unknown) are told apart;
* submit_sm_resp statuses map to accepted / throttled / permanent / transient;
* delivery receipts (deliver_sm) go to the sender's receipt handler, matched
  by the gateway's message id (and our idempotency key as a fallback).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from aiosmpplib import (
    ESME, NPI, TON, AbstractBroker, AbstractHook, BindMode, DeliverSm, GenericNack,
    PhoneNumber, SmppMessage, SubmitSm, SubmitSmResp,
)
from aiosmpplib.correlator import SimpleCorrelator

from ..logs import event
from .backends import SendResult

log = logging.getLogger("callproof.sms.smpp")

ESME_ROK = 0x00
THROTTLED = {0x58, 0x14}  # ESME_RTHROTTLED, ESME_RMSGQFUL
# statuses that a later try may not get again; everything else is permanent
TRANSIENT = {0x04, 0x08, 0x45, 0x64, 0xFF, *THROTTLED}  # not bound, system error, submit failed,
                                                       # temporary app error, unknown
UDHI = 0x40

ReceiptHandler = Callable[[str, str, "str | None", "str | None"], Awaitable[None]]


@dataclass
class _Pending:
    message: SubmitSm
    future: asyncio.Future
    state: str = "queued"  # queued -> written; or abandoned (send() gave up before writing)
    parts_written: int = 0


class _Broker(AbstractBroker):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[SmppMessage] = asyncio.Queue()

    async def enqueue(self, message: SmppMessage) -> None:
        self.queue.put_nowait(message)

    async def dequeue(self) -> SmppMessage:
        return await self.queue.get()


class _Hook(AbstractHook):
    def __init__(self, backend: "SmppBackend") -> None:
        self.backend = backend

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, SubmitSm):
            p = self.backend._pending.get(smpp_message.log_id)
            if p is None or p.state == "abandoned":
                # ValueError: the library drops this message and keeps the session
                raise ValueError(f"submit {smpp_message.log_id} was abandoned before it was written")
            p.state = "written"
            p.parts_written += 1

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, (SubmitSmResp, GenericNack)) and smpp_message.log_id:
            p = self.backend._pending.get(smpp_message.log_id)
            if p is not None and not p.future.done():
                p.future.set_result(smpp_message)
        elif isinstance(smpp_message, DeliverSm) and smpp_message.is_receipt():
            await self.backend._receipt(smpp_message)

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        p = self.backend._pending.get(getattr(smpp_message, "log_id", ""))
        if p is not None and not p.future.done():
            p.future.set_exception(error)


class _Correlator(SimpleCorrelator):
    """The library's correlator, with a cheaper expiry sweep.

    SimpleCorrelator walks *every* store on each put/get: its delivery store
    keeps one entry per accepted message for ``max_ttl_delivery`` (3 days), so
    each submit walked every message of the last 3 days (quadratic in the
    traffic; a third of the sender's CPU after a few hundred messages).  Here
    the in-flight response store (at most a window's worth) is still swept
    every time, so a submit_sm with no answer expires on time; the delivery
    stores at most once per ``DELIVERY_SWEEP_SECONDS`` (a receipt correlation
    lives 3 days, a second more does not matter).
    """

    DELIVERY_SWEEP_SECONDS = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_delivery_sweep = time.monotonic()

    async def _remove_expired(self) -> None:
        now = time.monotonic()
        store = self._store
        for key in tuple(store.keys()):
            stored_at, message = store[key]
            if now - stored_at > self.max_ttl_response:
                del store[key]
                await self.expired(message)
        if now - self._last_delivery_sweep < self.DELIVERY_SWEEP_SECONDS:
            return
        self._last_delivery_sweep = now
        for dstore in (self._delivery_store, self._delivery_segment_store):
            for key, value in list(dstore.items()):
                if now - value[0] > self.max_ttl_delivery:
                    del dstore[key]


class _ToOurLog(logging.Handler):
    """aiosmpplib's structured log lines go through callproof's logging (JSON, levels)."""

    def emit(self, record: logging.LogRecord) -> None:
        if log.isEnabledFor(record.levelno):
            log.log(record.levelno, "aiosmpplib: %s", record.getMessage())


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


class SmppBackend:
    name = "smpp"
    idempotent = False  # SMPP 3.4 has no idempotency key: an unknown outcome may mean a duplicate

    def __init__(self, settings: SmppSettings) -> None:
        self.settings = settings
        self._pending: dict[str, _Pending] = {}
        self._receipt_handler: ReceiptHandler | None = None
        self._esme: ESME | None = None
        self._task: asyncio.Task | None = None

    def set_receipt_handler(self, handler: ReceiptHandler) -> None:
        self._receipt_handler = handler

    def _start(self) -> ESME:
        if self._esme is None:
            s = self.settings
            self._esme = ESME(
                smsc_host=s.host, smsc_port=s.port, system_id=s.system_id, password=s.password,
                system_type=s.system_type,
                bind_mode=BindMode.TRANSMITTER if s.bind_mode == "transmitter" else BindMode.TRANSCEIVER,
                enquire_link_interval=float(s.enquire_link_seconds), hook=_Hook(self),
                broker=_Broker(), correlator=_Correlator(s.system_id), socket_timeout=float(s.submit_timeout_seconds),
                log_level=logging.WARNING, log_handler=_ToOurLog(),
            )
            self._task = asyncio.create_task(self._esme.start(), name="callproof-smpp-esme")
        return self._esme

    async def send(self, message: Mapping[str, Any]) -> SendResult:
        esme = self._start()
        s = self.settings
        log_id = f"{message.get('idempotency_key') or message['id']}#{message.get('attempt_no', 0)}"
        dest = message["destination"]
        submit = SubmitSm(
            short_message=message["body"],
            source=PhoneNumber(s.source_addr, TON(s.source_ton), NPI(s.source_npi)),
            destination=PhoneNumber(dest.lstrip("+"), TON.INTERNATIONAL, NPI.ISDN),
            registered_delivery=1 if s.request_dlr else 0,
            esm_class=UDHI,  # the library splits with a UDH only when the text needs 2+ parts
            auto_message_payload=False,
            log_id=log_id,
            extra_data=str(message["id"]),
        )
        pending = _Pending(submit, asyncio.get_running_loop().create_future())
        self._pending[log_id] = pending
        try:
            await esme.broker.enqueue(submit)
            try:
                async with asyncio.timeout(s.submit_timeout_seconds):
                    resp = await asyncio.shield(pending.future)
            except TimeoutError:
                if pending.state == "queued":
                    pending.state = "abandoned"
                    return SendResult(accepted=False, reason="SMPP peer not bound: never submitted")
                return SendResult(accepted=False, unknown=True,
                                  reason=f"no submit_sm_resp within {s.submit_timeout_seconds:g} s")
            except ValueError as exc:  # the PDU could not be built from this text/number
                return SendResult(accepted=False, permanent=True, reason=f"invalid submit_sm: {exc}")
            except Exception as exc:  # transport error while writing
                return SendResult(accepted=False, unknown=pending.state == "written",
                                  reason=f"{type(exc).__name__}: {exc}")
        finally:
            if pending.state == "queued":
                pending.state = "abandoned"
            self._pending.pop(log_id, None)
        status = int(resp.command_status.value)
        name = resp.command_status.name
        if isinstance(resp, SubmitSmResp) and status == ESME_ROK:
            return SendResult(accepted=True, gateway_message_id=resp.message_id)
        if status in THROTTLED:
            return SendResult(accepted=False, throttled=True, reason=f"SMPP {name}")
        return SendResult(accepted=False, permanent=status not in TRANSIENT, reason=f"SMPP {name} (0x{status:02X})")

    async def _receipt(self, dsm: DeliverSm) -> None:
        receipt = dsm.parse_receipt()
        gw_id = str(receipt.get("id") or "")
        status = str(receipt.get("stat") or "UNKNOWN")
        if self._receipt_handler is None or not gw_id:
            event(log, "sms.dlr_ignored", logging.WARNING, gateway_message_id=gw_id, status=status)
            return
        try:
            key = (dsm.log_id or "").rsplit("#", 1)[0] or None  # set when the library correlated it
            await self._receipt_handler(gw_id, status, dsm.short_message[:200], key)
        except Exception:
            log.exception("could not record delivery receipt %s", gw_id)

    async def close(self) -> None:
        if self._esme is not None:
            try:
                await asyncio.wait_for(self._esme.stop(), 5)
            except Exception:
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        self._esme = self._task = None
