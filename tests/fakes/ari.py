"""A scripted ARI: answers each operation as Asterisk 22 would, with the events it
sends (pushed into the call's inbox on the next loop turns), and a fake Recorder."""

from __future__ import annotations

import asyncio

from callproof.ari_app.ari import ChannelGone
from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.recorder import RecordingError
from callproof.callflow.port import LinkLost

ENTRY_PROMPTS = ("request-enter", "request-not-found")


def start_event(number="11987654321", channel_id="1700000000.1"):
    """StasisStart of an inbound call entering [callproof-entry-run]."""
    return {"type": "StasisStart", "args": ["551130000000", "1700000000.0"],
            "channel": {"id": channel_id, "name": "Local/s@callproof-entry-0001;2", "state": "Up",
                        "caller": {"number": number, "name": "Cliente"}, "language": "pt_BR",
                        "dialplan": {"context": "callproof-entry-run", "exten": "s"}}}


class ScriptedAri:
    """Plays prompts as Asterisk reports them.

    ``hangup_in``: the prompt during which the far end hangs up, with Q.850
    ``hangup_cause`` (16: the caller; 38: the network dropped the call).
    ``dtmf_in``: keys typed once a named prompt has started (once per prompt name).
    ``playback_fails_in``: a prompt Asterisk cannot play (PlaybackFinished 'failed').
    ``entries`` (request IVR): per entry prompt played, the keys typed once it started
    (``"HANGUP"`` ends the call instead, ``""`` is silence).  ``variables``: what
    ``get_variable`` finds on the channel."""

    def __init__(self, inbox: CallInbox, hangup_in: str | None = None, dtmf_in: dict[str, str] | None = None, *,
                 hangup_cause: int = 16, playback_fails_in: str | None = None, entries: list[str] | None = None,
                 variables: dict[str, str] | None = None):
        self.inbox = inbox
        self.hangup_in = hangup_in
        self.hangup_cause = hangup_cause
        self.dtmf_in = dict(dtmf_in or {})
        self.playback_fails_in = playback_fails_in
        self.entries = None if entries is None else list(entries)
        self.vars = dict(variables or {})
        self.ops: list[tuple] = []
        self.stopped: list[str] = []
        self.gone = False
        self.playbacks: dict[str, str] = {}  # playback id -> state Asterisk would report (resume tests)
        # Resume tests: the link breaks during this prompt, after Asterisk accepted it (it
        # plays on, no PlaybackFinished reaches us) ...
        self.link_lost_in: str | None = None
        # ... or before Asterisk acknowledged the request (the play raises LinkLost).
        self.unacknowledged_in: str | None = None

    def _emit(self, *events: dict) -> None:
        loop = asyncio.get_running_loop()
        for ev in events:
            loop.call_soon(self.inbox.push, ev)

    def _key(self, channel_id: str, key: str) -> dict:
        return {"type": "ChannelDtmfReceived", "digit": key, "channel": {"id": channel_id}}

    def _hangup(self, channel_id: str, pb: dict) -> list[dict]:
        self.gone = True
        return [{"type": "ChannelHangupRequest", "cause": self.hangup_cause, "channel": {"id": channel_id}},
                {"type": "PlaybackFinished", "playback": {**pb, "state": "failed"}},
                {"type": "StasisEnd", "channel": {"id": channel_id}}]

    def _check(self) -> None:
        if self.gone:
            raise ChannelGone("404")

    async def answer(self, channel_id):
        self._check()
        self.ops.append(("answer",))

    async def play(self, channel_id, media, playback_id, language=None):
        self._check()
        what = playback_id.split("-", 1)[1].rsplit("-", 1)[0]  # cp-<what>-<hex>
        if self.unacknowledged_in == what:
            self.unacknowledged_in = None
            raise LinkLost("ARI link lost: ServerDisconnectedError")
        self.ops.append(("play", what, tuple(media)))
        pb = {"id": playback_id, "target_uri": f"channel:{channel_id}"}
        events = [{"type": "PlaybackStarted", "playback": {**pb, "state": "playing"}}]
        if self.link_lost_in == what:
            self.link_lost_in = None
            self.playbacks[playback_id] = "playing"
            self._emit(*events)
            return
        events += [self._key(channel_id, k) for k in self.dtmf_in.pop(what, "")]
        if self.entries is not None and what in ENTRY_PROMPTS:
            keys = self.entries.pop(0) if self.entries else "HANGUP"
            if keys == "HANGUP":
                self._emit(*events, *self._hangup(channel_id, pb))
                return
            events += [self._key(channel_id, k) for k in keys]
        elif self.hangup_in == what:
            self._emit(*events, *self._hangup(channel_id, pb))
            return
        state = "failed" if self.playback_fails_in == what else "done"
        events.append({"type": "PlaybackFinished", "playback": {**pb, "state": state}})
        self._emit(*events)

    async def playback_state(self, playback_id):
        self.ops.append(("playback_state", playback_id))
        return self.playbacks.get(playback_id)

    async def channel_exists(self, channel_id):
        return not self.gone

    async def stop_playback(self, playback_id):
        self.stopped.append(playback_id)

    async def get_variable(self, channel_id, name):
        self._check()
        self.ops.append(("get", name))
        return self.vars.get(name)

    async def set_variable(self, channel_id, name, value):
        self._check()
        self.ops.append(("set", name, value))

    async def continue_in_dialplan(self, channel_id, context, extension, priority):
        self._check()
        self.ops.append(("continue", context, extension, priority))

    @property
    def asked(self) -> list[str]:
        """The variables the flow read."""
        return [op[1] for op in self.ops if op[0] == "get"]

    def played(self) -> list[str]:
        return [op[1] for op in self.ops if op[0] == "play"]

    def variables(self) -> dict[str, str]:
        return {op[1]: op[2] for op in self.ops if op[0] == "set"}


class FakeRecorder:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.started: list[tuple] = []
        self.tracked: dict[str, int] = {}

    def track(self, uniqueid, recording_id, path):
        self.tracked[uniqueid] = recording_id

    def untrack(self, uniqueid):
        self.tracked.pop(uniqueid, None)

    async def start(self, channel_name, uniqueid, path):
        if self.fail:
            raise RecordingError("MixMonitor refused: test")
        self.started.append((channel_name, uniqueid, str(path)))
