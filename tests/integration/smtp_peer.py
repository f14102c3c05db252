"""A real SMTP server started by the tests on loopback (aiosmtpd, in its own
thread and event loop), keeping every message it accepts.

callproof talks to it with smtplib exactly as it would to a mail relay; the
tests read back what arrived (envelope and parsed message).
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from .sms_peers import free_port


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpPeer:
    def __init__(self) -> None:
        self.received: list[ReceivedMail] = []
        self.controller: Controller | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpPeer:
        self.port = free_port()
        self.controller = Controller(self, hostname=self.host, port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, n: int, timeout: float = 20.0) -> list[ReceivedMail]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.received) >= n:
                return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"the SMTP peer received {len(self.received)} message(s), wanted {n}")


@pytest.fixture
def smtp_peer() -> Iterator[SmtpPeer]:
    peer = SmtpPeer().start()
    yield peer
    peer.stop()
