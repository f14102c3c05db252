"""What the ARI application keeps per call is gone once the call is over.

The Application routes scripted ARI events (tests/fakes/ari.py) to a real call flow,
a real Recorder on a fake AMI link, and real SQLite storage.  After each call its
per-call state (flows, tasks, inboxes, the handed-off and hang-up-cause dicts, the
recorder's tracking) must be empty, and its rows final: on the happy path and when
the caller hangs up during the hand-off, when the AMI Hangup never comes, and when
MixMonitor does not start.  (The soak in bench/bench_soak.py measures the same thing
as RSS over thousands of real calls.)
"""

from __future__ import annotations

import asyncio
import wave
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from callproof.ari_app.app import Application
from callproof.ari_app.recorder import Recorder
from callproof.callflow.decisions import iso
from tests.fakes import FakePrompts, ScriptedAri, start_event

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
CHANNEL = "1700000000.1"
CHANNEL_NAME = "Local/s@callproof-entry-0001;2"
PER_CALL = ("flows", "tasks", "inboxes", "handed_off", "hangup_causes", "recordings_tracked",
            "recordings_finalising", "recordings_starting")


class Reply(dict):
    @property
    def success(self) -> bool:
        return self.get("Response") == "Success"


class FakeAmi:
    """The AmiLink surface the Recorder and the Application use. MixMonitor writes a
    short WAV file and reports MixMonitorStart, unless ``refuse``."""

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.handlers: dict[str, list[Callable[[Any, Any], Any]]] = defaultdict(list)

    def on_event(self, name: str, callback: Callable[[Any, Any], Any]) -> None:
        self.handlers[name].append(callback)

    async def wait_ready(self, timeout: float) -> None:  # logged in (AmiLink waits while reconnecting)
        return None

    def emit(self, name: str, **fields: str) -> None:
        message = {"Event": name, **fields}
        for callback in list(self.handlers[name]):
            callback(self, message)

    async def action(self, fields: dict[str, str], timeout: float = 5.0) -> Reply:
        if self.refuse:
            return Reply(Response="Error", Message="No such channel")
        path = Path(fields["File"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\0\0" * 800)
        assert fields["Channel"] == CHANNEL_NAME
        asyncio.get_running_loop().call_soon(lambda: self.emit("MixMonitorStart", Uniqueid=CHANNEL))
        return Reply(Response="Success")


class AppAri(ScriptedAri):
    """The scripted ARI, its events going through Application.route_event as aioari's would."""

    def __init__(self, app: Application, **kwargs: Any):
        super().__init__(inbox=None, **kwargs)  # type: ignore[arg-type]
        self.app = app
        self.alive: set[str] = {CHANNEL}  # what GET /channels lists

    def _emit(self, *events: dict) -> None:
        loop = asyncio.get_running_loop()
        for ev in events:
            loop.call_soon(self.app.route_event, ev)

    async def channel_ids(self) -> set[str]:
        return set(self.alive)


def make_app(config, db, *, refuse_recording: bool = False, ari_class: type[AppAri] = AppAri,
             **ari_kwargs: Any) -> tuple[Application, AppAri, FakeAmi]:
    app = Application(config, clock=lambda: NOW)
    app.db = db
    app.prompts = FakePrompts()  # type: ignore[assignment]
    ami = FakeAmi(refuse_recording)
    app.recorder = Recorder(ami, db, "", now_iso=lambda: iso(NOW), on_finalised=app._recording_finalised)  # type: ignore[arg-type]
    ami.on_event("Hangup", app._on_ami_hangup)
    app.sender = SimpleNamespace(wake=lambda: None)  # type: ignore[assignment]
    ari = ari_class(app, **ari_kwargs)
    app.ari = ari  # type: ignore[assignment]
    app.connected.set()
    return app, ari, ami


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def per_call_state(app: Application) -> dict[str, int]:
    return {k: v for k, v in app.stats().items() if k in PER_CALL and v}


async def settled(app: Application, db) -> dict:
    """Wait for the flow, the after-call work and the background tasks; the call row."""
    await until(lambda: not app.tasks)
    await until(lambda: not app._background and not app.recorder._finalising)
    return dict(await db.calls.get_by_channel(CHANNEL))


async def test_a_completed_call_leaves_nothing_behind(config, db):
    app, ari, ami = make_app(config, db)
    app.route_event(start_event(channel_id=CHANNEL))
    await until(lambda: not app.tasks)
    assert app.handed_off == {CHANNEL: (await db.calls.get_by_channel(CHANNEL))["id"]}
    ari.alive.clear()
    ami.emit("Hangup", Uniqueid=CHANNEL, **{"Cause-txt": "Normal Clearing"})
    row = await settled(app, db)
    assert row["status"] == "completed" and row["hangup_cause"] == "Hangup:Normal Clearing"
    assert [r["state"] for r in await db.recordings.for_call(row["id"])] == ["finalised"]
    assert per_call_state(app) == {}


class HangupBeforeHandoff(AppAri):
    """The caller hangs up while the hand-off variables are set: AMI's Hangup is handled
    before the flow says it is handing off, and the continue then finds no channel."""

    ami: FakeAmi

    async def set_variable(self, channel_id, name, value):
        await super().set_variable(channel_id, name, value)
        if name == "CALLPROOF_STATUS":
            self.alive.clear()
            self.ami.emit("Hangup", Uniqueid=channel_id, **{"Cause-txt": "Normal Clearing"})
            pb = {"id": "none", "target_uri": f"channel:{channel_id}"}
            self._emit(*self._hangup(channel_id, pb))


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "recording-failed"])
async def test_a_hangup_during_the_handoff_leaves_nothing_behind(config, db, recorded):
    app, ari, ami = make_app(config, db, ari_class=HangupBeforeHandoff, refuse_recording=not recorded)
    ari.ami = ami
    app.route_event(start_event(channel_id=CHANNEL))
    row = await settled(app, db)
    assert ("continue", "callproof-handoff", "s", 1) not in ari.ops
    # the caller left after the protocol was read: the status stays, ended_at is set
    assert row["status"] == ("recording" if recorded else "protocol_given") and row["ended_at"]
    assert [r["state"] for r in await db.recordings.for_call(row["id"])] == ["finalised" if recorded else "failed"]
    assert per_call_state(app) == {}


