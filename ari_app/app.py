"""The running ARI application: connections, event routing, call tasks.

Services (storage, recorder, SMS sender) are separate from the ARI event
handling: the handler only routes each event to its call's inbox, and each
call's flow runs as its own task (aioari awaits each handler before reading
the next event).  When ARI drops, the application reconnects with back-off
and asks Asterisk which channels it kept in our Stasis application, resuming
each from its persisted step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callproof.callflow.decisions import iso
from callproof.config import Config
from callproof.logs import event
from callproof.prompts import PromptCatalogue
from callproof.sms import OutboxSender, make_sender
from callproof.storage import open_database
from callproof.storage.call_status import CallStatus, when_ended

from .ari import AriSession
from .call_events import CallInbox, channel_id_of
from .callback import CallbackScheduler
from .flow import CallFlow, Services
from .heap import trim_periodically
from .ivr_request import RequestIvrFlow, is_request_ivr, settle_unfinished_ivr
from .recorder import AmiLink, Recorder, finalise_recording

log = logging.getLogger("callproof.app")

#: What runs a channel in our Stasis application: an inbound call, or the request IVR.
AnyFlow = CallFlow | RequestIvrFlow

# The ARI events a call flow reacts to. Everything else (PlaybackContinuing for
# every digit, ChannelVarset for every variable, ...) is filtered out by Asterisk:
# about half of a call's events, and their JSON, never reach us.
FLOW_EVENTS = ["StasisStart", "StasisEnd", "PlaybackStarted", "PlaybackFinished",
               "ChannelDtmfReceived", "ChannelHangupRequest", "ChannelDestroyed",
               "Dial"]  # Dial: only call-back channels dial (its dialstatus says BUSY / NOANSWER)

# How often handed-off (and recorded) calls are checked against the channels Asterisk still has,
# for a hang-up whose AMI event never came (AMI link lost, reconnecting): without it such a call
# would stay handed_off, its recording unfinalised, and its entries held for ever.
GONE_CHECK_SECONDS = 60.0


class Application:
    def __init__(self, config: Config, *, clock: Callable[[], datetime] | None = None,
                 on_flow_done: Callable[[AnyFlow], Any] | None = None):
        self.config = config
        self.gone_check_seconds = GONE_CHECK_SECONDS
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_flow_done = on_flow_done
        self.db: Any = None
        self.ari: AriSession | None = None
        self.ami: AmiLink | None = None
        self.recorder: Recorder | None = None
        self.sender: OutboxSender | None = None
        self.prompts = PromptCatalogue(
            config.prompts.directory, default_language=config.general.default_language,
            languages=config.general.languages, custom_dir=config.prompts.custom_directory)
        self.inboxes: dict[str, CallInbox] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.flows: dict[str, AnyFlow] = {}  # calls in progress, by channel id
        self.handed_off: dict[str, int] = {}  # uniqueid -> call id, until the channel hangs up
        self._hangup_causes: dict[str, str | None] = {}
        self.connected = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self.callbacks: CallbackScheduler | None = None  # [callback] enabled: calls back dropped calls

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open storage and AMI, start the SMS sender. ARI is connected by :meth:`run`."""
        cfg = self.config
        self.db = await open_database(cfg)
        self.ami = AmiLink(cfg.ami.host, cfg.ami.port, cfg.ami.username, cfg.ami.password)
        self.recorder = Recorder(self.ami, self.db, cfg.recording.mixmonitor_options,
                                 now_iso=lambda: iso(self.clock()), on_finalised=self._recording_finalised)
        self.ami.on_event("Hangup", self._on_ami_hangup)
        await self.ami.connect(timeout=15)
        self.sender = make_sender(self.db, cfg.sms, clock=self.clock, ari=cfg.ari)
        self._spawn(self.sender.run())
        self._spawn(self._check_gone_channels())
        self._spawn(trim_periodically())  # glibc heap fragmentation (ari_app/heap.py)
        if cfg.retention.sweep_in_run:  # "running alongside": cron/timer not needed
            from callproof.retention import periodic_sweep
            self._spawn(periodic_sweep(cfg))
        if cfg.callback.enabled:
            self.callbacks = CallbackScheduler(cfg, self.db, self.prompts, clock=self.clock,
                                               ari=lambda: self.ari if self.connected.is_set() else None)
            self._spawn(self.callbacks.run())

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.recorder is not None:
            await self.recorder.drain()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.sender is not None:
            await self.sender.backend.close()  # unbinds SMPP, closes HTTP sessions
        if self.ari is not None:
            await self.ari.close()
        if self.ami is not None:
            self.ami.close()
        if self.db is not None:
            await self.db.close()

    async def run(self) -> None:
        """Stay connected to ARI for ever, reconnecting with exponential back-off."""
        cfg = self.config.ari
        delay = 0.5
        while True:
            try:
                self.ari = await AriSession.connect(cfg.url, cfg.username, cfg.password, cfg.app)
                self.ari.on_any_event(self.route_event)
                runner = asyncio.ensure_future(self.ari.run())
                await asyncio.sleep(0.2)  # let the WebSocket register the application first
                if runner.done():
                    runner.result()
                await self.ari.allow_only_events(FLOW_EVENTS)
                self.connected.set()
                event(log, "ari.connected", url=cfg.url, app=cfg.app)
                delay = 0.5
                await self.restart_interrupted_flows()
                await self.resume_kept_channels()
                await runner
                event(log, "ari.disconnected", logging.WARNING)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                event(log, "ari.connect_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}",
                      retry_in_s=round(delay, 1))
            finally:
                self.connected.clear()
                if self.ari is not None:
                    await self.ari.close()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, cfg.reconnect_max_seconds)

    # ------------------------------------------------------------- events
    def route_event(self, ev: dict[str, Any]) -> None:
        """Called by aioari for every event: route only, never block."""
        kind = ev.get("type")
        channel_id = channel_id_of(ev)
        if self.callbacks is not None and self.callbacks.route(ev, channel_id):
            return  # a call-back channel (ari_app/callback.py)
        if channel_id is None:
            return
        if kind == "StasisStart":
            self._start_flow(ev)
            return
        inbox = self.inboxes.get(channel_id)
        if inbox is not None:
            inbox.push(ev)

    def _start_flow(self, start_event: dict[str, Any]) -> None:
        channel_id = start_event["channel"]["id"]
        if channel_id in self.tasks:  # duplicate StasisStart (resume raced the event)
            return
        inbox = CallInbox(channel_id)
        self.inboxes[channel_id] = inbox
        # The request IVR (Stasis argument 'request-ivr', ari_app/ivr_request.py) or an inbound call.
        flow: AnyFlow = (RequestIvrFlow if is_request_ivr(start_event) else CallFlow)(
            self._services(), inbox, start_event)
        self.flows[channel_id] = flow
        task = asyncio.ensure_future(self._run_flow(flow))
        self.tasks[channel_id] = task

    async def _run_flow(self, flow: AnyFlow) -> None:
        try:
            await flow.run()
        finally:
            self.tasks.pop(flow.channel_id, None)
            self.inboxes.pop(flow.channel_id, None)
            self.flows.pop(flow.channel_id, None)
            if getattr(flow, "status", None) is not CallStatus.HANDED_OFF:
                # the hand-off did not happen (hang-up during it: the AMI Hangup may have come
                # before expect_handoff), so no Hangup will ever clear these
                self.handed_off.pop(flow.channel_id, None)
                self._hangup_causes.pop(flow.channel_id, None)
            if self.on_flow_done is not None:
                self.on_flow_done(flow)

    def _services(self) -> Services:
        assert self.ari is not None and self.recorder is not None and self.sender is not None
        return Services(config=self.config, db=self.db, ari=self.ari, recorder=self.recorder,
                        prompts=self.prompts, wake_sms=self.sender.wake, clock=self.clock,
                        expect_handoff=self.expect_handoff)

    # ------------------------------------------------ after the hand-off
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
        row = await self.db.calls.get(call_id)
        if row is None or row["status"] != CallStatus.HANDED_OFF:
            return
        await self.db.calls.update(call_id, status=CallStatus.COMPLETED, ended_at=iso(self.clock()),
                                   hangup_cause=f"Hangup:{cause}" if cause else "Hangup")
        event(log, "call.completed", call_id=call_id, channel=uniqueid, protocol=row["protocol"])

    async def _check_gone_channels(self) -> None:
        while True:
            await asyncio.sleep(self.gone_check_seconds)
            try:
                await self.settle_gone_channels()
            except Exception as exc:  # ARI away: the next round tries again
                event(log, "call.gone_check_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])

    async def settle_gone_channels(self) -> None:
        """Handed-off or recorded calls whose channel Asterisk no longer has, though no AMI
        Hangup said so: finalise the recording and complete the call as the Hangup would."""
        watched = set(self.handed_off) | (self.recorder.tracked() if self.recorder is not None else set())
        watched -= set(self.tasks)  # a flow still running settles its own call
        if not watched or self.ari is None or not self.connected.is_set():
            return
        alive = await self.ari.channel_ids()
        for uniqueid in watched - alive:
            tracking = self.recorder is not None and self.recorder.is_tracking(uniqueid)
            if uniqueid not in self.handed_off and not tracking:
                continue  # its Hangup came meanwhile
            event(log, "call.hangup_not_seen", channel=uniqueid)
            if uniqueid in self.handed_off:
                self._hangup_causes.setdefault(uniqueid, "unknown (no AMI Hangup event; channel gone)")
            if tracking and self.recorder is not None:
                self.recorder.stopped(uniqueid)  # then _recording_finalised completes the call
            else:
                self._spawn(self._complete(uniqueid))

    # ------------------------------------------------------------ resume
    async def restart_interrupted_flows(self) -> None:
        """Flows that were running when ARI dropped may have missed events (a playback
        that finished while we were away): stop them; resume_kept_channels() restarts
        each from its persisted step."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def resume_kept_channels(self) -> None:
        """After (re)connecting: resume channels Asterisk kept for us, settle the rest."""
        assert self.ari is not None
        kept = set(await self.ari.application_channel_ids())
        for channel_id in kept:
            if channel_id in self.tasks or (self.callbacks is not None and self.callbacks.owns(channel_id)):
                continue
            channel = await self.ari.get_channel(channel_id)
            if channel is not None:
                event(log, "call.resuming", channel=channel_id)
                self._start_flow({"type": "StasisStart", "channel": channel, "args": [], "resumed": True})
        await self.settle_unfinished(kept)
        await settle_unfinished_ivr(self.db, self.ari, kept | set(self.tasks), self.clock)

    async def settle_unfinished(self, kept: set[str]) -> None:
        """Calls our storage thinks are live but Asterisk no longer has: record their end truthfully."""
        assert self.ari is not None and self.recorder is not None
        for row in await self.db.calls.unfinished():
            channel_id = row["channel_id"]
            if channel_id in kept or channel_id in self.tasks:
                continue
            if await self.ari.channel_exists(channel_id):
                if row["status"] in (CallStatus.HANDED_OFF, CallStatus.RECORDING):
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
                                       hangup_cause="ended while callproof was disconnected")
            event(log, "call.settled", channel=channel_id, protocol=row["protocol"], status=status)

    async def _finalise_orphan(self, rec: Any) -> None:
        await finalise_recording(self.db, rec["id"], Path(rec["path"]), iso(self.clock()), attempts=3)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ stats
    def stats(self) -> dict[str, int]:
        """How much per-call state the application holds now (``callproof run`` logs it as
        ``app.stats`` on SIGUSR1; bench/bench_soak.py reads it): with no call up, every
        per-call count is 0."""
        figures = {"asyncio_tasks": len(asyncio.all_tasks()), "flows": len(self.flows), "tasks": len(self.tasks),
                   "inboxes": len(self.inboxes), "handed_off": len(self.handed_off),
                   "hangup_causes": len(self._hangup_causes), "background": len(self._background)}
        if self.recorder is not None:
            figures.update(self.recorder.stats())
        return figures
