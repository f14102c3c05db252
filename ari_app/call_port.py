"""The call port over ARI: REST requests on the channel and the call's event inbox.

A playback is a ``playWithId`` followed by its PlaybackStarted/PlaybackFinished
events; keys are ChannelDtmfReceived events (heard during playbacks too); the
recording is AMI MixMonitor through :class:`~.recorder.Recorder`; the hand-off is
``continueInDialplan``.  Every "the channel is no longer ours" answer
(:class:`~.ari.ChannelGone`) or ending event becomes
:class:`~callproof.callflow.port.CallerHungUp`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.callflow.port import (
    CallerHungUp,
    CallerId,
    CallFacts,
    OnAccepted,
    PlaybackFailed,
    RecordingError,
    finish_before_cancel,
)
from callproof.callflow.timings import CallTimings

from .ari import ChannelGone
from .call_events import CallInbox
from .callback import far_end_cause, wait_for_ending

if TYPE_CHECKING:
    from .flow import Services


@contextmanager
def _gone_is_hangup() -> Iterator[None]:
    try:
        yield
    except ChannelGone as exc:
        raise CallerHungUp(str(exc) or "channel gone") from None


def facts_of(start_event: dict[str, Any]) -> CallFacts:
    """The Stasis arguments (dialplan/callproof.conf): DID, linkedid, language, retention
    class, entry context; a channel resumed after a reconnect has none, so its dialplan
    location stands in."""
    channel = start_event["channel"]
    args = [str(a) for a in start_event.get("args") or []]
    dialplan = channel.get("dialplan") or {}

    def arg(i: int) -> str:
        return args[i] if len(args) > i else ""

    return CallFacts(
        channel_id=channel["id"],
        dialled=args[0] if args else str(dialplan.get("exten", "")),
        linkedid=args[1] if len(args) > 1 else channel["id"],
        language=arg(2), channel_language=channel.get("language"), retention_class=arg(3),
        entry_context=arg(4) or str(dialplan.get("context", "")), served_by="ari",
        ari_app=str(start_event.get("application") or ""))


class AriCallPort:
    def __init__(self, services: Services, inbox: CallInbox, start_event: dict[str, Any], timings: CallTimings):
        self.s, self.inbox, self.timings = services, inbox, timings
        self.channel: dict[str, Any] = start_event["channel"]
        self.facts = facts_of(start_event)
        self.channel_id = self.facts.channel_id

    async def caller_id(self) -> CallerId:
        caller = self.channel.get("caller") or {}
        return CallerId(number=str(caller.get("number") or ""), name=str(caller.get("name") or ""))

    async def answer(self) -> None:
        if self.channel.get("state") != "Up":
            with _gone_is_hangup():
                await self.s.ari.answer(self.channel_id)

    async def play(self, media: list[str], what: str, on_accepted: OnAccepted | None = None) -> None:
        playback_id = f"cp-{what}-{uuid.uuid4().hex}"

        async def request() -> None:
            with _gone_is_hangup():
                await self.s.ari.play(self.channel_id, media, playback_id)
            if on_accepted is not None:
                await on_accepted(playback_id)

        # Accepted by Asterisk and written down, or neither: a resume relies on it.
        await finish_before_cancel(request())
        await self._wait_finished(playback_id, what, media[0])

    async def follow_playback(self, playback_id: str, what: str) -> bool:
        with _gone_is_hangup():
            state = await self.s.ari.playback_state(playback_id)
            if state is None:
                # Asterisk no longer has it: it ended while we were away -- or the channel did.
                if not await self.s.ari.channel_exists(self.channel_id):
                    raise CallerHungUp("channel gone while ARI was away")
                return False
        # Still queued or playing: its PlaybackFinished reaches this call's inbox, which
        # existed before the request above (Asterisk sends it after the playback's end).
        await self._wait_finished(playback_id, what, "")
        return True

    async def _wait_finished(self, playback_id: str, what: str, first_media: str) -> None:
        def about_it(e: dict[str, Any]) -> bool:
            return (e.get("playback") or {}).get("id") == playback_id

        started = await self.inbox.wait_for(
            lambda e: e.get("type") in ("PlaybackStarted", "PlaybackFinished") and about_it(e))
        self.timings.mark(f"{what}_playback_started")
        if "timestamp" in started:
            self.timings.asterisk.setdefault(f"{what}_playback_started", started["timestamp"])
        finished = started
        if started.get("type") != "PlaybackFinished":
            finished = await self.inbox.wait_for(lambda e: e.get("type") == "PlaybackFinished" and about_it(e))
        state = (finished.get("playback") or {}).get("state")
        if state != "done":
            if self.inbox.ended is not None:
                raise CallerHungUp(f"playback {state} at hangup")
            raise PlaybackFailed(f"{what} playback ended in state {state!r} (media {first_media!r})")
        self.timings.mark_again(f"{what}_playback_finished")
        if "timestamp" in finished:
            self.timings.asterisk[f"{what}_playback_finished"] = finished["timestamp"]

    def take_digits(self) -> list[str]:
        return self.inbox.take_dtmf()

    async def wait_for_digit(self, key: str, seconds: float) -> bool:
        try:
            await self.inbox.wait_for(
                lambda e: e.get("type") == "ChannelDtmfReceived" and e.get("digit") == key, timeout=seconds)
        except TimeoutError:
            return False
        self.inbox.take_dtmf()
        return True

    async def read_digit(self, seconds: float) -> str | None:
        try:
            event = await self.inbox.wait_for(lambda e: e.get("type") == "ChannelDtmfReceived", timeout=seconds)
        except TimeoutError:
            return None
        self.inbox.take_dtmf()
        return str(event.get("digit") or "") or None

    async def get_variable(self, name: str) -> str | None:
        with _gone_is_hangup():
            return await self.s.ari.get_variable(self.channel_id, name)

    async def set_variable(self, name: str, value: str) -> None:
        with _gone_is_hangup():
            await self.s.ari.set_variable(self.channel_id, name, value)

    async def start_recording(self, path: Path, recording_id: int) -> None:
        self.s.recorder.track(self.channel_id, recording_id, path)
        for attempt in (1, 2):  # a second time only when MixMonitor is known not to run
            try:
                await self.s.recorder.start(self.channel["name"], self.channel_id, path)
                return
            except RecordingError as exc:
                # AMI may have lost the reply or MixMonitorStart with its link: the channel
                # knows whether MixMonitor runs on our file.
                running = await self._mixmonitor_file() if self.inbox.ended is None else None
                if running == str(path):
                    return
                if attempt == 2 or running is None:  # gone, or unknown: never a second writer
                    self.s.recorder.untrack(self.channel_id)  # else kept until a Hangup that finalises a failed row
                    raise RecordingError(str(exc), caller_gone=self.inbox.ended is not None) from None

    async def _mixmonitor_file(self) -> str | None:
        """The file MixMonitor records into ('' when it does not run), None when unknown."""
        try:
            return await self.s.ari.get_variable(self.channel_id, "MIXMONITOR_FILENAME") or ""
        except Exception:  # gone, or ARI down too: not known
            return None

    async def adopt_recording(self, path: Path, recording_id: int) -> None:
        self.s.recorder.track(self.channel_id, recording_id, path)

    async def hand_off(self, call_id: int | None) -> None:
        h = self.s.config.handoff
        if call_id is not None:
            self.s.expect_handoff(self.channel_id, call_id)
        with _gone_is_hangup():
            await self.s.ari.continue_in_dialplan(self.channel_id, h.context, h.extension, h.priority)

    async def hangup_cause(self) -> int | None:
        return far_end_cause(await wait_for_ending(self.inbox))



