"""Starting a call's MixMonitor and writing its recording row: the flow's record step.

The row comes first (journalled when storage is away: the recording starts all the same),
then MixMonitor on the channel; a resumed call hands in the row it already has, and
``adopt`` when the channel says MixMonitor already records into that file (never a second
writer, never a second row).  A start that fails is written down on the row and the call;
the caller still reaches an agent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from callproof.config import Config
from callproof.retention.policy import retention_until

from . import decisions
from .call_store import CallStore
from .decisions import iso
from .port import UNKNOWN_ROW, CallerHungUp, CallPort, RecordingError
from .timings import CallTimings


@dataclass(frozen=True)
class Started:
    path: Path
    started_at: str


class RecordingStart:
    def __init__(self, config: Config, store: CallStore, port: CallPort, clock: Callable[[], datetime],
                 timings: CallTimings, event: Callable[..., None]):
        self.config, self.store, self.port, self.clock = config, store, port, clock
        self.timings, self._event = timings, event

    async def new(self, protocol: str, caller_raw: str, dialled: str) -> Started | None:
        """A new row and MixMonitor into its tagged, sanitised file; None when it did not start
        (written down; CallerHungUp when the caller had gone)."""
        cfg, facts = self.config, self.port.facts
        target = decisions.recording_target(cfg, protocol, caller_raw, self.clock())
        started = iso(self.clock())
        choice = decisions.retention_choice(cfg, asked=facts.retention_class, did=dialled,
                                            context=facts.entry_context, channel=facts.channel_id)
        until = retention_until(datetime.fromisoformat(started), choice.days, cfg.general.tz)
        # the recording starts even when its row has to wait in the journal (rec_id None)
        rec_id = await self.store.recording_created(str(target.path), protocol, target.caller_part, started,
                                                    iso(until), choice.retention_class)
        return await self.on_row(rec_id, target.path, started, protocol)

    async def on_row(self, rec_id: int | None, path: Path, started: str, protocol: str,
                     adopt: bool = False) -> Started | None:
        """MixMonitor on recording row ``rec_id`` (``adopt``: it runs already, track it)."""
        row = UNKNOWN_ROW if rec_id is None else rec_id
        try:
            if adopt:
                await self.port.adopt_recording(path, row)
            else:
                await self.port.start_recording(path, row)
        except RecordingError as exc:
            await self.store.recording_failed(rec_id, str(path), str(exc))
            await self.store.update(error=f"recording: {exc}")
            self._event("recording.not_started", logging.ERROR, protocol=protocol, error=str(exc))
            if exc.caller_gone:
                raise CallerHungUp("hangup before recording started") from None
            return None
        self.timings.mark("recording_started")
        self._event("recording.started", protocol=protocol, recording_id=rec_id, adopted=adopt)
        return Started(path, started)
