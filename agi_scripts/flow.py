"""The compliance flow (``callproof/callflow/``) over AGI: the same steps, rows, file
names, CALLPROOF_STATUS / CALLPROOF_REASON values and call-backs as the ARI app.

Used by the classic AGI script (``agi_scripts/callproof_agi.py``, pyst2) and the
FastAGI server (``agi_scripts/fastagi.py``).  The first AGI argument names the
step: ``all`` runs the whole flow; ``consent``, ``protocol``, ``read``,
``record``, ``handoff`` run one step (the call row, keyed by the channel's
uniqueid, carries the state between them); ``finalise`` runs from the hangup
handler with ``${HANGUPCAUSE}`` as its second argument: it measures the
recording (size, duration, sha256), closes the call and, for a network drop
after the protocol was given, schedules the call-back (docs/callback.md).

Arguments after the step, as with ``Stasis()``: the dialled number (digits),
the linkedid, the language (empty: ``[general] default_language``), the retention
class (CALLPROOF_RETENTION_CLASS) and the entry context (CALLPROOF_ENTRY_CONTEXT).

Every step ends by setting ``CALLPROOF_STATUS`` and, when not ok,
``CALLPROOF_REASON`` (``callproof/callflow/reasons.py``); the script then returns
to the dialplan, which routes the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from callproof.callflow import endings
from callproof.callflow.flow import CallFlow, FlowDeps, Step
from callproof.callflow.journal_replay import journal_for
from callproof.callflow.port import CallerHungUp
from callproof.callflow.reasons import Reason
from callproof.callflow.timings import CallTimings
from callproof.config import Config
from callproof.logs import event
from callproof.prompts import PromptCatalogue
from callproof.storage import Database
from callproof.storage.journal import Journal

from .call_port import AgiCallPort, strip_sound
from .channel import AgiChannel, AgiCommandError

log = logging.getLogger("callproof.agi")

STEPS = tuple(step.value for step in Step)

__all__ = ["STEPS", "AgiFlow", "strip_sound"]


class AgiFlow:
    """One AGI request: the step it names, on the channel it came with."""

    def __init__(self, config: Config, db: Database | None, prompts: PromptCatalogue, channel: AgiChannel,
                 clock: Callable[[], datetime] | None = None, journal: Journal | None = None):
        self.config, self.db, self.prompts = config, db, prompts
        self.journal = journal or journal_for(config)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.port = AgiCallPort(channel, config)
        self.port.timings.mark("agi_start")  # the request arrived (the ARI flow's stasis_start)
        self.channel_id = self.port.facts.channel_id
        self.step_name = channel.env.get("agi_arg_1", "") or Step.ALL
        self.cause_raw = channel.env.get("agi_arg_2", "")  # finalise: ${HANGUPCAUSE}
        self.flow: CallFlow | None = None
        self.outcome: str | None = None

    @property
    def timings(self) -> CallTimings:
        """The port's marks (playbacks) and the flow's."""
        return self.port.timings

    async def run(self) -> str:
        """Run the step(s) asked for; always returns (never raises) the outcome."""
        if self.step_name not in STEPS:
            await self.fail(Reason.BAD_STEP, f"unknown step {self.step_name!r}; one of {', '.join(STEPS)}")
            return "failed"
        assert self.db is not None
        step = Step(self.step_name)
        if step is Step.FINALISE:
            try:
                self.outcome = await self.finalise()
            except Exception:
                log.exception("AGI finalise failed", extra={"fields": {"channel": self.channel_id}})
                self.outcome = "failed"
            return self.outcome
        self.flow = CallFlow(FlowDeps(config=self.config, db=self.db, prompts=self.prompts, clock=self.clock,
                                      journal=self.journal),
                             self.port, step=step, timings=self.port.timings, log=log, event_prefix="agi.")
        try:
            self.outcome = await self.flow.run()
        finally:  # a classic AGI script's process ends next: what it journalled is on disk first
            await asyncio.to_thread(self.journal.flush)
        return self.outcome

    async def finalise(self) -> str:
        """From the hangup handler: the cause is the argument (or HANGUPCAUSE itself)."""
        assert self.db is not None
        cause_raw = self.cause_raw
        if not cause_raw:
            try:
                cause_raw = await self.port.get_variable("HANGUPCAUSE") or ""
            except (CallerHungUp, AgiCommandError):
                pass
        return await endings.finalise(self.db, self.config, self.channel_id, cause=endings.parse_cause(cause_raw),
                                      cause_raw=cause_raw, now=self.clock(), journal=self.journal)

    async def fail(self, reason: Reason, message: str) -> None:
        """Before any flow runs (bad step, FastAGI script name, storage not opened):
        tell the dialplan (CALLPROOF_STATUS/REASON) and return to it."""
        self.outcome = "failed"
        event(log, "agi.call.failed", logging.ERROR, channel=self.channel_id, step=self.step_name,
              reason=reason, error=message)
        await endings.tell_dialplan_failed(self.port, reason, None)