@pytest.mark.parametrize("alive", [True, False], ids=["channel-still-up", "channel-gone"])
async def test_a_call_whose_ami_hangup_never_comes_is_completed_once_its_channel_is_gone(config, db, alive):
    app, ari, _ami = make_app(config, db)
    app.route_event(start_event(channel_id=CHANNEL))
    await until(lambda: not app.tasks)
    if not alive:
        ari.alive.clear()
    await app.settle_gone_channels()  # what the application does every gone_check_seconds
    row = await settled(app, db)
    recordings = [r["state"] for r in await db.recordings.for_call(row["id"])]
    if alive:  # an agent is still talking: nothing changes
        assert row["status"] == "handed_off" and recordings == ["recording"]
        assert per_call_state(app) == {"handed_off": 1, "recordings_tracked": 1}
        return
    assert row["status"] == "completed" and "no AMI Hangup" in row["hangup_cause"]
    assert recordings == ["finalised"]
    assert per_call_state(app) == {}


async def test_a_recording_that_did_not_start_leaves_nothing_behind(config, db):
    app, ari, ami = make_app(config, db, refuse_recording=True)
    app.route_event(start_event(channel_id=CHANNEL))
    await until(lambda: not app.tasks)
    assert ari.variables()["CALLPROOF_STATUS"] == "recording_failed"
    assert per_call_state(app) == {"handed_off": 1}  # waiting for the hang-up, no recording to wait for
    ari.alive.clear()
    ami.emit("Hangup", Uniqueid=CHANNEL, **{"Cause-txt": "Normal Clearing"})
    row = await settled(app, db)
    assert row["status"] == "completed"
    assert [r["state"] for r in await db.recordings.for_call(row["id"])] == ["failed"]
    assert per_call_state(app) == {}


async def test_a_failed_call_handed_on_gets_its_end_when_it_hangs_up(config, db):
    """A step failed after the protocol: the call is recorded and handed to the dialplan all the
    same, so its hang-up is still watched and writes when it ended (and nothing is kept after)."""
    app, ari, ami = make_app(config, db)
    app.prompts = FakePrompts(missing=frozenset({"protocol-is"}))  # type: ignore[assignment]
    app.route_event(start_event(channel_id=CHANNEL))
    await until(lambda: not app.tasks)
    row = dict(await db.calls.get_by_channel(CHANNEL))
    assert row["status"] == "failed" and row["protocol"] and row["ended_at"] is None
    assert app.handed_off == {CHANNEL: row["id"]}
    ari.alive.clear()
    ami.emit("Hangup", Uniqueid=CHANNEL, **{"Cause-txt": "Normal Clearing"})
    row = await settled(app, db)
    assert row["status"] == "failed" and row["ended_at"] and row["hangup_cause"] == "Hangup:Normal Clearing"
    assert [r["state"] for r in await db.recordings.for_call(row["id"])] == ["finalised"]
    assert per_call_state(app) == {}


async def test_drain_waits_until_the_call_is_completed_not_only_its_recording(config, db):
    """Shutdown drains the recorder: a call whose recording is finalised but whose completion
    is still being written must be waited for too (else the database closes under it)."""
    app, ari, ami = make_app(config, db)
    gate = asyncio.Event()
    complete = app._recording_finalised

    async def slow_completion(uniqueid: str) -> None:
        await gate.wait()
        await complete(uniqueid)

    assert app.recorder is not None
    app.recorder.on_finalised = slow_completion
    app.route_event(start_event(channel_id=CHANNEL))
    await until(lambda: not app.tasks)
    call_id = (await db.calls.get_by_channel(CHANNEL))["id"]
    ari.alive.clear()
    ami.emit("Hangup", Uniqueid=CHANNEL, **{"Cause-txt": "Normal Clearing"})

    async def recording_final() -> bool:
        return [r["state"] for r in await db.recordings.for_call(call_id)] == ["finalised"]

    async with asyncio.timeout(5):
        while not await recording_final():
            await asyncio.sleep(0.01)
    drain = asyncio.ensure_future(app.recorder.drain())
    await asyncio.sleep(0.05)
    assert not drain.done() and app.stats()["recordings_finalising"] == 1  # the completion is under way
    gate.set()
    await asyncio.wait_for(drain, 5)
    assert (await db.calls.get(call_id))["status"] == "completed"
