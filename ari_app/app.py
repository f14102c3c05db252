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
from typing import Any

from callproof import store as recordings_store
from callproof.callflow.decisions import iso
from callproof.callflow.journal_replay import JournalReplayer, journal_for
from callproof.callflow.queue_wait import QUEUE_EVENTS, QueueWatch
from callproof.config import Config
from callproof.encryption import atrest as encryption_at_rest
from callproof.evidence import records as evidence_records
from callproof.logs import event
from callproof.metrics import MetricsService, start_metrics
from callproof.prompts import PromptCatalogue
from callproof.sms import OutboxSender, make_sender
from callproof.storage import open_database

from .ari import AriSession
from .call_endings import CallEndings
from .call_events import CallInbox, channel_id_of
from .callback import CallbackScheduler
from .flow import CallFlow, Services
from .heap import trim_periodically
from .instances import Instances
from .ivr_request import RequestIvrFlow, is_request_ivr, settle_unfinished_ivr
from .logins import LoginFailures, is_unauthorised
from .recorder import AmiLink, Recorder

log = logging.getLogger("callproof.app")

#: What runs a channel in our Stasis application: an inbound call, or the request IVR.
AnyFlow = CallFlow | RequestIvrFlow

# The ARI events a call flow reacts to. Everything else (PlaybackContinuing for
# every digit, ChannelVarset for every variable, ...) is filtered out by Asterisk:
# about half of a call's events, and their JSON, never reach us.
FLOW_EVENTS = ["StasisStart", "StasisEnd", "PlaybackStarted", "PlaybackFinished",
               "ChannelDtmfReceived", "ChannelHangupRequest", "ChannelDestroyed",
               "Dial",  # Dial: only call-back channels dial (its dialstatus says BUSY / NOANSWER)
               "ApplicationReplaced"]  # another process registered our application name

# How often handed-off (and recorded) calls are checked against the channels Asterisk still has,
# for a hang-up whose AMI event never came (AMI link lost, reconnecting): without it such a call
# would stay handed_off, its recording unfinalised, and its entries held for ever.
GONE_CHECK_SECONDS = 60.0
# While another process holds our ARI application, how often we ask whether it still does.
REPLACED_CHECK_SECONDS = 2.0


