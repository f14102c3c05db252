"""One call's compliance flow, step by step, each outcome persisted -- for both transports.

    consent → [language menu] → protocol → read aloud → SMS (outbox, same transaction) → record → hand off

Read :meth:`CallFlow.run` top to bottom: that is the order a caller lives through.
Every step writes its outcome to the call row before the next one starts, so a
hang-up at any point leaves a truthful record (the ``status`` column says how far
the call got), and a flow run again on the same channel (ARI reconnect, AGI split
steps) skips what is already done.  The channel is a :class:`~.port.CallPort`:
the ARI application and the AGI script only translate it.

``step`` runs one step alone (the AGI split-step mode, ``dialplan/callproof-agi.conf``):
the call row carries the state between the steps, and a step that is not the
hand-off ends with ``CALLPROOF_STATUS=ok``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from callproof.call_identity import (
    CPF_VARIABLE,
    CUSTOMER_CODE_VARIABLE,
    CallIdentity,
    capture_wanted,
    hash_call_identity,
)
from callproof.config import Config
from callproof.logs import event
from callproof.numbers import normalise_caller
from callproof.prompts import PromptCatalogue
from callproof.storage import Database, NewCall
from callproof.storage.call_status import CallStatus, step_done
from callproof.storage.journal import Journal
from callproof.store import node_name

from . import decisions, endings, resume
from .call_store import CallStore
from .decisions import iso
from .language_menu import DONE as MENU_DONE
from .language_menu import MenuOutcome, offer_menu
from .port import UNKNOWN_ROW, CallerHungUp, CallPort, LinkLost, finish_before_cancel
from .reasons import (
    PROTOCOL_VARIABLE,
    REASON_VARIABLE,
    RECORDING_VARIABLE,
    STATUS_VARIABLE,
    DialplanStatus,
    Reason,
    StepFailed,
    reason_for,
)
from .recording_start import RecordingStart, Started
from .timings import CallTimings

S = CallStatus
T = TypeVar("T")


class Step(StrEnum):
    ALL = "all"
    CONSENT = "consent"
    PROTOCOL = "protocol"
    READ = "read"
    RECORD = "record"
    HANDOFF = "handoff"
    FINALISE = "finalise"  # the AGI hangup handler (endings.finalise), not a step of run()


@dataclass
class FlowDeps:
    """What a call flow needs besides its channel."""

    config: Config
    db: Database
    prompts: PromptCatalogue
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    wake_sms: Callable[[], None] = lambda: None  # an SMS was queued (the ARI app's sender)
    journal: Journal | None = None  # where writes wait while storage is unavailable (call_store.py)
    replay: Callable[[float], Awaitable[object]] | None = None  # the process's journal replay, bounded


class CallFlow:
    def __init__(self, deps: FlowDeps, port: CallPort, *, step: Step = Step.ALL,
                 timings: CallTimings | None = None, log: logging.Logger | None = None, event_prefix: str = ""):
        self.d, self.port, self.step = deps, port, step
        self.log = log or logging.getLogger("callproof.flow")
        self.ev = event_prefix  # 'agi.' on the AGI paths: their log lines keep their names
        self.channel_id = port.facts.channel_id
        self.call_id: int | None = None
        self.status: CallStatus | None = None
        self.protocol: str | None = None
        self.language = deps.config.general.default_language
        self.caller_raw = ""
        self.dialled = ""
        self.started_at = deps.clock()
        self.recording: Path | None = None
        self.sms_state: str | None = None
        self.outcome: str | None = None
        self.link_lost = False  # ended by LinkLost: the application resumes the call
        self.resumed: dict | None = None  # the row found by enter(): where a resumed call stands
        self.timings = timings or CallTimings()
        self.store = CallStore(deps.db, deps.journal, deps.config.storage.call_wait_seconds, self.channel_id,
                               replay=deps.replay)
        self.recorder = RecordingStart(deps.config, self.store, port, deps.clock, self.timings, self._event)

    @property
    def row_id(self) -> int:
        """The call's row id: every step after enter() writes to that row."""
        if self.call_id is None:
            raise StepFailed(Reason.NO_CALL, "no call row yet: enter() comes first")
        return self.call_id

    def _event(self, name: str, level: int = logging.INFO, **fields: object) -> None:
        event(self.log, self.ev + name, level, channel=self.channel_id, **fields)

    def _runs(self, step: Step) -> bool:
        return self.step in (Step.ALL, step)

    # ------------------------------------------------------------------ run
    async def run(self) -> str:
        """Run the step(s); returns the outcome (never raises, except cancellation)."""
        try:
            await self.enter()
            if self._runs(Step.CONSENT):
                await self.play_consent()
                await self.language_menu()
            if self._runs(Step.PROTOCOL):
                await self.allocate_protocol()
            if self._runs(Step.READ):
                await self.read_protocol()
            if self._runs(Step.RECORD):
                await self.start_recording()
            if self._runs(Step.HANDOFF):
                await self.hand_off()
            else:
                await self.port.set_variable(STATUS_VARIABLE, DialplanStatus.OK)
                self.outcome = "ok"
        except CallerHungUp as exc:
            await self.caller_left(str(exc))
        except asyncio.CancelledError:
            # The application is stopping or lost ARI: leave the persisted step as it is,
            # so the next connection resumes this call from there.
            self._event("call.interrupted", protocol=self.protocol, status=self.status)
            raise
        except LinkLost as exc:
            # The same, seen from a request: the link broke, not the call.
            self.link_lost = True
            self._event("call.interrupted", protocol=self.protocol, status=self.status, error=str(exc)[:200])
            return "interrupted"
        except Exception as exc:
            await self.fail(exc)
        return self.outcome or "ok"

    # ---------------------------------------------------------------- steps
    async def enter(self) -> None:
        """Load the call row (a resumed call, a later split step) or create it."""
        existing = await self.store.existing()
        node = node_name(self.d.config)
        if existing is not None and existing.get("node") not in (None, node):
            # Asterisk's channel ids are unique per Asterisk: another node's Asterisk gave this id
            # too.  Taking its row for a resumed call of ours would skip the announcement.
            self._event("call.channel_id_taken", logging.ERROR, node=node, row_node=existing["node"],
                        hint="give each node's Asterisk its own systemname in asterisk.conf"
                             " (docs/scale-out.md#node-names-and-channel-ids)")
            raise StepFailed(Reason.CHANNEL_ID_TAKEN, "this channel id is a call of another node")
        if existing is not None:
            self.call_id, self.status = existing["id"], CallStatus(existing["status"])
            self.store.call_id = self.call_id
            self.protocol, self.language = existing["protocol"], existing["language"]
            self.caller_raw = existing["caller_number_raw"] or ""
            self.dialled = existing["dialled_number"] or ""
            self.started_at = datetime.fromisoformat(existing["started_at"])
            self.resumed = existing
            self._event("call.resumed", protocol=self.protocol, status=self.status)
            return
        if self.step not in (Step.ALL, Step.CONSENT):
            raise StepFailed(Reason.CONSENT_REQUIRED, f"step {self.step!r} before the consent step on this call")
        if not self.channel_id:
            raise StepFailed(Reason.INTERNAL_ERROR, "the channel has no unique id")
        facts, cfg = self.port.facts, self.d.config
        caller = await self.port.caller_id()
        self.caller_raw, self.dialled = caller.number, facts.dialled
        choice = decisions.choose_language(cfg, self.d.prompts, facts)
        self.language = choice.language
        number = normalise_caller(caller.number, cfg.general.phone_region)
        # The row, the answer and the identity variables together: consent playback must start fast.
        created, answered, identity = await asyncio.gather(
            self._marked("row_written", self.store.create(NewCall(
                channel_id=self.channel_id, uniqueid=self.channel_id, linkedid=facts.linkedid,
                caller_number_raw=caller.number, caller_number=number.e164, caller_name=caller.name,
                dialled_number=facts.dialled, language=self.language, started_at=iso(self.started_at),
                served_by=facts.served_by or None, language_source=choice.source,
                ari_app=facts.ari_app or None, node=node))),
            self._marked("answered", self.port.answer()), self._captured_identity(), return_exceptions=True)
        if isinstance(created, BaseException):
            raise created
        self.call_id, self.status = created, S.CONSENT_PLAYING
        # a hang-up while answering ends the call just created
        if isinstance(answered, BaseException):
            raise answered
        if isinstance(identity, BaseException):
            raise identity
        if identity:
            await self.store.identity({"cpf_hash": identity.cpf_hash,
                                       "customer_code_hash": identity.customer_code_hash})
        self._event("call.entered", call_id=self.call_id, language=self.language, language_source=choice.source,
                    served_by=facts.served_by)

    async def _marked(self, mark: str, step: Awaitable[T]) -> T:
        """``step``, with the time it was done among the call's timings (call.timings)."""
        try:
            return await step
        finally:
            self.timings.mark(mark)

    async def _captured_identity(self) -> CallIdentity:
        """CALLPROOF_CPF / CALLPROOF_CUSTOMER_CODE set by the dialplan, as keyed hashes
        (callproof/call_identity.py); nothing is read without [rights] identity_key."""
        if not capture_wanted(self.d.config):
            return CallIdentity()
        try:
            cpf, code = await asyncio.gather(self.port.get_variable(CPF_VARIABLE),
                                             self.port.get_variable(CUSTOMER_CODE_VARIABLE))
        except (CallerHungUp, LinkLost):
            raise
        except Exception as exc:  # best effort: the call goes on without them
            self._event("call.identity_unreadable", logging.WARNING, error=str(exc))
            return CallIdentity()
        return hash_call_identity(self.d.config, cpf=cpf, customer_code=code, channel=self.channel_id)

    def _was(self, column: str) -> object:
        """A column of the row a resumed call found (None for a new call)."""
        return None if self.resumed is None else self.resumed.get(column)

    async def play_consent(self) -> None:
        """The recording announcement, in full, before anything else. Keys do not skip it.

        A resumed call (ARI came back) never hears it again once it finished: a playback
        Asterisk accepted (its id is stored) is followed to its end, or found finished;
        only one whose request was never acknowledged is played again, from the start."""
        if step_done(self.status, S.CONSENT_PLAYING) or self._was("consent_outcome") == "finished":
            return
        store, clock = self.store, self.d.clock
        followed = str(self._was("consent_playback_id") or "")
        try:
            if followed:
                heard = await self.port.follow_playback(followed, "consent")
                self._event("consent.followed", playback=followed,
                            seen="finished" if heard else "ended while the link was down")
            else:
                await self._play_consent_anew()
        except CallerHungUp:
            await store.update(consent_outcome="caller_left", consent_finished_at=iso(clock()))
            raise
        await store.update(consent_outcome="finished", consent_finished_at=iso(clock()))
        self._event("consent.finished", prompt=self._was("consent_prompt") or "consent")

    async def language_menu(self) -> None:
        """The language menu, when the DID has one ([languages] menu / menu_by_did), after the
        announcement and before the protocol: the protocol, its reading and its SMS are in
        the language chosen.  Its outcome is on the row before anything else is played, so
        a resumed call never hears the menu again once it ended (callflow/language_menu.py)."""
        if step_done(self.status, S.CONSENT_PLAYING) or self._was("language_menu") in MENU_DONE:
            return
        options = decisions.menu_for(self.d.config, self.dialled)
        if not options:
            return
        lc = self.d.config.languages
        try:
            result = await offer_menu(self.port, self.d.prompts, options, self.language,
                                      timeout=lc.menu_timeout_seconds, repeats=lc.menu_repeats)
        except CallerHungUp:
            await self.store.update(language_menu=MenuOutcome.CALLER_LEFT, language_chosen_at=iso(self.d.clock()))
            self._event("language.menu_left")
            raise
        changes: dict[str, object] = {"language_menu": result.outcome, "language_chosen_at": iso(self.d.clock())}
        if result.outcome is MenuOutcome.CHOSEN:
            self.language = result.language
            changes.update(language=result.language, language_source="menu")
        await self.store.update(**changes)
        self.timings.mark("language_chosen")
        self._event("language.menu", outcome=result.outcome, language=self.language, rounds=result.rounds)

    async def _play_consent_anew(self) -> None:
        prompt = self.d.prompts.prompt("consent", self.language)
        if self._was("consent_started_at"):
            self._event("consent.restarted", logging.WARNING, why="the play request was never acknowledged")
        await self.store.update(consent_prompt=prompt.name, consent_language=prompt.language,
                                consent_sha256=prompt.sha256, consent_started_at=iso(self.d.clock()))
        self.timings.mark("consent_requested")

        async def accepted(playback_id: str) -> None:
            await self.store.update(consent_playback_id=playback_id)

        await self.port.play([prompt.media], "consent", on_accepted=accepted)

    async def allocate_protocol(self) -> None:
        """Protocol number and its SMS outbox row, in one transaction."""
        if self.protocol is None:
            if self.status is not S.CONSENT_PLAYING:
                raise StepFailed(Reason.CONSENT_REQUIRED, f"call is {self.status!r}; no protocol without consent")
            cfg = self.d.config
            draft = decisions.sms_draft(cfg, self.language, self.caller_raw, self.started_at)
            result = await self.store.allocate(year=decisions.protocol_year(cfg, self.started_at),
                                               allocated_at=iso(self.d.clock()), sms=draft)
            self.call_id = self.store.call_id
            self.protocol, self.sms_state, self.status = result.protocol, result.sms_state, S.PROTOCOL_READING
            self.timings.mark("protocol_allocated")
            if result.sms_state == "pending":
                self.d.wake_sms()
            self._event("protocol.allocated", protocol=self.protocol, sms=result.sms_state)
        if self.step is Step.PROTOCOL:  # run alone: the dialplan wants the number now
            await self.port.set_variable(PROTOCOL_VARIABLE, self.protocol)

    async def read_protocol(self) -> None:
        """'Your protocol number is' + grouped digits, 1 + repeat times; the replay key
        earns one more reading (at most max_replays): pressed during a reading where the
        transport hears it, or within the replay window after the last one."""
        if self.protocol is None:
            raise StepFailed(Reason.NO_CALL, "no protocol allocated on this call yet")
        if step_done(self.status, S.PROTOCOL_READING):
            return
        cfg, store = self.d.config.protocol_reading, self.store
        media = self.d.prompts.protocol_reading_media(self.language, self.protocol, cfg.groups)
        # A resumed call goes on from the readings already counted, with the replays earned.
        readings = int(str(self._was("protocol_read_count") or 0))
        replays = int(str(self._was("protocol_replays") or 0))
        wanted, key = 1 + cfg.repeat + replays, cfg.replay_key
        followed = str(self._was("protocol_playback_id") or "")
        self.port.take_digits()  # keys pressed during the announcement do not count
        if self.step is Step.ALL and self._was("status") == S.PROTOCOL_READING and not followed \
                and readings < wanted:  # a resumed whole call (a split AGI step starts its reading afresh)
            # Reading readings + 1 may have been requested, never acknowledged: it starts again.
            self._event("protocol.reading_restarted", logging.WARNING, protocol=self.protocol, reading=readings + 1)

        async def accepted(playback_id: str) -> None:
            await store.update(protocol_playback_id=playback_id)

        while readings < wanted:
            if followed:  # reading readings + 1 was accepted before the link broke
                heard = await self.port.follow_playback(followed, "protocol")
                self._event("protocol.reading_followed", protocol=self.protocol, reading=readings + 1,
                            seen="finished" if heard else "ended while the link was down")
                followed = ""
            else:
                await self.port.play(media, "protocol", on_accepted=accepted)
            readings += 1
            await store.update(protocol_read_count=readings, protocol_playback_id=None)
            asked = bool(key) and key in self.port.take_digits()
            if not asked and readings == wanted and key and cfg.replay_window_ms and replays < cfg.max_replays:
                asked = await self.port.wait_for_digit(key, cfg.replay_window_ms / 1000)
            if asked and replays < cfg.max_replays:
                replays += 1
                wanted += 1
                await store.update(protocol_replays=replays)
        self.timings.mark("protocol_read")
        self.status = S.PROTOCOL_GIVEN
        await store.update(status=S.PROTOCOL_GIVEN, protocol_read_finished_at=iso(self.d.clock()))
        self._event("protocol.read", protocol=self.protocol, readings=readings)

    async def start_recording(self) -> None:
        """MixMonitor into the tagged, sanitised file name; a failure is written down and
        the caller still reaches an agent (CALLPROOF_STATUS=recording_failed)."""
        if self.status in (S.RECORDING, S.HANDED_OFF):
            self.recording = await self._started_recording()
            return
        if self.status is not S.PROTOCOL_GIVEN or self.protocol is None:
            raise StepFailed(Reason.NO_CALL, f"call is {self.status!r}; record after the protocol was read")
        pending = None if self.resumed is None else resume.unfinished_recording(await self.store.recordings() or [])
        if pending is not None:  # resumed: MixMonitor may run already; never a second row
            path = Path(pending["path"])
            adopt = await resume.mixmonitor_runs_on(self.port, path)
            await self._recording_on(await self.recorder.on_row(pending["id"], path, pending["started_at"],
                                                                self.protocol, adopt=adopt))
            return
        # MixMonitor started and the row saying so, or neither: finished even if ARI drops meanwhile.
        await finish_before_cancel(self._record())

    async def _record(self) -> None:
        assert self.protocol is not None
        await self._recording_on(await self.recorder.new(self.protocol, self.caller_raw, self.dialled))

    async def _recording_on(self, started: Started | None) -> None:
        if started is not None:
            self.recording, self.status = started.path, S.RECORDING
            await self.store.update(status=S.RECORDING, recording_started_at=started.started_at)

    async def _started_recording(self) -> Path | None:
        rows = await self.store.recordings()
        if rows is None:  # storage cannot say: what this flow started, if it did
            return self.recording
        return Path(rows[-1]["path"]) if rows and rows[-1]["state"] != "failed" else None

    async def hand_off(self) -> None:
        """The channel variables the agents' context reads, then on to it."""
        if self.protocol is None or self.status not in (S.PROTOCOL_GIVEN, S.RECORDING, S.HANDED_OFF):
            raise StepFailed(Reason.NO_CALL, f"hand-off of a call that is {self.status!r}")
        if self.recording is None and self.status in (S.RECORDING, S.HANDED_OFF):
            self.recording = await self._started_recording()
        await self.port.set_variable(PROTOCOL_VARIABLE, self.protocol)
        await self.port.set_variable(RECORDING_VARIABLE, str(self.recording or ""))
        if self.recording:
            await self.port.set_variable(STATUS_VARIABLE, DialplanStatus.OK)
        else:
            await self.port.set_variable(STATUS_VARIABLE, DialplanStatus.RECORDING_FAILED)
            await self.port.set_variable(REASON_VARIABLE, Reason.RECORDING_NOT_STARTED)
        await self.port.hand_off(self._watched_row())
        self.status = S.HANDED_OFF
        self.timings.mark("handed_off")
        await self.store.update(status=S.HANDED_OFF, handed_off_at=iso(self.d.clock()))
        self.outcome = "handed_off"
        h = self.d.config.handoff
        self._event("call.handed_off", protocol=self.protocol, context=h.context, recorded=self.recording is not None)

    # ------------------------------------------------------------ endings
    async def caller_left(self, description: str) -> None:
        self.outcome = "caller_left"
        if (self.call_id is None and not self.store.journalled) or self.status is None:
            return
        try:
            cause = await self.port.hangup_cause()
            status = await endings.caller_left(self.store, self.d.config, self.status,
                                               description=description, cause=cause, now=self.d.clock())
        except Exception:
            self.log.exception("could not record the hang-up")
            return
        self.status, self.outcome = status, status
        self._event("call.caller_left", protocol=self.protocol, status=status, cause=description)

    async def fail(self, exc: Exception) -> None:
        """Record the failure and still get the caller to a human (never leave them in silence)."""
        reason = reason_for(exc)
        self.outcome = "failed"
        if reason is Reason.INTERNAL_ERROR:
            self.log.exception("call flow failed", extra={"fields": {"channel": self.channel_id}})
        self._event("call.failed", logging.ERROR, step=self.step, reason=reason, error=str(exc)[:500])
        await endings.record_failure(self.store, reason, exc)
        await self._record_regardless()
        await endings.tell_dialplan_failed(self.port, reason, self.protocol, self._watched_row(),
                                           recording=self.recording)

    async def _record_regardless(self) -> None:
        """A call that has its protocol goes to the agents recorded, even when a step failed."""
        if self.protocol is None or self.recording is not None or not self._runs(Step.RECORD):
            return
        if self.status in (S.RECORDING, S.HANDED_OFF):
            return
        try:
            started = await self.recorder.new(self.protocol, self.caller_raw, self.dialled)
            self.recording = started.path if started else None
        except Exception as exc:  # the hand-off must still happen
            self._event("recording.not_started", logging.ERROR, protocol=self.protocol, error=str(exc)[:200])

    def _watched_row(self) -> int | None:
        """What the port watches after the hand-off: the row id, UNKNOWN_ROW while the row
        waits in the journal, None when there is no row at all."""
        if self.call_id is not None:
            return self.call_id
        return UNKNOWN_ROW if self.store.journalled else None
