"""The compliance flow (``callproof/callflow/``) on an ARI channel.

:class:`CallFlow` is the shared flow with the ARI call port (``call_port.py``) plugged in;
:class:`Services` is what it, the request IVR and the application share.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callproof.callflow import flow as shared
from callproof.callflow.decisions import iso
from callproof.callflow.port import PlaybackFailed
from callproof.callflow.timings import CallTimings
from callproof.config import Config
from callproof.logs import event
from callproof.prompts import PromptCatalogue
from callproof.storage import Database
from callproof.storage.journal import Journal

from .ari import AriSession
from .call_events import CallInbox
from .call_port import AriCallPort
from .recorder import Recorder

log = logging.getLogger("callproof.flow")

__all__ = ["CallFlow", "CallTimings", "PlaybackFailed", "Services", "iso"]


@dataclass
class Services:
    """What a call flow needs from the running application."""

    config: Config
    db: Database
    ari: AriSession
    recorder: Recorder
    prompts: PromptCatalogue
    wake_sms: Callable[[], None]
    expect_handoff: Callable[[str, int], None] = lambda channel_id, call_id: None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    journal: Journal | None = None
    replay: Callable[[float], Awaitable[object]] | None = None


class CallFlow(shared.CallFlow):
    """One inbound call in our Stasis application, from StasisStart to the hand-off."""

    def __init__(self, services: Services, inbox: CallInbox, start_event: dict[str, Any]):
        timings = CallTimings()
        timings.mark("stasis_start")
        if "timestamp" in start_event:
            timings.asterisk["stasis_start"] = start_event["timestamp"]
        self.s, self.inbox = services, inbox
        self.channel: dict[str, Any] = start_event["channel"]
        self.args: list[str] = list(start_event.get("args") or [])
        deps = shared.FlowDeps(config=services.config, db=services.db, prompts=services.prompts,
                               clock=services.clock, wake_sms=services.wake_sms, journal=services.journal,
                               replay=services.replay)
        super().__init__(deps, AriCallPort(services, inbox, start_event, timings), timings=timings, log=log)

    async def run(self) -> str:
        try:
            return await super().run()
        finally:
            event(log, "call.timings", logging.INFO, channel=self.channel_id, protocol=self.protocol,
                  outcome=self.outcome, asterisk=self.timings.asterisk, **self.timings.relative_ms())
