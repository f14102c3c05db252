"""How the calls our flows no longer drive come to their end, truthfully.

After the hand-off a call is watched until its AMI ``Hangup`` (its recording finalised
first, then the row completed); a hang-up AMI never reported (its link was down) is found
by asking ARI which channels still exist; and after a (re)connection, the calls our storage
thinks are live but Asterisk no longer has are settled from the facts stored.  A part of
:class:`~callproof.ari_app.app.Application` (a mixin: it works on the application's state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from callproof.callflow.decisions import iso
from callproof.callflow.port import UNKNOWN_ROW
from callproof.logs import event
from callproof.storage import is_storage_error
from callproof.storage.call_status import CallStatus, when_ended
from callproof.storage.errors import storage_problem
from callproof.storage.journal import Journal

from .ari import AriSession
from .recorder import Recorder, finalise_recording

log = logging.getLogger("callproof.app")


class CallEndings:
    # the application's state this part works on (set by Application.__init__/start)
    db: Any
    ari: AriSession | None
    recorder: Recorder | None
    journal: Journal
    clock: Callable[[], datetime]
    connected: asyncio.Event
    gone_check_seconds: float
    tasks: dict[str, asyncio.Task[None]]
    handed_off: dict[str, int]
    _hangup_causes: dict[str, str | None]
    _interrupted: set[str]

    config: Any

    def _spawn(self, coro: Any) -> None:
        raise NotImplementedError

    def expect_handoff(self, channel_id: str, call_id: int) -> None:
        """The flow is about to hand this channel to the dialplan: watch for its hang-up."""
        self.handed_off[channel_id] = call_id

    def _on_ami_hangup(self, manager: Any, message: Any) -> None:
        uniqueid = message.get("Uniqueid", "")
        if uniqueid not in self.handed_off:
            return
        self._hangup_causes[uniqueid] = message.get("Cause-txt")
        if self.recorder is None or not self.recorder.is_tracking(uniqueid):
            self._spawn(self._complete(uniqueid))  # unrecorded call: nothing to wait for

    async def _reconcile_after_ami(self) -> None:
        """AMI is back after a lost link: the Hangup events of the time it was away are lost.
        Every channel we wait on (a recording to finalise, a handed-off call to complete) that
        Asterisk no longer has is finalised now, so no row stays 'recording'."""
        if self.recorder is None:
            return
        async with asyncio.timeout(30):
            await self.connected.wait()
        await self.settle_gone_channels(cause="ended while the AMI link was down", running_too=True)

    async def _recording_finalised(self, uniqueid: str) -> None:
        if uniqueid in self.handed_off:
            await self._complete(uniqueid)

    async def _complete(self, uniqueid: str) -> None:
        """A handed-off call hung up and its recording is final: the call is complete."""
        call_id = self.handed_off.pop(uniqueid, None)
        cause = self._hangup_causes.pop(uniqueid, None)
        if call_id is None:
            return
        flow_task = self.tasks.get(uniqueid)
        if flow_task is not None:  # let the flow write its own last step first
            await asyncio.wait([flow_task])
        ended_at, hangup = iso(self.clock()), f"Hangup:{cause}" if cause else "Hangup"
        if call_id == UNKNOWN_ROW or self.journal.pending(uniqueid):
            # the row (or its last steps) waits in the journal: its end goes after them
            self.journal.submit(uniqueid, "call.ended", ended_at=ended_at, hangup_cause=hangup)
            event(log, "call.ended", channel=uniqueid, journalled=True)
            return
        try:
            # handed off: completed; failed, handed off all the same: when it ended; else nothing
            written = await self.db.calls.complete(call_id, ended_at, hangup)
            if written is None or written[0] != CallStatus.COMPLETED:
                return
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.journal.submit(uniqueid, "call.ended", ended_at=ended_at, hangup_cause=hangup)
            event(log, "call.ended", logging.WARNING, channel=uniqueid, journalled=True, problem=storage_problem(exc))
            return
        event(log, "call.completed", call_id=call_id, channel=uniqueid, protocol=written[1])

    async def _check_gone_channels(self) -> None:
        while True:
            await asyncio.sleep(self.gone_check_seconds)
            try:
                await self.settle_gone_channels()
            except Exception as exc:  # ARI away: the next round tries again
                event(log, "call.gone_check_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])

    async def settle_gone_channels(self, cause: str = "unknown (no AMI Hangup event; channel gone)",
                                   running_too: bool = False) -> None:
        """Handed-off or recorded calls whose channel Asterisk no longer has, though no AMI
        Hangup said so: finalise the recording and complete the call as the Hangup would.
        ``running_too``: also the calls whose flow still runs (after AMI came back: their
        Hangup is lost for good; otherwise a flow still running settles its own call)."""
        watched = set(self.handed_off) | (self.recorder.tracked() if self.recorder is not None else set())
        if not running_too:
            watched -= set(self.tasks)
        if not watched or self.ari is None or not self.connected.is_set():
            return
        alive = await self.ari.channel_ids()
        for uniqueid in watched - alive:
            tracking = self.recorder is not None and self.recorder.is_tracking(uniqueid)
            if uniqueid not in self.handed_off and not tracking:
                continue  # its Hangup came meanwhile
            event(log, "call.hangup_not_seen", logging.WARNING, channel=uniqueid, why=cause)
            if uniqueid in self.handed_off:
                self._hangup_causes.setdefault(uniqueid, cause)
            if tracking and self.recorder is not None:
                self.recorder.stopped(uniqueid)  # then _recording_finalised completes the call
            else:
                self._spawn(self._complete(uniqueid))

    async def settle_unfinished(self, kept: set[str], first_connection: bool = False,
                                only: str | None = None, apps: set[str] | None = None) -> None:
        """Calls our storage thinks are live but Asterisk no longer has: record their end
        truthfully.  On the first connection after start-up they ended while this process
        was not running; later, while its ARI link was down.  ``only``: that channel's call.
        Only the calls of our application (``calls.ari_app``; none: one instance, as before
        migration 0017), or of ``apps``: a dead instance's, taken over (ari_app/instances.py)."""
        away = "callproof was not running" if first_connection else "callproof's ARI link was down"
        assert self.ari is not None and self.recorder is not None
        waiting = await asyncio.to_thread(self.journal.channels_waiting)
        mine = {None, self.config.ari.registered_app} if apps is None else apps
        for row in await self.db.calls.unfinished():
            channel_id = row["channel_id"]
            if only is not None and channel_id != only:
                continue
            if row.get("ari_app") not in mine and row["served_by"] in (None, "ari"):
                continue  # another instance's call (an AGI path's is settled by whoever sees it gone)
            if channel_id in kept or channel_id in self.tasks or channel_id in waiting:
                continue  # (waiting: its end is in the journal, replayed when storage is back)
            ours = row["served_by"] in (None, "ari")  # else an AGI path serves it (e.g. the dialplan's fallback)
            if await self.ari.channel_exists(channel_id):
                ran_it = channel_id in self._interrupted or apps is not None  # our flow, or the dead one's
                if ours and ran_it and row["status"] in (CallStatus.PROTOCOL_GIVEN, CallStatus.RECORDING):
                    # Our flow ran it when the link broke; up, and no longer in our application:
                    # only our continueInDialplan sends it on, so that request was carried out
                    # though its answer was lost.  (A channel an AGI path runs is never here.)
                    await self.db.calls.update(row["id"], status=CallStatus.HANDED_OFF,
                                               handed_off_at=iso(self.clock()))
                    event(log, "call.handoff_confirmed", channel=channel_id, protocol=row["protocol"])
                    row = {**row, "status": CallStatus.HANDED_OFF}
                # A live AGI call is finalised by its own hangup handler: not ours to track.
                if ours and row["status"] == CallStatus.HANDED_OFF:
                    self.handed_off[channel_id] = row["id"]
                    for rec in await self.db.recordings.for_call(row["id"]):
                        if rec["state"] == "recording":
                            self.recorder.track(channel_id, rec["id"], Path(rec["path"]))
                continue
            for rec in await self.db.recordings.for_call(row["id"]):
                if rec["state"] == "recording":
                    await self._finalise_orphan(rec)
            status = when_ended(row["status"])
            await self.db.calls.update(row["id"], status=status, ended_at=iso(self.clock()),
                                       hangup_cause=f"ended while {away}" if ours
                                       else f"ended; its {row['served_by']} hangup handler did not close the row")
            event(log, "call.settled", channel=channel_id, protocol=row["protocol"], status=status)

    async def _finalise_orphan(self, rec: Any) -> None:
        await finalise_recording(self.db, rec["id"], Path(rec["path"]), iso(self.clock()), attempts=3)
