"""SMS sender backends: the interface, and the ``log`` backend for development.

A backend takes one outbox row and says what the gateway answered.  SMPP,
HTTP and SIP MESSAGE backends implement the same interface.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from ..logs import event

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


class SmsBackend(Protocol):
    name: str

    async def send(self, message: Mapping[str, Any]) -> SendResult: ...

    async def close(self) -> None: ...


class LogBackend:
    """Writes the SMS to the log instead of sending it (development, demos)."""

    name = "log"

    async def send(self, message: Mapping[str, Any]) -> SendResult:
        event(log, "sms.logged", protocol=message["protocol"], destination=message["destination"],
              body=message["body"], outbox_id=message["id"])
        return SendResult(accepted=True, gateway_message_id=f"log-{message['id']}")

    async def close(self) -> None:
        return None


def make_backend(name: str) -> SmsBackend:
    if name == "log":
        return LogBackend()
    raise ValueError(f"unknown SMS backend {name!r}")
