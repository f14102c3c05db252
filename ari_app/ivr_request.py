"""The phone entry for recording requests: the caller types a protocol with DTMF.

    announcement → "type the protocol, then #" → 17 digits → request filed (channel 'ivr')
    when a call has that protocol → "registered; the request's protocol goes by SMS to the
    number of that call" (the same words whether or not the protocol exists or the number
    matched) → back to the dialplan ([callproof-request-done])

The dialplan enters it with ``Stasis(<app>,request-ivr,<language>)`` (context
``[callproof-request-entry]`` in dialplan/callproof.conf); :func:`is_request_ivr`
tells the application to run this flow instead of the inbound call flow.

Rules the code keeps (docs/ivr.md):

* The caller hears ``request-consent`` before anything else, in full (keys do not
  skip it).  This contact is not audio-recorded -- there is no conversation; its
  evidence is the ``ivr_request_calls`` row, the request row and the audit log --
  so the announcement says what is kept rather than "this call is recorded".
* Digits: only ``0``-``9`` count, ``#`` ends the entry, ``*`` starts it again,
  anything else is ignored; keys typed before the prompt started are ignored,
  keys typed while it plays stop it.  Exactly 17 digits, at most
  :attr:`RequestIvrFlow.max_attempts` tries; a wrong length gets "that is not a
  protocol" and another try.
* The caller cannot learn whether a protocol exists (protocols are sequential, so
  that would enumerate calls) nor whether their number is the call's: every entry of
  17 digits ends the same way (``request-registered``, the same channel variables).
  The request's own protocol goes by SMS to the *call's* number (only its owner
  learns it); what really happened is in the rows and the audit log.
* Nothing the caller typed reaches storage except an accepted protocol (17 ASCII
  digits of an existing call).  No request is filed unless the protocol was
  fully entered and accepted; every step is persisted before the next one, so a
  hang-up at any point leaves a truthful ``ivr_request_calls`` row.
* ``received`` when the calling number (E.164) is the call's caller number (its
  link then goes only to that number), else ``needs_identity_check``
  (callproof/rights/requests.py decides).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from callproof.callflow import language_choice
from callproof.callflow.decisions import iso
from callproof.logs import event
from callproof.numbers import normalise_caller
from callproof.rights.codes import notify_call_number_sync
from callproof.rights.requests import FiledRequest, file_request_sync
from callproof.storage import Database
from callproof.storage.errors import NotFoundError
from callproof.storage.ivr_requests import IvrRequestCalls

from .ari import AriSession, ChannelGone
from .call_events import CallerHungUp, CallInbox
from .flow import CallTimings, PlaybackFailed, Services
from .ivr_digits import DigitEntry

log = logging.getLogger("callproof.ivr_request")

#: First Stasis argument that selects this flow (dialplan/callproof.conf).
REQUEST_IVR_ARG = "request-ivr"
#: Where the caller goes when the IVR is done (CALLPROOF_STATUS says how it went).
DONE_CONTEXT = "callproof-request-done"

#: What the dialplan is told after any 17-digit entry, filed or not (it must not tell).
SUBMITTED = "submitted"

# Status a row is left in when the caller hangs up during a step ('filed' stays
# 'filed': the request exists whether or not they heard its whole protocol).
ABANDONED_IN = {"consent_playing": "abandoned_in_consent", "collecting": "abandoned_in_entry"}
FINAL_STATUSES = frozenset({"completed", "not_found", "failed", "abandoned_in_consent", "abandoned_in_entry"})


def is_request_ivr(start_event: dict[str, Any]) -> bool:
    """True for a channel the dialplan sent to the request IVR.

    A fresh StasisStart carries the Stasis arguments; a channel resumed after an
    ARI reconnect does not, so its dialplan location (``app_data`` of the
    running Stasis application) is read instead."""
    args = start_event.get("args") or []
    if args:
        return str(args[0]) == REQUEST_IVR_ARG
    dialplan = (start_event.get("channel") or {}).get("dialplan") or {}
    if str(dialplan.get("app_name", "")).lower() != "stasis":
        return False
    parts = str(dialplan.get("app_data") or "").split(",")
    return len(parts) > 1 and parts[1].strip() == REQUEST_IVR_ARG


async def settle_unfinished_ivr(db: Database, ari: AriSession, active: set[str], clock: Callable[[], datetime]) -> int:
    """After (re)connecting: IVR rows still open whose channel Asterisk no longer
    has ended while callproof was away; record that truthfully.  ``active``:
    channels being handled (kept by Asterisk or with a running flow).  Returns
    how many rows were settled."""
    repo = IvrRequestCalls(db)
    settled = 0
    for row in await repo.unfinished():
        channel_id = row["channel_id"]
        if channel_id in active or await ari.channel_exists(channel_id):
            continue
        status = ABANDONED_IN.get(row["status"], row["status"])
        await repo.update(row["id"], status=status, ended_at=iso(clock()),
                          hangup_cause="ended while callproof was disconnected")
        event(log, "ivr.settled", channel=channel_id, status=status)
        settled += 1
    return settled


class RequestIvrFlow:
    """One call into the request IVR; same shape as :class:`ari_app.flow.CallFlow`
    (``run``, ``channel``, ``channel_id``, ``outcome``, ``timings``) so the
    application runs and observes both alike."""

    max_attempts = 3
    first_digit_timeout = 10.0   # seconds after the prompt ended, before any digit
    inter_digit_timeout = 5.0    # seconds between digits; expiry ends the entry
    max_restarts = 5             # '*' presses honoured per try
    prompt_timeout = 180.0       # a playback that never reports its end is a failure

    def __init__(self, services: Services, inbox: CallInbox, start_event: dict[str, Any]):
        self.s = services
        self.inbox = inbox
        self.repo = IvrRequestCalls(services.db)
        self.channel: dict[str, Any] = start_event["channel"]
        self.args: list[str] = list(start_event.get("args") or [])
        self.channel_id: str = self.channel["id"]
        self.ivr_id: int | None = None
        self.call_id: int | None = None  # no inbound-call row: this is not a call through the main flow
        self.status: str | None = None
        self.language: str = services.config.general.default_language
        self.caller_number: str | None = None
        self.started_at: datetime = services.clock()
        self.attempts = 0
        self.entered = False                    # a 17-digit protocol was typed (known or not)
        self.request: FiledRequest | None = None
        self.protocol: str | None = None        # the request's own protocol, once filed
        self.request_state: str | None = None
        self.played: list[str] = []             # what the caller was played, by prompt name, in order
        self.outcome: str | None = None
        self.timings = CallTimings()
        self.timings.mark("stasis_start")

    @property
    def row_id(self) -> int:
        """The id of this call's ivr_request_calls row: every step after enter() writes to it."""
        if self.ivr_id is None:
            raise RuntimeError("no request IVR row yet: enter() comes first")
        return self.ivr_id

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        try:
            await self.enter()
            if self.status in FINAL_STATUSES:  # resumed after it was over: only the hand-back was missing
                self.outcome = self.status
                await self.s.ari.continue_in_dialplan(self.channel_id, DONE_CONTEXT, "s", 1)
                return
            await self.play_consent()
            if self.status == "collecting":
                await self.collect_and_file()
            if self.status == "filed" or (self.status == "not_found" and self.entered):
                await self.announce()
                await self.finish("ok")
            elif self.status == "not_found":
                await self.give_up()
        except (CallerHungUp, ChannelGone) as exc:
            await self.caller_left(getattr(exc, "cause", None) or str(exc))
        except asyncio.CancelledError:
            event(log, "ivr.interrupted", channel=self.channel_id, status=self.status)
            raise
        except Exception as exc:
            log.exception("request IVR failed", extra={"fields": {"channel": self.channel_id}})
            await self.fail(exc)
        finally:
            event(log, "ivr.timings", logging.INFO, channel=self.channel_id, outcome=self.outcome,
                  request_protocol=self.protocol, **self.timings.relative_ms())

    # ---------------------------------------------------------------- steps
    async def enter(self) -> None:
        """Create (or, after an ARI reconnect, load) the row; answer."""
        existing = await self.repo.get_by_channel(self.channel_id)
        if existing is not None:
            self.ivr_id, self.status = existing["id"], existing["status"]
            self.language, self.caller_number = existing["language"], existing["caller_number"]
            self.attempts = existing["attempts"]
            if existing["request_id"] is not None:
                summary = await self.repo.request_summary(existing["request_id"])
                if summary is not None:
                    self.protocol, self.request_state = summary["request_protocol"], summary["state"]
            event(log, "ivr.resumed", channel=self.channel_id, status=self.status)
            return
        asked = self.args[1] if len(self.args) > 1 else ""
        dialled = str((self.channel.get("dialplan") or {}).get("exten") or "")
        self.language = language_choice.choose_language(
            self.s.config, self.s.prompts, asked=asked, dialled=dialled,
            channel_language=self.channel.get("language")).language
        raw = str((self.channel.get("caller") or {}).get("number") or "")
        self.caller_number = normalise_caller(raw, self.s.config.general.phone_region).e164
        answer = self._answer_if_needed()
        self.ivr_id, _ = await asyncio.gather(
            self.repo.create(channel_id=self.channel_id, caller_number=self.caller_number,
                             language=self.language, started_at=iso(self.started_at)),
            answer)
        self.status = "consent_playing"
        event(log, "ivr.entered", channel=self.channel_id, ivr_id=self.ivr_id, language=self.language)

    async def _answer_if_needed(self) -> None:
        if self.channel.get("state") != "Up":
            await self.s.ari.answer(self.channel_id)

    async def play_consent(self) -> None:
        """What this contact keeps, in full, before anything else."""
        if self.status != "consent_playing":
            return
        prompt = self.s.prompts.prompt("request-consent", self.language)
        await self.repo.update(self.row_id, consent_prompt=prompt.name, consent_sha256=prompt.sha256,
                               consent_started_at=iso(self.s.clock()))
        try:
            await self._play([prompt.media], "request-consent")
        except (CallerHungUp, ChannelGone):
            await self.repo.update(self.row_id, consent_outcome="caller_left",
                                   consent_finished_at=iso(self.s.clock()))
            raise
        self.status = "collecting"
        await self.repo.update(self.row_id, consent_outcome="finished", consent_finished_at=iso(self.s.clock()),
                               status="collecting")

    async def collect_and_file(self) -> None:
        """Up to ``max_attempts`` entries; the first accepted one files the request."""
        media = ["request-enter"]
        while self.attempts < self.max_attempts:
            entry = await self._collect_entry(media)
            self.attempts += 1
            problem = entry.problem()
            if problem is None:
                self.entered = True
                if await self._file(entry.protocol) is not None:
                    return
                # No call has it: the caller hears what a filed request gets (no retry, no
                # "not found"), so protocols cannot be enumerated by phone.
                self.status = "not_found"
                await self.repo.update(self.row_id, attempts=self.attempts, last_problem="unknown_protocol",
                                       status="not_found")
                event(log, "ivr.entry_rejected", channel=self.channel_id, problem="unknown_protocol",
                      digits=entry.count, attempt=self.attempts)
                return
            await self.repo.update(self.row_id, attempts=self.attempts, last_problem=problem)
            event(log, "ivr.entry_rejected", channel=self.channel_id, problem=problem, digits=entry.count,
                  attempt=self.attempts)
            media = ["request-enter"] if problem == "no_digits" else ["request-not-found", "request-enter"]
        self.status = "not_found"
        await self.repo.update(self.row_id, status="not_found")

    async def _file(self, protocol: str) -> FiledRequest | None:
        """File the request for an accepted protocol; None when no call has it."""
        try:
            filed = await self.s.db.run_sync(self._file_and_notify, protocol)
        except NotFoundError:
            return None
        self.request, self.protocol, self.request_state = filed, filed.request_protocol, filed.state
        self.status = "filed"
        await self.repo.update(self.row_id, attempts=self.attempts, last_problem=None, call_protocol=protocol,
                               request_id=filed.id, status="filed")
        self.timings.mark("request_filed")
        event(log, "ivr.request_filed", channel=self.channel_id, call_protocol=protocol,
              request_protocol=filed.request_protocol, state=filed.state, created=filed.created)
        return filed

    def _file_and_notify(self, db: Any, protocol: str) -> FiledRequest:
        """On the database's thread: file the request and, when it is new, tell the call's
        number its protocol by SMS (the caller is not told it: see the module's rules)."""
        filed = file_request_sync(db, self.s.config, call_protocol=protocol, channel="ivr", actor="ivr",
                                  now=self.s.clock(), requester_number=self.caller_number)
        if filed.created:
            request, call = db.requests.get(filed.id), db.calls.get_by_protocol(protocol)
            if request is not None and call is not None:
                notify_call_number_sync(db, self.s.config, request, call, now=self.s.clock(), actor="ivr")
        return filed

    async def announce(self) -> None:
        """The same words after every 17-digit entry: registered, and where its protocol goes."""
        await self._play([self.s.prompts.prompt("request-registered", self.language).media], "request-registered")
        if self.status == "filed":
            await self.repo.update(self.row_id, request_read_count=1)
        self.timings.mark("request_registered_played")

    async def give_up(self) -> None:
        await self._play([self.s.prompts.prompt("request-give-up", self.language).media], "request-give-up")
        await self.finish("not_found")

    async def finish(self, status: str) -> None:
        """Hand the channel back to the dialplan with the outcome in channel variables: after a
        17-digit entry the same ones whether a request was filed or not (the dialplan must not
        be able to tell the caller either); the rows hold the truth."""
        state = SUBMITTED if status == "ok" else "not_filed"
        await self.s.ari.set_variable(self.channel_id, "CALLPROOF_REQUEST_PROTOCOL", "")
        await self.s.ari.set_variable(self.channel_id, "CALLPROOF_REQUEST_STATE", state)
        await self.s.ari.set_variable(self.channel_id, "CALLPROOF_STATUS", status)
        await self.s.ari.continue_in_dialplan(self.channel_id, DONE_CONTEXT, "s", 1)
        final = "completed" if status == "ok" and self.status == "filed" else "not_found"
        self.status, self.outcome = final, final
        await self.repo.update(self.row_id, status=final, ended_at=iso(self.s.clock()))
        event(log, "ivr.done", channel=self.channel_id, status=final, request_protocol=self.protocol,
              request_state=state)

    # ------------------------------------------------------------ endings
    async def caller_left(self, cause: str) -> None:
        if self.status in FINAL_STATUSES:  # it was over already: nothing left to record
            self.outcome = self.status
            return
        status = ABANDONED_IN.get(self.status or "", self.status)
        self.status, self.outcome = status, status
        if self.ivr_id is None:
            return
        await self.repo.update(self.ivr_id, status=status, attempts=self.attempts, ended_at=iso(self.s.clock()),
                               hangup_cause=cause[:200])
        event(log, "ivr.caller_left", channel=self.channel_id, status=status, request_protocol=self.protocol)

    async def fail(self, exc: Exception) -> None:
        """Record the failure; the dialplan routes a failed caller to a human."""
        self.outcome = "failed"
        if self.ivr_id is not None:
            try:
                await self.repo.update(self.ivr_id, status="failed", ended_at=iso(self.s.clock()),
                                       error=f"{type(exc).__name__}: {exc}"[:500])
            except Exception:
                log.exception("could not record the IVR failure")
        try:
            await self.s.ari.set_variable(self.channel_id, "CALLPROOF_REQUEST_PROTOCOL", "")
            await self.s.ari.set_variable(self.channel_id, "CALLPROOF_REQUEST_STATE", "not_filed")
            await self.s.ari.set_variable(self.channel_id, "CALLPROOF_STATUS", "failed")
            await self.s.ari.continue_in_dialplan(self.channel_id, DONE_CONTEXT, "s", 1)
        except Exception:
            log.warning("could not hand a failed IVR call to the dialplan", exc_info=True)

    # ------------------------------------------------------------ helpers
    def _media(self, names: list[str]) -> list[str]:
        return [self.s.prompts.prompt(name, self.language).media for name in names]

    async def _start(self, media: list[str], what: str) -> str:
        playback_id = f"cp-{what}-{uuid.uuid4().hex}"
        self.played.append(what)
        await self.s.ari.play(self.channel_id, media, playback_id)
        return playback_id

    def _mine(self, ev: dict[str, Any], playback_id: str) -> bool:
        return ev.get("type") in ("PlaybackStarted", "PlaybackFinished") and \
            (ev.get("playback") or {}).get("id") == playback_id

    def _check_finished(self, ev: dict[str, Any], what: str) -> None:
        state = (ev.get("playback") or {}).get("state")
        if state not in ("done", "cancelled", "canceled"):  # a stopped playback ends 'done'
            if self.inbox.ended is not None:
                raise CallerHungUp(f"playback {state} at hangup")
            raise PlaybackFailed(f"{what} playback ended in state {state!r}")

    async def _play(self, media: list[str], what: str) -> None:
        """Play in full and wait for the end; keys pressed meanwhile are ignored."""
        playback_id = await self._start(media, what)
        self.timings.mark(f"{what}_playback_started")
        try:
            finished = await self.inbox.wait_for(
                lambda e: e.get("type") == "PlaybackFinished" and self._mine(e, playback_id),
                timeout=self.prompt_timeout)
        except TimeoutError:
            raise PlaybackFailed(f"{what} playback never finished") from None
        self._check_finished(finished, what)

    async def _collect_entry(self, names: list[str]) -> DigitEntry:
        """One try: the prompt (keys stop it), then digits until '#', a timeout or
        too many '*' restarts (each '*' clears the digits and plays the prompt again)."""
        restarts = 0
        while True:
            entry = DigitEntry()
            ended = await self._prompt_and_collect(self._media(names), entry, names[0])
            if ended != "restart":
                return entry
            if restarts >= self.max_restarts:
                return DigitEntry()  # counts as a try without digits
            restarts += 1
            names = ["request-enter"]

    async def _prompt_and_collect(self, media: list[str], entry: DigitEntry, what: str) -> str:
        playback_id = await self._start(media, what)
        playing, started = True, False

        def wanted(e: dict[str, Any]) -> bool:
            return e.get("type") == "ChannelDtmfReceived" or self._mine(e, playback_id)

        while True:
            if playing:
                timeout = self.prompt_timeout
            else:
                timeout = self.inter_digit_timeout if entry.count else self.first_digit_timeout
            try:
                ev = await self.inbox.wait_for(wanted, timeout=timeout)
            except TimeoutError:
                if playing:
                    raise PlaybackFailed(f"{what} playback never finished") from None
                return "timeout"
            finally:
                self.inbox.take_dtmf()  # the events carry the keys; keep the side list empty
            kind = ev.get("type")
            if kind == "PlaybackStarted":
                started = True
                self.timings.mark(f"{what}_playback_started")
                continue
            if kind == "PlaybackFinished":
                started, playing = True, False
                self._check_finished(ev, what)
                continue
            if not started:
                continue  # typed before this prompt began (e.g. during the announcement)
            action = entry.press(ev.get("digit"))
            if action == "ignored":
                continue
            if playing:  # barge-in: the caller knows what to do
                await self.s.ari.stop_playback(playback_id)
            if action in ("finish", "restart"):
                return action
