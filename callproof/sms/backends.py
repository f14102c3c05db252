"""SMS sender backends: the interface, and the ``log`` backend for development.

A backend takes one outbox row and says what the gateway answered.  SMPP,
HTTP and SIP MESSAGE backends implement the same interface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..logs import event

if TYPE_CHECKING:
    from datetime import datetime

    from callproof.config import AriConfig, SmsConfig
    from callproof.storage import Database

    from .sender import OutboxSender

log = logging.getLogger("callproof.sms")


@dataclass(frozen=True)
class SendResult:
    accepted: bool
    gateway_message_id: str | None = None
    permanent: bool = False  # a refusal that retrying cannot fix
    reason: str | None = None
    throttled: bool = False  # the gateway asked us to slow down: not an attempt used up
    retry_after: float | None = None  # seconds, when the gateway said how long
    unknown: bool = False  # may have reached the gateway, no answer (e.g. timeout)
    logged: bool = False  # the log backend: written to the log, nothing sent (row state 'logged')


class SmsBackend(Protocol):
    name: str

    async def send(self, message: Mapping[str, Any]) -> SendResult: ...

    async def close(self) -> None: ...


def masked_destination(number: str | None) -> str:
    """A phone number fit for a log line: personal data, so only its last two digits."""
    if not number:
        return "-"
    return "*" * max(len(number) - 2, 0) + number[-2:] if len(number) > 4 else "****"


class LogBackend:
    """Writes a line about the SMS to the log instead of sending it (development, demos).

    Nothing reaches a gateway, so its rows end ``logged``, never ``sent``.  The line holds
    neither the phone number (masked) nor the text (which may carry a one-time code or a
    link token): personal data and credentials never go to the log."""

    name = "log"

    async def send(self, message: Mapping[str, Any]) -> SendResult:
        event(log, "sms.logged", protocol=message["protocol"], outbox_id=message["id"],
              destination=masked_destination(message["destination"]), chars=len(message["body"]),
              note="log backend: nothing was sent (set [sms] backend)")
        return SendResult(accepted=True, gateway_message_id=f"log-{message['id']}", logged=True)

    async def close(self) -> None:
        return None


def make_backend(name: str, sms: SmsConfig | None = None, ari: AriConfig | None = None) -> SmsBackend:
    """The backend called ``name``; ``sms`` is the [sms] config section
    (its sub-table for that backend holds the settings)."""
    if name == "log":
        return LogBackend()
    if sms is None:
        raise ValueError(f"the {name} SMS backend needs the [sms] settings")
    if name == "smpp":
        from dataclasses import asdict

        from .smpp import SmppBackend, SmppSettings
        return SmppBackend(SmppSettings(**asdict(sms.smpp)))
    if name == "http":
        from .http import HttpBackend
        return HttpBackend(sms.http)
    if name == "sip":
        from .sip import SipMessageBackend
        if ari is None:
            raise ValueError("the sip SMS backend needs the [ari] settings")
        return SipMessageBackend(sms.sip, ari.url, ari.username, ari.password)
    raise ValueError(f"unknown SMS backend {name!r}")


def make_sender(db: Database, sms: SmsConfig, *, clock: Callable[[], datetime] | None = None,
                backend: SmsBackend | None = None, ari: AriConfig | None = None) -> OutboxSender:
    """An OutboxSender configured from the [sms] section."""
    from .sender import OutboxSender
    return OutboxSender(
        db, backend or make_backend(sms.backend, sms, ari), batch_size=sms.batch_size,
        lease_seconds=sms.lease_seconds, poll_interval=sms.poll_interval_seconds,
        max_attempts=sms.max_attempts, max_age_seconds=sms.max_age_seconds, window=sms.window,
        backoff_base=sms.backoff_base_seconds, backoff_max=sms.backoff_max_seconds,
        throttle_seconds=sms.throttle_seconds, clock=clock, instance=sms.instance,
        receipt_hold_seconds=sms.receipt_hold_seconds)