def reconnect_delay(attempt: int, cap: float, first: float = 0.1) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 = right after the drop):
    ``first`` doubled per failed attempt up to ``cap``, times a jitter of 0.5-1 so that
    several instances do not retry in step.  The first attempt goes out within ``first``."""
    return min(cap, first * 2 ** min(attempt, 30)) * random.uniform(0.5, 1.0)


class Application(CallEndings):
    def __init__(self, config: Config, *, clock: Callable[[], datetime] | None = None,
                 on_flow_done: Callable[[AnyFlow], Any] | None = None):
        self.config = config
        self.gone_check_seconds = GONE_CHECK_SECONDS
        self.replaced_check_seconds = REPLACED_CHECK_SECONDS
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
        self.handed_off: dict[str, int] = {}  # uniqueid -> call id (UNKNOWN_ROW: in the journal), until it hangs up
        self._hangup_causes: dict[str, str | None] = {}
        self._interrupted: set[str] = set()  # channels whose flows the last drop stopped
        self.connected = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self.callbacks: CallbackScheduler | None = None  # [callback] enabled: calls back dropped calls
        # calls' writes while storage is unavailable (storage/journal.py)
        self.journal = journal_for(config)
        self.replayer: JournalReplayer | None = None
        self.metrics: MetricsService | None = None  # [metrics] listen: GET /metrics
        self.queue_watch: QueueWatch | None = None  # time to agent (AMI queue events)
        self.instances: Instances | None = None  # [ari] instance set: one of several (ari_app/instances.py)

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open storage and AMI, start the SMS sender. ARI is connected by :meth:`run`."""
        cfg = self.config
        signer = evidence_records.configure(cfg)  # the signing key, before any call (a bad one: KeyFileError)
        encryption_at_rest.configure(cfg)  # the public keys recordings are encrypted to (a bad one: KeyringError)
        recordings_store.configure(cfg)  # the node named in each new recording's row
        self.db = await open_database(cfg)
        if signer is not None and cfg.audit.checkpoint_file is not None:  # the audit chain's anchor
            from callproof.evidence.checkpoints import anchor_periodically
            self._spawn(anchor_periodically(cfg, signer))
        await self.db.run_on_calls_connection(lambda conn: None)  # opened now, not on the first call
        self.replayer = JournalReplayer(self.db, self.journal, cfg)
        await self.replayer.replay_once()  # what a previous process could not write
        self._spawn(self.replayer.run())
        self.metrics = await start_metrics(cfg, self.db, "run", cfg.metrics.listen, "metrics.listen")
        if cfg.recording.store is not None:  # finalised recordings to the shared store, off the calls' path
            from callproof.store.mover import periodic_move
            self._spawn(periodic_move(cfg, observe=self.metrics.process.observe_moves))
        self.ami = AmiLink(cfg.ami.host, cfg.ami.port, cfg.ami.username, cfg.ami.password,
                           max_login_failures=cfg.ami.max_login_failures)
        ami = self.ami
        self.metrics.process.link("ari", self.connected.is_set)
        self.metrics.process.link("ami", lambda: ami.ready)
        self.queue_watch = QueueWatch(self.db, clock=self.clock, observe=self.metrics.process.observe_agent)
        for name in QUEUE_EVENTS:
            self.ami.on_event(name, self.queue_watch.on_event)
        self.recorder = Recorder(self.ami, self.db, cfg.recording.mixmonitor_options,
                                 now_iso=lambda: iso(self.clock()), on_finalised=self._recording_finalised)
        self.recorder.journal = self.journal
        self.ami.on_event("Hangup", self._on_ami_hangup)
        self.ami.after_relogin(self._reconcile_after_ami)
        await self.ami.connect(timeout=15)
        self.sender = make_sender(self.db, cfg.sms, clock=self.clock, ari=cfg.ari)
        self._spawn(self.sender.run())
        self._spawn(self._check_gone_channels())
        self._spawn(trim_periodically())  # glibc heap fragmentation (ari_app/heap.py)
        if cfg.retention.sweep_in_run:  # "running alongside": cron/timer not needed
            from callproof.retention import periodic_sweep
            self._spawn(periodic_sweep(cfg))
        if cfg.ari.instance:
            self.instances = Instances(cfg, self.db, self.clock, session=lambda: self.ari, connected=self.connected,
                                       on_lost=self._lease_lost, on_taken_over=self._took_over)
            self._spawn(self.instances.run())
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
            await self.sender.close()  # unbinds SMPP, closes HTTP sessions, gives up the sender's name
        if self.ari is not None:
            await self.ari.close()
        if self.instances is not None:
            await self.instances.give_up()  # after our WebSocket closed: a survivor takes our calls over
        if self.ami is not None:
            self.ami.close()
        if self.queue_watch is not None:
            await self.queue_watch.drain()
        if self.metrics is not None:
            await self.metrics.close()
        await asyncio.to_thread(self.journal.flush)  # every journalled write on disk before the end
        if self.replayer is not None:
            await self.replayer.replay_once()  # the last writes of this process, if storage is back
            self.replayer.close()
        if self.db is not None:
            await self.db.close()

    async def run(self) -> None:
        """Stay connected to ARI (until Asterisk refused the login ``[ari] max_login_failures``
        times in a row: LoginRefused, see :mod:`.logins`).  When the link ends, every call's flow is stopped
        at once (none may go on with the closed session), the first reconnect goes out within
        ~0.1 s, then with capped, jittered back-off (:func:`reconnect_delay`); once connected,
        the calls Asterisk kept are resumed from their persisted step."""
        cfg = self.config.ari
        attempt, first = 0, True
        refusals = LoginFailures("ARI", cfg.username, cfg.max_login_failures)
        while True:
            runner: asyncio.Future[None] | None = None
            try:
                if self.instances is not None:
                    await self.instances.acquire_own()  # never register an application a survivor still empties
                self.ari = await AriSession.connect(cfg.url, cfg.username, cfg.password, cfg.registered_app)
                self.ari.on_any_event(self.route_event)
                runner = asyncio.ensure_future(self.ari.run())
                await self.ari.wait_registered(runner)
                await self.ari.allow_only_events(FLOW_EVENTS + (["CallBroadcast"] if self.instances else []))
                self.connected.set()
                event(log, "ari.connected", url=cfg.url, app=cfg.registered_app, attempt=attempt)
                attempt = 0
                refusals.succeeded()
                await self.resume_kept_channels(first_connection=first)
                first = False
                await runner
                event(log, "ari.disconnected", logging.WARNING)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unauthorised(exc):  # a network fault: keep retrying
                    event(log, "ari.connect_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300],
                          attempt=attempt)
                elif (refused := refusals.refused(f"HTTP 401 from {cfg.url}")) is not None:
                    raise refused from None
            finally:
                self.connected.clear()
                await self.restart_interrupted_flows()  # before anything else: no flow keeps the old session
                if runner is not None and not runner.done():
                    runner.cancel()
                if runner is not None:
                    await asyncio.gather(runner, return_exceptions=True)
                if self.ari is not None:
                    await self.ari.close()
            await asyncio.sleep(reconnect_delay(attempt, cfg.reconnect_max_seconds))
            attempt += 1

    # ------------------------------------------------------------- events
    def route_event(self, ev: dict[str, Any]) -> None:
        """Called by aioari for every event: route only, never block."""
        kind = ev.get("type")
        channel_id = channel_id_of(ev)
        if self.callbacks is not None and self.callbacks.route(ev, channel_id):
            return  # a call-back channel (ari_app/callback.py)
        if kind == "ApplicationReplaced" and self.ari is not None:
            self._spawn(self._taken_over(self.ari))
            return
        if kind == "CallBroadcast":  # a new call offered to every instance (ari_app/instances.py)
            if self.instances is not None and self.ari is not None and channel_id is not None:
                self._spawn(self.instances.claim(self.ari, channel_id))
            return
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
            if getattr(flow, "outcome", None) not in ("handed_off", "failed"):
                # the hand-off did not happen (hang-up during it: the AMI Hangup may have come
                # before expect_handoff), so no Hangup will ever clear these.  (A failed call is
                # handed to the dialplan all the same: its Hangup writes when it ended.)
                self.handed_off.pop(flow.channel_id, None)
                self._hangup_causes.pop(flow.channel_id, None)
            if self.metrics is not None and isinstance(flow, CallFlow):
                self.metrics.process.observe_call(flow.timings)
            if self.on_flow_done is not None:
                self.on_flow_done(flow)
        if getattr(flow, "link_lost", False):
            # interrupted like the flows a reconnect stops: its last request (the hand-off
            # itself, maybe) may have been carried out though its answer was lost
            self._interrupted.add(flow.channel_id)
            self._spawn(self._resume_after_link_error(flow.channel_id))

    async def _resume_after_link_error(self, channel_id: str) -> None:
        """A request of this call met a broken link while the events WebSocket looked up:
        once connected, resume the call if it is still in our application, else settle it as
        a reconnect would (handed off, if the lost request was the hand-off; ended, if gone).
        A reconnect in between does this first."""
        await asyncio.sleep(0.1)
        await self.connected.wait()
        if channel_id in self.tasks or self.ari is None:
            return
        try:
            kept = set(await self.ari.application_channel_ids())
            channel = await self.ari.get_channel(channel_id) if channel_id in kept else None
            if channel is None:
                self._interrupted.add(channel_id)  # (a reconnect meanwhile has settled it: then a no-op)
                await self.settle_unfinished(kept, only=channel_id)
                self._interrupted.discard(channel_id)
                return
        except Exception as exc:  # the link is still broken: the reconnect resumes it
            event(log, "call.resume_deferred", channel=channel_id, error=type(exc).__name__)
            return
        if channel_id not in self.tasks:
            event(log, "call.resuming", channel=channel_id)
            self._start_flow({"type": "StasisStart", "channel": channel, "args": [], "resumed": True})

    def _services(self) -> Services:
        assert self.ari is not None and self.recorder is not None and self.sender is not None
        return Services(config=self.config, db=self.db, ari=self.ari, recorder=self.recorder,
                        prompts=self.prompts, wake_sms=self.sender.wake, clock=self.clock,
                        expect_handoff=self.expect_handoff, journal=self.journal,
                        replay=self.replayer.replay_within if self.replayer is not None else None)

    async def _taken_over(self, session: AriSession) -> None:
        """Another process registered our ARI application (a second instance with the same
        ``[ari] app``): our calls' events now go to it, and it resumes them from their persisted
        step, as after a drop.  Our flows stop now (two processes must never drive one call);
        once Asterisk no longer has the application (that process stopped: Asterisk then
        destroys it and our WebSocket would stay deaf) we reconnect, which registers it again."""
        event(log, "ari.application_replaced", logging.ERROR, app=self.config.ari.registered_app,
              hint="another process connected with the same [ari] app; calls go to it until it stops")
        await self.restart_interrupted_flows()
        while self.ari is session:
            await asyncio.sleep(self.replaced_check_seconds)
            try:
                if self.ari is not session or await session.is_registered():
                    continue
            except Exception:  # the link itself broke: the run loop reconnects anyway
                return
            event(log, "ari.application_free", logging.WARNING, app=self.config.ari.registered_app)
            await session.close()  # run() sees the WebSocket end and reconnects
            return

    async def _lease_lost(self) -> None:
        """Our lease was taken over (we were stalled longer than ``[ari] lease_seconds``): a
        survivor moves our calls; stop our flows now and register again once it is done."""
        await self.restart_interrupted_flows()
        if self.ari is not None:
            await self.ari.close()  # run() sees the WebSocket end; acquire_own() waits for the lease

    async def _took_over(self, dead_app: str, moved: set[str]) -> None:
        """We moved a dead instance's calls into our application (their StasisStart resumes
        them): its other unfinished calls are ours now too -- the handed-off ones to watch until
        they hang up, the ones Asterisk no longer has to settle."""
        await self.settle_unfinished(moved | set(self.tasks), first_connection=True, apps={dead_app})

    # ------------------------------------------------------------ resume
    async def restart_interrupted_flows(self) -> None:
        """Flows that were running when ARI dropped hold its closed session and may miss
        events (a playback that finishes while we are away): stop them all at once, before
        reconnecting; resume_kept_channels() restarts each from its persisted step."""
        tasks = list(self.tasks.values())
        self._interrupted |= set(self.tasks)  # until the next connection has settled them
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def resume_kept_channels(self, first_connection: bool = False) -> None:
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
        await self.settle_unfinished(kept, first_connection=first_connection)
        self._interrupted.clear()
        await settle_unfinished_ivr(self.db, self.ari, kept | set(self.tasks), self.clock)

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
