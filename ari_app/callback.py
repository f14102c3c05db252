"""Dropped-call call-backs: telling a drop from a hang-up, and calling back.

**Drop or hang-up.**  Asterisk reports why a channel ends with a Q.850 cause.
A caller who hangs up is cleared with 16 (normal clearing); a network that
loses the call reports e.g. 27, 34, 38, 41, 42, 44, 47, 102 (``[callback]
drop_causes``).  Only a hang-up the far end asked for counts: a non-*soft*
``ChannelHangupRequest`` (the channel driver queued it with the far end's
cause) or ``ChannelDestroyed``.  A *soft* ``ChannelHangupRequest`` was asked
for inside Asterisk (ARI, AMI, dialplan) and its ``cause`` field is a
soft-hang-up flag, not a Q.850 cause.  An end with no known cause is never a
drop.

**When.**  A call is called back when it ended by a drop cause after its
protocol was allocated (reading it, read, recording) and before the hand-off
to an agent.  :func:`record_call_end` writes the call's end and the
call-back in one transaction; :class:`CallbackScheduler` sweeps for any
dropped call without one at start and every few minutes.

**Calling back.**  :class:`CallbackScheduler` claims due call-backs with a
lease, and runs one task per call-back: originate through ``[callback]
endpoint_template`` into our ARI application (``appArgs`` ``callback,<id>``),
and once answered play the recording announcement and the same protocol, then
hang up.  Every attempt is recorded; no answer / busy / failure retries after
``retry_delay_seconds`` up to ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from callproof.callflow.endings import end_call, is_drop
from callproof.callflow.port import PlaybackFailed
from callproof.config import Config
from callproof.logs import event
from callproof.prompts import PromptCatalogue
from callproof.storage import Database
from callproof.storage.callbacks import (
    ANSWERED_PLAYED,
    BUSY,
    CUSTOMER_HUNG_UP,
    DROPPED,
    FAILED,
    NO_ANSWER,
    Callbacks,
    Plan,
)

from .ari import AriError, AriSession, ChannelGone
from .call_events import CallerHungUp, CallInbox

log = logging.getLogger("callproof.callback")

CALLBACK_ARG = "callback"          # first Stasis argument of a call-back channel
CHANNEL_PREFIX = "callproof-cb-"   # channel ids we give call-back channels
POLL_SECONDS = 2.0                 # longest wait before looking for due call-backs again
SWEEP_EVERY_SECONDS = 300.0
SWEEP_LOOKBACK = timedelta(hours=24)  # the sweep never calls back older drops
MAX_CONCURRENT = 10
PLAY_BUDGET_SECONDS = 240          # announcement + protocol, with room to spare
ANSWER_GRACE_SECONDS = 15          # past ring_timeout before we stop waiting for Asterisk
# The Q.850 equivalent recorded when the channel ended with cause 0 (a Local leg, for one).
DIALSTATUS_CAUSES = {"BUSY": 17, "NOANSWER": 19, "CONGESTION": 34, "CHANUNAVAIL": 44}


# ------------------------------------------------------------- drop or not
def far_end_cause(ev: dict[str, Any] | None) -> int | None:
    """The Q.850 cause of a hang-up the far end asked for, else None (see module doc)."""
    if not ev:
        return None
    kind = ev.get("type")
    if kind == "ChannelHangupRequest" and ev.get("soft"):
        return None
    if kind not in ("ChannelHangupRequest", "ChannelDestroyed"):
        return None
    cause = ev.get("cause")
    return cause if isinstance(cause, int) and not isinstance(cause, bool) else None


async def wait_for_ending(inbox: CallInbox, seconds: float = 1.0) -> dict[str, Any] | None:
    """The event that ended the call.  When the flow learnt of the end from an
    ARI answer (404) before the event arrived, wait briefly for the event."""
    if inbox.ended is None:
        try:
            await inbox.wait_for(lambda _e: False, timeout=seconds)
        except (CallerHungUp, TimeoutError):
            pass
    return inbox.ended


async def record_call_end(db: Database, config: Config, call_id: int, *, status: str, ended_at: str,
                          description: str, inbox: CallInbox) -> int | None:
    """Record the end of a call the caller's side ended, with the Q.850 cause of its
    ending event, and its call-back when it was a drop in an eligible phase
    (:func:`callproof.callflow.endings.end_call`).  Returns the call-back id, if any."""
    return await end_call(db, config, call_id, status=status, ended_at=ended_at, description=description,
                          cause=far_end_cause(await wait_for_ending(inbox)))


def is_callback_start(ev: dict[str, Any]) -> bool:
    args = ev.get("args") or []
    return ev.get("type") == "StasisStart" and bool(args) and args[0] == CALLBACK_ARG


# ----------------------------------------------------------------- dialling
class _AttemptInbox(CallInbox):
    """A call-back channel's events; also keeps the far end's hang-up cause."""

    def __init__(self, channel_id: str):
        super().__init__(channel_id)
        self.cause: int | None = None
        self.dialstatus = ""
        self.destroyed = asyncio.Event()

    def push(self, ev: dict[str, Any]) -> None:
        if ev.get("type") == "Dial":  # not for the flow: the dial's result
            self.dialstatus = str(ev.get("dialstatus") or self.dialstatus)
            return
        cause = far_end_cause(ev)
        if cause is not None and (self.cause is None or ev.get("type") == "ChannelHangupRequest"):
            self.cause = cause
        if ev.get("type") == "ChannelDestroyed":
            self.destroyed.set()
        super().push(ev)


class CallbackScheduler:
    """Claims due call-backs and calls the customers back, one task per call-back.

    ``ari()`` returns the connected ARI session or None while disconnected; the
    application routes a call-back channel's events here (:meth:`route`).
    """

    def __init__(self, config: Config, db: Database, prompts: PromptCatalogue,
                 ari: Callable[[], AriSession | None], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), owner: str | None = None):
        self.config = config
        self.store = Callbacks(db)
        self.prompts = prompts
        self._ari = ari
        self.clock = clock
        self.owner = owner or f"callback-{uuid.uuid4().hex[:12]}"
        self.lease_seconds = config.callback.ring_timeout_seconds + ANSWER_GRACE_SECONDS + PLAY_BUDGET_SECONDS
        self.inboxes: dict[str, _AttemptInbox] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    # ----------------------------------------------------------- routing
    def route(self, ev: dict[str, Any], channel_id: str | None) -> bool:
        """True when the event belongs to a call-back channel (and was taken).
        ``Dial`` events name the dialled channel as ``peer``."""
        if ev.get("type") == "Dial":
            channel_id = (ev.get("peer") or {}).get("id")
        if channel_id is None:
            return False
        inbox = self.inboxes.get(channel_id)
        if inbox is not None:
            inbox.push(ev)
            return True
        if is_callback_start(ev) or channel_id.startswith(CHANNEL_PREFIX):
            if ev.get("type") == "StasisStart":  # a call-back channel no task waits for (restart)
                self._spawn_hangup(channel_id)
            return True
        return False

    def owns(self, channel_id: str) -> bool:
        return channel_id.startswith(CHANNEL_PREFIX)

    def _spawn_hangup(self, channel_id: str) -> None:
        ari = self._ari()
        if ari is not None:
            task = asyncio.ensure_future(ari.hangup(channel_id))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -------------------------------------------------------------- loop
    def _forget_task(self, callback_id: int, _task: asyncio.Future[None]) -> None:
        self.tasks.pop(callback_id, None)

    async def run(self) -> None:
        cb = self.config.callback
        plan = Plan(cb.first_delay_seconds, cb.max_attempts)
        last_sweep = -SWEEP_EVERY_SECONDS
        try:
            while True:
                try:
                    if time.monotonic() - last_sweep >= SWEEP_EVERY_SECONDS:
                        last_sweep = time.monotonic()
                        since = self.clock() - SWEEP_LOOKBACK
                        swept = await self.store.sweep(drop_causes=cb.drop_causes, since=since, plan=plan)
                        if swept:
                            event(log, "callback.swept", scheduled=swept)
                    free = MAX_CONCURRENT - len(self.tasks)
                    if free > 0 and self._ari() is not None:
                        for row in await self.store.claim(self.owner, free, self.lease_seconds):
                            task = asyncio.ensure_future(self._attempt(row))
                            self.tasks[row["id"]] = task
                            task.add_done_callback(partial(self._forget_task, row["id"]))
                    await self._sleep_until_due()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a locked or unreadable database: keep the scheduler alive
                    log.exception("call-back scheduler: will try again")
                    await asyncio.sleep(POLL_SECONDS * 5)
        finally:
            tasks = list(self.tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sleep_until_due(self) -> None:
        delay = POLL_SECONDS
        due = await self.store.next_due()
        if due is not None:
            delay = min(delay, max(0.0, (datetime.fromisoformat(due) - self.clock()).total_seconds()))
        self._wake.clear()
        try:
            async with asyncio.timeout(max(delay, 0.05)):
                await self._wake.wait()
        except TimeoutError:
            pass

    # ----------------------------------------------------------- attempt
    async def _attempt(self, row: dict[str, Any]) -> None:
        """One dialling attempt of one call-back, recorded whatever happens."""
        cb = self.config.callback
        channel_id = f"{CHANNEL_PREFIX}{row['id']}-{row['attempt']}-{uuid.uuid4().hex[:12]}"
        inbox = _AttemptInbox(channel_id)
        self.inboxes[channel_id] = inbox
        outcome, cause = FAILED, None
        event(log, "callback.dialling", callback_id=row["id"], attempt=row["attempt"], protocol=row["protocol"])
        try:
            async with asyncio.timeout(self.lease_seconds - 10):
                outcome = await self._call(row, channel_id, inbox)
        except asyncio.CancelledError:
            raise  # the lease runs out and the next claim records the attempt as interrupted
        except (AriError, PlaybackFailed, TimeoutError, OSError) as exc:
            event(log, "callback.attempt_failed", logging.WARNING, callback_id=row["id"],
                  error=f"{type(exc).__name__}: {exc}")
            await self._hang_up(channel_id)
        except Exception:
            log.exception("call-back attempt failed", extra={"fields": {"callback_id": row["id"]}})
            await self._hang_up(channel_id)
        finally:
            self.inboxes.pop(channel_id, None)
        cause = inbox.cause or DIALSTATUS_CAUSES.get(inbox.dialstatus)
        try:
            final = await self.store.finish_attempt(row["attempt_id"], owner=self.owner, outcome=outcome,
                                                    cause=cause, retry_delay_seconds=cb.retry_delay_seconds)
        except Exception:  # the lease runs out and the next claim records it as interrupted
            log.exception("could not record call-back attempt", extra={"fields": {"callback_id": row["id"]}})
            return
        event(log, "callback.attempt", callback_id=row["id"], attempt=row["attempt"], outcome=outcome,
              cause=cause, state=final["state"])
        self.wake()

    async def _call(self, row: dict[str, Any], channel_id: str, inbox: _AttemptInbox) -> str:
        cb = self.config.callback
        ari = self._ari()
        if ari is None:
            raise AriError("ARI is not connected")
        destination = row["destination"]
        endpoint = cb.endpoint_template.format(number=destination.lstrip("+"), e164=destination)
        await self.store.dialled(row["attempt_id"], channel_id)
        await ari.originate(endpoint=endpoint, channel_id=channel_id, app_args=f"{CALLBACK_ARG},{row['id']}",
                            caller_id=cb.caller_id, timeout=cb.ring_timeout_seconds)
        try:
            await inbox.wait_for(lambda e: e.get("type") == "StasisStart",
                                 timeout=cb.ring_timeout_seconds + ANSWER_GRACE_SECONDS)
        except CallerHungUp:
            await self._settle(inbox)
            return self._unanswered(inbox.dialstatus, inbox.cause)
        except TimeoutError:
            await self._hang_up(channel_id)
            return NO_ANSWER
        await self.store.answered(row["attempt_id"])
        language = self.prompts.resolve_language(row["language"] or None)
        groups = self.config.protocol_reading.groups
        try:
            await self._play(ari, inbox, channel_id, [self.prompts.prompt("consent", language).media], "consent")
            media = self.prompts.protocol_reading_media(language, row["protocol"], groups)
            for _ in range(1 + self.config.protocol_reading.repeat):
                await self._play(ari, inbox, channel_id, media, "protocol")
        except (CallerHungUp, ChannelGone):
            await self._settle(inbox)
            return DROPPED if is_drop(inbox.cause, self.config) else CUSTOMER_HUNG_UP
        await ari.hangup(channel_id)
        return ANSWERED_PLAYED

    @staticmethod
    def _unanswered(dialstatus: str, cause: int | None) -> str:
        """Outcome of a call that was never answered: the Dial event's status
        first (a Local or SIP leg may end with cause 0), then the Q.850 cause."""
        if dialstatus == "BUSY" or cause == 17:
            return BUSY
        if dialstatus in ("NOANSWER", "CANCEL") or cause in (None, 0, 16, 18, 19, 20, 21):
            return NO_ANSWER  # not answered / ring timeout / rejected
        return FAILED  # CONGESTION, CHANUNAVAIL, network causes

    async def _settle(self, inbox: _AttemptInbox) -> None:
        """Wait briefly for ChannelDestroyed, which carries the final cause."""
        try:
            async with asyncio.timeout(2):
                await inbox.destroyed.wait()
        except TimeoutError:
            pass

    async def _play(self, ari: AriSession, inbox: CallInbox, channel_id: str, media: list[str], what: str) -> None:
        playback_id = f"cp-callback-{what}-{uuid.uuid4().hex}"
        await ari.play(channel_id, media, playback_id)
        finished = await inbox.wait_for(lambda e: e.get("type") == "PlaybackFinished"
                                        and (e.get("playback") or {}).get("id") == playback_id)
        state = (finished.get("playback") or {}).get("state")
        if state != "done":
            if inbox.ended is not None:
                raise CallerHungUp(f"playback {state} at hangup")
            raise PlaybackFailed(f"{what} playback ended in state {state!r} (media {media[0]!r})")

    async def _hang_up(self, channel_id: str) -> None:
        ari = self._ari()
        if ari is not None:
            try:
                await ari.hangup(channel_id)
            except AriError:
                log.debug("hang-up of %s refused", channel_id, exc_info=True)
