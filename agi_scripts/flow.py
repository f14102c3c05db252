"""The compliance flow over AGI: the same steps, rows and file names as the ARI app.

    consent → protocol (+ SMS outbox row, one transaction) → read aloud → record → hand off

Used by the classic AGI script (``agi_scripts/callproof_agi.py``, pyst2) and the
FastAGI server (``agi_scripts/fastagi.py``).  The first AGI argument names the
step: ``all`` runs the whole flow; ``consent``, ``protocol``, ``read``,
``record``, ``handoff`` run one step (the call row, keyed by the channel's
uniqueid, carries the state between them); ``finalise`` runs from the hangup
handler and measures the recording (size, duration, sha256) and closes the call.

Arguments after the step, as with ``Stasis()``: the dialled number (digits),
the linkedid, the language (empty: ``[general] default_language``), the retention
class (CALLPROOF_RETENTION_CLASS) and the entry context (CALLPROOF_ENTRY_CONTEXT).

Dialplan-friendly errors: every step ends by setting ``CALLPROOF_STATUS``
(``ok``, ``recording_failed``, ``failed``) and, when not ok,
``CALLPROOF_REASON`` (``storage_unavailable``, ``prompt_missing``,
``playback_failed``, ``no_call``, ``consent_required``, ``bad_step``,
``config_error``, ``internal_error``); the script then returns to the
dialplan, which routes the caller.  A hang-up is recorded as the ARI app
records it (``abandoned_in_consent``, ``abandoned_in_protocol``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from callproof import callsteps
from callproof.call_identity import CPF_VARIABLE, CUSTOMER_CODE_VARIABLE, capture_wanted, hash_call_identity
from callproof.callsteps import iso
from callproof.config import Config
from callproof.logs import event
from callproof.numbers import normalise_caller
from callproof.prompts import PromptCatalogue, PromptNotFoundError
from callproof.storage import NewCall, StorageError
from callproof.storage.retention import choose_class, retention_until

from .channel import AgiChannel, AgiCommandError, AgiHangup, quote

log = logging.getLogger("callproof.agi")

STEPS = ("all", "consent", "protocol", "read", "record", "handoff", "finalise")
ABANDONED_IN = {"consent_playing": "abandoned_in_consent", "protocol_reading": "abandoned_in_protocol"}
PROGRESS = ["consent_playing", "protocol_reading", "protocol_given", "recording", "handed_off"]


class StepFailed(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def strip_sound(media: str) -> str:
    """ARI media ``sound:/abs/path`` -> what Playback/STREAM FILE take (no extension)."""
    return media[len("sound:"):] if media.startswith("sound:") else media


@dataclass
class AgiTimings:
    marks: dict[str, float] = field(default_factory=dict)
    prompt_seconds: float = 0.0  # time spent in Playback (for the benchmark's overhead)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.monotonic())


class AgiFlow:
    def __init__(self, config: Config, db: Any, prompts: PromptCatalogue, channel: AgiChannel,
                 clock: Callable[[], datetime] | None = None):
        self.config, self.db, self.prompts, self.ch = config, db, prompts, channel
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        env = channel.env
        self.channel_id = env.get("agi_uniqueid", "")
        self.args = [env.get(f"agi_arg_{i}", "") for i in range(1, 7)]
        self.step = self.args[0] or "all"
        self.call: dict[str, Any] | None = None
        self.call_id: int | None = None
        self.status: str | None = None
        self.protocol: str | None = None
        self.language = config.general.default_language
        self.caller_raw = ""
        self.started_at = self.clock()
        self.recording: Path | None = None
        self.outcome: str | None = None
        self.heard: list[str] = []  # what the caller was played, in order (prompt names)
        self.timings = AgiTimings()

    # ------------------------------------------------------------------ run
    async def run(self) -> str:
        """Run the step(s) asked for; always returns (never raises) the outcome."""
        self.timings.mark("start")
        try:
            if self.step not in STEPS:
                raise StepFailed("bad_step", f"unknown step {self.step!r}; one of {', '.join(STEPS)}")
            if self.step == "finalise":
                await self.finalise()
                return self.outcome or "finalised"
            await self.load_or_enter()
            if self.step in ("all", "consent"):
                await self.play_consent()
            if self.step in ("all", "protocol"):
                await self.allocate_protocol()
            if self.step in ("all", "read"):
                await self.read_protocol()
            if self.step in ("all", "record"):
                await self.start_recording()
            if self.step in ("all", "handoff"):
                await self.hand_off()
            elif self.outcome is None:
                await self.set_var("CALLPROOF_STATUS", "ok")
                self.outcome = "ok"
        except AgiHangup as exc:
            await self.caller_left(str(exc))
        except StepFailed as exc:
            await self.fail(exc.reason, str(exc))
        except (StorageError, sqlite3.Error) as exc:
            await self.fail("storage_unavailable", f"{type(exc).__name__}: {exc}")
        except PromptNotFoundError as exc:
            await self.fail("prompt_missing", str(exc))
        except Exception as exc:
            log.exception("AGI flow failed", extra={"fields": {"channel": self.channel_id}})
            await self.fail("internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            self.timings.mark("end")
        return self.outcome or "ok"

    # ---------------------------------------------------------------- steps
    async def load_or_enter(self) -> None:
        existing = await self.db.calls.get_by_channel(self.channel_id)
        if existing is not None:
            self.call = dict(existing)
            self.call_id, self.status = existing["id"], existing["status"]
            self.protocol, self.language = existing["protocol"], existing["language"]
            self.caller_raw = existing["caller_number_raw"] or ""
            self.started_at = datetime.fromisoformat(existing["started_at"])
            return
        if self.step not in ("all", "consent"):
            raise StepFailed("consent_required", f"step {self.step!r} before the consent step on this call")
        if not self.channel_id:
            raise StepFailed("internal_error", "no agi_uniqueid in the AGI environment")
        self.caller_raw = await self.get_var("CALLERID(num)")
        caller_name = await self.get_var("CALLERID(name)")
        self.language = callsteps.choose_language(self.config, self.prompts, self.args[3],
                                                  self.ch.env.get("agi_language"))
        dialled = self.args[1] or self.ch.env.get("agi_extension", "")
        linkedid = self.args[2] or self.channel_id
        number = normalise_caller(self.caller_raw, self.config.general.phone_region)
        self.call_id = await self.db.calls.create(NewCall(
            channel_id=self.channel_id, uniqueid=self.channel_id, linkedid=linkedid,
            caller_number_raw=self.caller_raw, caller_number=number.e164, caller_name=caller_name,
            dialled_number=dialled, language=self.language, started_at=iso(self.started_at)))
        self.status = "consent_playing"
        await self.store_captured_identity()
        if (await self.ch.command("ANSWER")).failed:
            await self._check_alive()
        event(log, "agi.call.entered", channel=self.channel_id, call_id=self.call_id, language=self.language)

    async def store_captured_identity(self) -> None:
        """CALLPROOF_CPF / CALLPROOF_CUSTOMER_CODE set by the dialplan, stored as keyed
        hashes (callproof/call_identity.py); nothing is read without [rights] identity_key."""
        if not capture_wanted(self.config):
            return
        identity = hash_call_identity(self.config, cpf=await self.get_var(CPF_VARIABLE),
                                      customer_code=await self.get_var(CUSTOMER_CODE_VARIABLE),
                                      channel=self.channel_id)
        if identity:
            await self.db.calls.set_identity_hashes(self.call_id, cpf_hash=identity.cpf_hash,
                                                    customer_code_hash=identity.customer_code_hash)

    async def play_consent(self) -> None:
        """The recording announcement, in full (Playback: keys do not skip it)."""
        if self._done("consent_playing"):
            return
        prompt = self.prompts.prompt("consent", self.language)
        await self.db.calls.update(self.call_id, consent_prompt=prompt.name, consent_language=prompt.language,
                                   consent_sha256=prompt.sha256, consent_started_at=iso(self.clock()))
        try:
            await self.play([prompt.media], "consent")
        except AgiHangup:
            await self.db.calls.update(self.call_id, consent_outcome="caller_left",
                                       consent_finished_at=iso(self.clock()))
            raise
        await self.db.calls.update(self.call_id, consent_outcome="finished", consent_finished_at=iso(self.clock()))

    async def allocate_protocol(self) -> None:
        """Protocol and SMS outbox row in one transaction; CALLPROOF_PROTOCOL set at once."""
        if self.protocol is None:
            if self.status != "consent_playing":
                raise StepFailed("consent_required", f"call is {self.status!r}; no protocol without consent")
            draft = callsteps.sms_draft(self.config, self.language, self.caller_raw, self.started_at)
            result = await self.db.protocols.allocate_for_call(
                self.call_id, year=callsteps.protocol_year(self.config, self.started_at),
                allocated_at=iso(self.clock()), sms=draft)
            self.protocol, self.status = result.protocol, "protocol_reading"
            self.timings.mark("protocol_allocated")
            event(log, "agi.protocol.allocated", channel=self.channel_id, protocol=self.protocol,
                  sms=result.sms_state)
        await self.set_var("CALLPROOF_PROTOCOL", self.protocol)

    async def read_protocol(self) -> None:
        """'Your protocol number is' + grouped digits, 1 + repeat times; the replay key,
        pressed within the replay window after the last reading, earns one more."""
        if self.protocol is None:
            raise StepFailed("no_call", "no protocol allocated on this call yet")
        if self._done("protocol_reading"):
            return
        cfg = self.config.protocol_reading
        media = self.prompts.protocol_reading_media(self.language, self.protocol, cfg.groups)
        readings, replays, wanted = 0, 0, 1 + cfg.repeat
        while readings < wanted:
            await self.play(media, "protocol")
            readings += 1
            await self.db.calls.update(self.call_id, protocol_read_count=readings)
            if readings == wanted and cfg.replay_key and cfg.replay_window_ms and replays < cfg.max_replays:
                reply = await self.ch.command(f"WAIT FOR DIGIT {int(cfg.replay_window_ms)}")
                if reply.failed:
                    await self._check_alive()
                elif reply.result not in ("", "0") and chr(int(reply.result)) == cfg.replay_key:
                    replays += 1
                    wanted += 1
        self.status = "protocol_given"
        await self.db.calls.update(self.call_id, status="protocol_given", protocol_read_finished_at=iso(self.clock()))

    async def start_recording(self) -> None:
        """MixMonitor with the same tagged, sanitised file name as the ARI app."""
        if self.status == "recording" or self.status == "handed_off":
            rows = await self.db.recordings.for_call(self.call_id)
            self.recording = Path(rows[-1]["path"]) if rows and rows[-1]["state"] != "failed" else None
            return
        if self.status != "protocol_given":
            raise StepFailed("no_call", f"call is {self.status!r}; record after the protocol was read")
        target = callsteps.recording_target(self.config, self.protocol, self.caller_raw, self.clock())
        started = iso(self.clock())
        rt = self.config.retention  # same rules as the ARI app: variable > DID > entry context
        choice = choose_class(rt.classes, rt.default_class, did_classes=rt.did_classes,
                              context_classes=rt.context_classes, variable=self.args[4].strip(),
                              did=self.args[1] or (self.call or {}).get("dialled_number") or "",
                              context=self.args[5] or self.ch.env.get("agi_context", ""))
        until = retention_until(datetime.fromisoformat(started), choice.days, self.config.general.tz)
        rec_id = await self.db.recordings.create(self.call_id, self.protocol, str(target.path),
                                                 target.caller_part, started, until, choice.retention_class)
        target.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        args = str(target.path)
        if self.config.recording.mixmonitor_options:
            args += "," + self.config.recording.mixmonitor_options
        reply = await self.ch.command(f"EXEC MixMonitor {quote(args)}")
        if reply.failed:
            await self._check_alive()
        started_file = await self.get_var("MIXMONITOR_FILENAME")
        if reply.failed or started_file != str(target.path):
            error = f"MixMonitor did not start (result {reply.result}, MIXMONITOR_FILENAME {started_file!r})"
            await self.db.recordings.fail(rec_id, error)
            await self.db.calls.update(self.call_id, error=f"recording: {error}")
            event(log, "agi.recording.not_started", logging.ERROR, channel=self.channel_id, error=error)
            return  # the caller still reaches an agent; the row says the call is unrecorded
        self.recording = target.path
        self.status = "recording"
        self.timings.mark("recording_started")
        await self.db.calls.update(self.call_id, status="recording", recording_started_at=started)

    async def hand_off(self) -> None:
        if self.recording is None and self.status in ("recording", "handed_off"):
            rows = await self.db.recordings.for_call(self.call_id)
            self.recording = Path(rows[-1]["path"]) if rows else None
        if self.protocol is None:
            raise StepFailed("no_call", "hand-off before a protocol was allocated")
        await self.set_var("CALLPROOF_PROTOCOL", self.protocol)
        await self.set_var("CALLPROOF_RECORDING", str(self.recording or ""))
        status = "ok" if self.recording else "recording_failed"
        await self.set_var("CALLPROOF_STATUS", status)
        if not self.recording:
            await self.set_var("CALLPROOF_REASON", "recording_not_started")
        self.status = "handed_off"
        self.timings.mark("handed_off")
        await self.db.calls.update(self.call_id, status="handed_off", handed_off_at=iso(self.clock()))
        self.outcome = "handed_off"
        event(log, "agi.call.handed_off", channel=self.channel_id, protocol=self.protocol,
              recording=str(self.recording or ""))

    async def finalise(self) -> None:
        """From the hangup handler: measure the recording, audit it, close the call row."""
        from callproof.ari_app.recorder import finalise_recording  # one finalise path for both apps

        row = await self.db.calls.get_by_channel(self.channel_id)
        if row is None:
            self.outcome = "no_call"
            return
        for rec in await self.db.recordings.for_call(row["id"]):
            if rec["state"] == "recording":
                await finalise_recording(self.db, rec["id"], Path(rec["path"]), iso(self.clock()))
        cause = ""
        try:
            cause = await self.get_var("HANGUPCAUSE")
        except (AgiHangup, AgiCommandError):
            pass
        status = {"handed_off": "completed", **ABANDONED_IN}.get(row["status"], row["status"])
        if row["ended_at"] is None or status != row["status"]:
            await self.db.calls.update(row["id"], status=status, ended_at=row["ended_at"] or iso(self.clock()),
                                       hangup_cause=row["hangup_cause"] or (f"Hangup:{cause}" if cause else "Hangup"))
        self.outcome = status
        event(log, "agi.call.finalised", channel=self.channel_id, protocol=row["protocol"], status=status)

    # ------------------------------------------------------------ endings
    async def caller_left(self, cause: str) -> None:
        self.outcome = "caller_left"
        if self.call_id is None:
            return
        status = ABANDONED_IN.get(self.status or "", self.status)
        self.outcome = status
        try:
            await self.db.calls.update(self.call_id, status=status, ended_at=iso(self.clock()),
                                       hangup_cause=f"AGI: {cause}"[:200])
        except Exception:
            log.exception("could not record the hang-up")
        event(log, "agi.call.caller_left", channel=self.channel_id, protocol=self.protocol, status=status)

    async def fail(self, reason: str, message: str) -> None:
        """Record the failure, tell the dialplan (CALLPROOF_STATUS/REASON) and return to it."""
        self.outcome = "failed"
        event(log, "agi.call.failed", logging.ERROR, channel=self.channel_id, step=self.step,
              reason=reason, error=message)
        if self.call_id is not None and reason != "storage_unavailable":
            try:
                await self.db.calls.update(self.call_id, status="failed", error=f"{reason}: {message}"[:500])
            except Exception:
                log.exception("could not record the failure")
        try:
            await self.set_var("CALLPROOF_STATUS", "failed")
            await self.set_var("CALLPROOF_REASON", reason)
            if self.protocol:
                await self.set_var("CALLPROOF_PROTOCOL", self.protocol)
        except (AgiHangup, AgiCommandError):
            pass

    # ------------------------------------------------------------ helpers
    def _done(self, step_status: str) -> bool:
        if self.status not in PROGRESS:
            return False
        return PROGRESS.index(self.status) > PROGRESS.index(step_status)

    async def play(self, media: list[str], what: str) -> None:
        """Playback (one command for the whole list; DTMF does not interrupt it)."""
        files = [strip_sound(m) for m in media]
        for f in files:
            if "&" in f or "," in f:
                raise StepFailed("prompt_missing", f"prompt path {f!r} contains '&' or ','")
        self.heard.append(what)
        self.timings.mark(f"{what}_playback_started")
        t0 = time.monotonic()
        reply = await self.ch.command(f"EXEC Playback {quote('&'.join(files))}")
        self.timings.prompt_seconds += time.monotonic() - t0
        if reply.failed:
            await self._check_alive()
        if await self.get_var("PLAYBACKSTATUS") != "SUCCESS":
            raise StepFailed("playback_failed", f"{what} playback failed (files {files[0]!r}...)")
        self.timings.marks[f"{what}_playback_finished"] = time.monotonic()

    async def _check_alive(self) -> None:
        """After a failed command: AgiHangup unless the channel is still up (or ringing)."""
        reply = await self.ch.command("CHANNEL STATUS")
        if reply.result not in ("4", "5", "6"):
            raise AgiHangup(f"channel status {reply.result}")

    async def get_var(self, name: str) -> str:
        reply = await self.ch.command(f"GET VARIABLE {quote(name)}")
        return reply.data if reply.result == "1" else ""

    async def set_var(self, name: str, value: str) -> None:
        await self.ch.command(f"SET VARIABLE {name} {quote(value)}")
