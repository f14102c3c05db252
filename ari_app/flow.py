"""One call's compliance flow, step by step, each outcome persisted.

    consent → protocol → read aloud → SMS (outbox, same transaction) → record → hand off

Read :meth:`CallFlow.run` top to bottom: that is the order a caller lives
through.  Every step writes its outcome to the call row before the next one
starts, so a hang-up at any point leaves a truthful record (the ``status``
column says how far the call got), and a flow resumed after an ARI reconnect
skips what is already done.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from callproof import callsteps
from callproof.call_identity import (CPF_VARIABLE, CUSTOMER_CODE_VARIABLE, CallIdentity, capture_wanted,
                                    hash_call_identity)
from callproof.callsteps import iso
from callproof.config import Config
from callproof.logs import event
from callproof.numbers import normalise_caller
from callproof.prompts import PromptCatalogue
from callproof.storage import NewCall
from callproof.storage.retention import RetentionChoice, choose_class, retention_until

from .ari import AriError, AriSession, ChannelGone
from .call_events import CallerHungUp, CallInbox
from .callback import record_call_end
from .recorder import Recorder, RecordingError

log = logging.getLogger("callproof.flow")

# Status a call is left in when the caller hangs up during a step.
ABANDONED_IN = {
    "consent_playing": "abandoned_in_consent",
    "protocol_reading": "abandoned_in_protocol",
}
# Order of progress, to resume a call from its persisted step.
PROGRESS = ["consent_playing", "protocol_reading", "protocol_given", "recording", "handed_off"]


class PlaybackFailed(Exception):
    """Asterisk could not play a prompt (missing or unreadable file)."""


@dataclass
class Services:
    """What a call flow needs from the running application."""

    config: Config
    db: Any
    ari: AriSession
    recorder: Recorder
    prompts: PromptCatalogue
    wake_sms: Callable[[], None]
    expect_handoff: Callable[[str, int], None] = lambda channel_id, call_id: None
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


@dataclass
class CallTimings:
    """Monotonic milestones (seconds) for logs, the demo and the benchmark."""

    marks: dict[str, float] = field(default_factory=dict)
    # Asterisk's own timestamps of key events (ISO strings, millisecond precision).
    asterisk: dict[str, str] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.monotonic())

    def relative_ms(self) -> dict[str, float]:
        start = self.marks.get("stasis_start", 0.0)
        return {f"{k}_ms": round((v - start) * 1000, 1) for k, v in self.marks.items() if k != "stasis_start"}

    def between_ms(self, start: str, end: str) -> float | None:
        if start in self.marks and end in self.marks:
            return round((self.marks[end] - self.marks[start]) * 1000, 1)
        return None


class CallFlow:
    def __init__(self, services: Services, inbox: CallInbox, start_event: dict[str, Any]):
        self.s = services
        self.inbox = inbox
        self.channel: dict[str, Any] = start_event["channel"]
        self.args: list[str] = list(start_event.get("args") or [])
        self.channel_id: str = self.channel["id"]
        self.call_id: int | None = None
        self.status: str | None = None
        self.protocol: str | None = None
        self.language: str = services.config.general.default_language
        self.started_at: datetime = services.clock()
        self.recording: Path | None = None
        self.sms_state: str | None = None
        self.timings = CallTimings()
        self.timings.mark("stasis_start")
        if "timestamp" in start_event:
            self.timings.asterisk["stasis_start"] = start_event["timestamp"]
        self.outcome: str | None = None

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        try:
            await self.enter()
            await self.play_consent()
            await self.allocate_protocol()
            await self.read_protocol()
            await self.start_recording()
            await self.hand_off()
        except (CallerHungUp, ChannelGone) as exc:
            await self.caller_left(getattr(exc, "cause", None) or str(exc))
        except asyncio.CancelledError:
            # The application is stopping or lost ARI: leave the persisted step as it is,
            # so the next connection resumes this call from there.
            event(log, "call.interrupted", channel=self.channel_id, protocol=self.protocol, status=self.status)
            raise
        except Exception as exc:
            log.exception("call flow failed", extra={"fields": {"channel": self.channel_id, "protocol": self.protocol}})
            await self.fail(exc)
        finally:
            event(log, "call.timings", channel=self.channel_id, protocol=self.protocol, outcome=self.outcome,
                  asterisk=self.timings.asterisk, **self.timings.relative_ms())

    # ---------------------------------------------------------------- steps
    async def enter(self) -> None:
        """Create (or, after a reconnect, load) the call row."""
        existing = await self.s.db.calls.get_by_channel(self.channel_id)
        if existing is not None:
            self.call_id, self.status = existing["id"], existing["status"]
            self.protocol, self.language = existing["protocol"], existing["language"]
            self.started_at = datetime.fromisoformat(existing["started_at"])
            event(log, "call.resumed", channel=self.channel_id, protocol=self.protocol, status=self.status)
            return
        caller = self.channel.get("caller") or {}
        raw_number = str(caller.get("number") or "")
        self.language = self.choose_language()
        dialled = self.args[0] if self.args else str((self.channel.get("dialplan") or {}).get("exten", ""))
        linkedid = self.args[1] if len(self.args) > 1 else self.channel_id
        number = normalise_caller(raw_number, self.s.config.general.phone_region)
        answer = self._answer_if_needed()
        # The row, the answer and the identity variables go in parallel: consent playback must start fast.
        self.call_id, _, identity = await asyncio.gather(
            self.s.db.calls.create(NewCall(
                channel_id=self.channel_id, uniqueid=self.channel_id, linkedid=linkedid,
                caller_number_raw=raw_number, caller_number=number.e164,
                caller_name=str(caller.get("name") or ""), dialled_number=dialled,
                language=self.language, started_at=iso(self.started_at))),
            answer,
            self._captured_identity(),
        )
        if identity:
            await self.s.db.calls.set_identity_hashes(self.call_id, cpf_hash=identity.cpf_hash,
                                                      customer_code_hash=identity.customer_code_hash)
        self.status = "consent_playing"
        event(log, "call.entered", channel=self.channel_id, call_id=self.call_id, language=self.language)

    async def _captured_identity(self) -> CallIdentity:
        """CALLPROOF_CPF / CALLPROOF_CUSTOMER_CODE set by the dialplan, as keyed hashes
        (callproof/call_identity.py); nothing is read without [rights] identity_key."""
        if not capture_wanted(self.s.config):
            return CallIdentity()
        try:
            cpf, code = await asyncio.gather(self.s.ari.get_variable(self.channel_id, CPF_VARIABLE),
                                             self.s.ari.get_variable(self.channel_id, CUSTOMER_CODE_VARIABLE))
        except AriError as exc:  # best effort: the call goes on without them
            event(log, "call.identity_unreadable", logging.WARNING, channel=self.channel_id, error=str(exc))
            return CallIdentity()
        return hash_call_identity(self.s.config, cpf=cpf, customer_code=code, channel=self.channel_id)

    def choose_language(self) -> str:
        """The dialplan's CALLPROOF_LANGUAGE (third Stasis argument) if set, else the
        channel's language when configured to trust it, else the default language.

        Asterisk reports "en" for every channel whose language was never set, so the
        channel language is only used when ``general.use_channel_language`` says so.
        """
        asked = self.args[2] if len(self.args) > 2 else ""
        return callsteps.choose_language(self.s.config, self.s.prompts, asked, self.channel.get("language"))

    async def _answer_if_needed(self) -> None:
        if self.channel.get("state") != "Up":
            await self.s.ari.answer(self.channel_id)

    async def play_consent(self) -> None:
        """The recording announcement, in full, before anything else. DTMF does not skip it."""
        if self._done("consent_playing"):
            return
        prompt = self.s.prompts.prompt("consent", self.language)
        started = iso(self.s.clock())
        await self.s.db.calls.update(self.call_id, consent_prompt=prompt.name, consent_language=prompt.language,
                                     consent_sha256=prompt.sha256, consent_started_at=started)
        self.timings.mark("consent_requested")
        try:
            await self._play([prompt.media], "consent")
        except (CallerHungUp, ChannelGone):
            await self.s.db.calls.update(self.call_id, consent_outcome="caller_left",
                                         consent_finished_at=iso(self.s.clock()))
            raise
        await self.s.db.calls.update(self.call_id, consent_outcome="finished",
                                     consent_finished_at=iso(self.s.clock()))
        event(log, "consent.finished", channel=self.channel_id, prompt=prompt.name, sha256=prompt.sha256)

    async def allocate_protocol(self) -> None:
        """Protocol number and its SMS outbox row, in one transaction."""
        if self.protocol is not None:
            return
        cfg = self.s.config
        caller = (self.channel.get("caller") or {}).get("number")
        year = callsteps.protocol_year(cfg, self.started_at)
        draft = callsteps.sms_draft(cfg, self.language, caller, self.started_at)
        result = await self.s.db.protocols.allocate_for_call(self.call_id, year=year,
                                                             allocated_at=iso(self.s.clock()), sms=draft)
        self.protocol, self.sms_state, self.status = result.protocol, result.sms_state, "protocol_reading"
        self.timings.mark("protocol_allocated")
        if result.sms_state == "pending":
            self.s.wake_sms()
        event(log, "protocol.allocated", channel=self.channel_id, protocol=self.protocol, sms=result.sms_state)

    async def read_protocol(self) -> None:
        """'Your protocol number is' + grouped digits; repeat; a key replays it."""
        if self._done("protocol_reading"):
            return
        cfg = self.s.config.protocol_reading
        media = self.s.prompts.protocol_reading_media(self.language, self.protocol, cfg.groups)
        readings, replays, wanted = 0, 0, 1 + cfg.repeat
        key = cfg.replay_key
        self.inbox.take_dtmf()
        while readings < wanted:
            await self._play(media, "protocol")
            readings += 1
            await self.s.db.calls.update(self.call_id, protocol_read_count=readings)
            asked = bool(key) and key in self.inbox.take_dtmf()
            if not asked and readings == wanted and key and cfg.replay_window_ms:
                asked = await self._replay_key_within(key, cfg.replay_window_ms / 1000)
            if asked and replays < cfg.max_replays:
                replays += 1
                wanted += 1
        self.timings.mark("protocol_read")
        self.status = "protocol_given"
        await self.s.db.calls.update(self.call_id, status="protocol_given",
                                     protocol_read_finished_at=iso(self.s.clock()))
        event(log, "protocol.read", channel=self.channel_id, protocol=self.protocol, readings=readings)

    async def _replay_key_within(self, key: str, seconds: float) -> bool:
        try:
            await self.inbox.wait_for(
                lambda e: e.get("type") == "ChannelDtmfReceived" and e.get("digit") == key, timeout=seconds)
        except TimeoutError:
            return False
        self.inbox.take_dtmf()
        return True

    async def start_recording(self) -> None:
        if self._done("protocol_given"):
            return
        target = callsteps.recording_target(self.s.config, self.protocol,
                                            (self.channel.get("caller") or {}).get("number"), self.s.clock())
        path, caller_part = target.path, target.caller_part
        started = iso(self.s.clock())
        choice = self.retention_choice()
        until = retention_until(datetime.fromisoformat(started), choice.days, self.s.config.general.tz)
        rec_id = await self.s.db.recordings.create(self.call_id, self.protocol, str(path), caller_part, started,
                                                   until, choice.retention_class)
        self.s.recorder.track(self.channel_id, rec_id, path)
        try:
            await self.s.recorder.start(self.channel["name"], self.channel_id, path)
        except RecordingError as exc:
            await self.s.db.recordings.fail(rec_id, str(exc))
            await self.s.db.calls.update(self.call_id, error=f"recording: {exc}")
            event(log, "recording.not_started", logging.ERROR, channel=self.channel_id, protocol=self.protocol,
                  error=str(exc))
            if self.inbox.ended is not None:
                raise CallerHungUp("hangup before recording started") from None
            return  # the caller still reaches an agent; the row says the call is unrecorded
        self.recording = path
        self.timings.mark("recording_started")
        self.status = "recording"
        await self.s.db.calls.update(self.call_id, status="recording", recording_started_at=started)
        event(log, "recording.started", channel=self.channel_id, protocol=self.protocol, path=str(path))

    def retention_choice(self) -> RetentionChoice:
        """Retention class from the dialplan's CALLPROOF_RETENTION_CLASS (fourth Stasis
        argument), else the [retention] rules on the DID and the entry context.  No ARI
        round trip: everything needed came with StasisStart."""
        rt = self.s.config.retention
        asked = self.args[3].strip() if len(self.args) > 3 else ""
        if asked and asked not in rt.classes:
            event(log, "retention.unknown_class", logging.WARNING, channel=self.channel_id, asked=asked[:40])
        dialplan = self.channel.get("dialplan") or {}
        did = self.args[0] if self.args else str(dialplan.get("exten", ""))
        # CALLPROOF_ENTRY_CONTEXT (fifth argument), else the context Stasis ran in.
        context = (self.args[4] if len(self.args) > 4 else "") or str(dialplan.get("context", ""))
        return choose_class(rt.classes, rt.default_class, did_classes=rt.did_classes,
                            context_classes=rt.context_classes, variable=asked, did=did, context=context)

    async def hand_off(self) -> None:
        h = self.s.config.handoff
        if self.recording is None and self.status == "recording":
            rows = await self.s.db.recordings.for_call(self.call_id)
            self.recording = Path(rows[-1]["path"]) if rows else None
        await self.s.ari.set_variable(self.channel_id, "CALLPROOF_PROTOCOL", self.protocol)
        await self.s.ari.set_variable(self.channel_id, "CALLPROOF_RECORDING", str(self.recording or ""))
        await self.s.ari.set_variable(self.channel_id, "CALLPROOF_STATUS",
                                      "ok" if self.recording else "recording_failed")
        self.s.expect_handoff(self.channel_id, self.call_id)
        await self.s.ari.continue_in_dialplan(self.channel_id, h.context, h.extension, h.priority)
        self.status = "handed_off"
        self.timings.mark("handed_off")
        await self.s.db.calls.update(self.call_id, status="handed_off", handed_off_at=iso(self.s.clock()))
        self.outcome = "handed_off"
        event(log, "call.handed_off", channel=self.channel_id, protocol=self.protocol,
              context=h.context, recording=str(self.recording or ""))

    # ------------------------------------------------------------ endings
    async def caller_left(self, cause: str) -> None:
        if self.call_id is None:
            return
        status = ABANDONED_IN.get(self.status or "", self.status)
        self.status, self.outcome = status, status
        # The end, with its Q.850 cause, and a call-back if it was a network drop (ari_app/callback.py).
        await record_call_end(self.s.db, self.s.config, self.call_id, status=status,
                              ended_at=iso(self.s.clock()), description=cause, inbox=self.inbox)
        event(log, "call.caller_left", channel=self.channel_id, protocol=self.protocol, status=status, cause=cause)

    async def fail(self, exc: Exception) -> None:
        """Record the failure and still get the caller to a human (never leave them in silence)."""
        self.outcome = "failed"
        if self.call_id is not None:
            try:
                await self.s.db.calls.update(self.call_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("could not record the failure")
        try:
            h = self.s.config.handoff
            await self.s.ari.set_variable(self.channel_id, "CALLPROOF_STATUS", "failed")
            await self.s.ari.continue_in_dialplan(self.channel_id, h.context, h.extension, h.priority)
        except Exception:
            log.warning("could not hand a failed call to the dialplan", exc_info=True)

    # ------------------------------------------------------------ helpers
    def _done(self, step_status: str) -> bool:
        """True when the persisted status shows ``step_status`` is already behind us."""
        if self.status not in PROGRESS:
            return False
        return PROGRESS.index(self.status) > PROGRESS.index(step_status)

    async def _play(self, media: list[str], what: str) -> None:
        playback_id = f"cp-{what}-{uuid.uuid4().hex}"
        await self.s.ari.play(self.channel_id, media, playback_id)
        started = await self.inbox.wait_for(
            lambda e: e.get("type") in ("PlaybackStarted", "PlaybackFinished")
            and (e.get("playback") or {}).get("id") == playback_id)
        self.timings.mark(f"{what}_playback_started")
        if "timestamp" in started:
            self.timings.asterisk.setdefault(f"{what}_playback_started", started["timestamp"])
        finished = started
        if started.get("type") != "PlaybackFinished":
            finished = await self.inbox.wait_for(
                lambda e: e.get("type") == "PlaybackFinished" and (e.get("playback") or {}).get("id") == playback_id)
        state = (finished.get("playback") or {}).get("state")
        if state != "done":
            if self.inbox.ended is not None:
                raise CallerHungUp(f"playback {state} at hangup")
            raise PlaybackFailed(f"{what} playback ended in state {state!r} (media {media[0]!r})")
        self.timings.marks[f"{what}_playback_finished"] = time.monotonic()  # the last one counts
        if "timestamp" in finished:
            self.timings.asterisk[f"{what}_playback_finished"] = finished["timestamp"]
