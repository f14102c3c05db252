"""Link faults below the flow: which REST errors are a broken link, AMI logging in again,
and what the application reconciles then."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from callproof.ari_app import ari as ari_module
from callproof.ari_app.app import Application
from callproof.ari_app.recorder import AmiLink
from callproof.callflow.port import LinkLost
from callproof.storage import NewCall
from tests.call_rows import advance


@pytest.mark.parametrize("exc", [aiohttp.ServerDisconnectedError(), aiohttp.ClientConnectionError("reset"),
                                 ConnectionResetError(), RuntimeError("Session is closed")])
async def test_a_broken_link_is_link_lost(exc):
    async def fails():
        raise exc

    with pytest.raises(LinkLost):
        await ari_module._call(fails())


async def test_other_runtime_errors_stay_what_they_are():
    async def fails():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        await ari_module._call(fails())


async def test_reconciliation_runs_when_ami_logs_in_again_not_the_first_time():
    link = AmiLink("127.0.0.1", 1, "u", "p")
    ran = []

    async def reconcile():
        ran.append(True)

    link.after_relogin(reconcile)
    link.manager.send_action = lambda action: asyncio.sleep(0)  # filters "installed"
    link._on_login(link.manager)
    await asyncio.sleep(0.05)
    assert ran == []
    link._on_login(link.manager)
    await asyncio.sleep(0.05)
    assert ran == [True]


class GoneAri:
    def __init__(self, alive: set[str]):
        self.alive = alive

    async def channel_ids(self):
        return set(self.alive)


class WatchingRecorder:
    def __init__(self, tracked):
        self._tracked = set(tracked)
        self.gone: list[str] = []

    def tracked(self):
        return set(self._tracked)

    def is_tracking(self, uniqueid):
        return uniqueid in self._tracked

    def stopped(self, uniqueid):
        self.gone.append(uniqueid)


async def test_after_ami_is_back_calls_that_hung_up_meanwhile_are_finalised(config, db):
    app = Application(config)
    app.db = db
    call_id = await db.calls.create(NewCall("c-unrec", "c-unrec", None, "1", None, None, None, "pt_BR",
                                            "2026-11-22T15:00:00Z"))
    await advance(db, call_id, "handed_off")
    app.handed_off = {"c-rec": 99, "c-unrec": call_id, "c-alive": 98}
    app.recorder = WatchingRecorder({"c-rec", "c-alive"})
    app.ari = GoneAri(alive={"c-alive"})
    app.connected.set()
    await app._reconcile_after_ami()
    await asyncio.gather(*app._background)
    assert app.recorder.gone == ["c-rec"]  # its recording is finalised, then the call completed
    row = await db.calls.get(call_id)
    assert row["status"] == "completed" and "AMI link was down" in row["hangup_cause"]
    assert "c-alive" in app.handed_off


class UnconfirmedRecorder:
    """MixMonitor starts, but AMI loses its reply/MixMonitorStart with the link (``fails`` times)."""

    def __init__(self, fails: int):
        self.fails, self.starts, self.tracked = fails, 0, {}

    def track(self, uniqueid, recording_id, path):
        self.tracked[uniqueid] = recording_id

    async def start(self, channel_name, uniqueid, path):
        from callproof.callflow.port import RecordingError

        self.starts += 1
        if self.starts <= self.fails:
            raise RecordingError("MixMonitor not confirmed: TimeoutError")


async def _record_with(config, db, recorder, mixmonitor_runs: bool):
    from callproof.ari_app.call_events import CallInbox
    from callproof.ari_app.flow import CallFlow, Services
    from tests.fakes import FakeAri, FakePrompts, start_event

    ev = start_event()
    inbox = CallInbox(ev["channel"]["id"])
    ari = FakeAri(inbox)
    real_start = recorder.start

    async def start(channel_name, uniqueid, path):
        if mixmonitor_runs:  # Asterisk runs it on our file, whatever AMI said
            ari.vars["MIXMONITOR_FILENAME"] = str(path)
        await real_start(channel_name, uniqueid, path)

    recorder.start = start
    flow = CallFlow(Services(config=config, db=db, ari=ari, recorder=recorder, prompts=FakePrompts(),
                             wake_sms=lambda: None), inbox, ev)
    assert await asyncio.wait_for(flow.run(), 5) == "handed_off"
    return await db.recordings.for_call(flow.call_id)


async def test_unconfirmed_mixmonitor_running_on_our_file_counts_as_started(config, db):
    recorder = UnconfirmedRecorder(fails=1)
    (rec,) = await _record_with(config, db, recorder, mixmonitor_runs=True)
    assert recorder.starts == 1, "started a second MixMonitor on a file already recorded"
    assert rec["state"] == "recording"


async def test_unconfirmed_mixmonitor_not_running_is_started_once_more(config, db):
    recorder = UnconfirmedRecorder(fails=1)
    (rec,) = await _record_with(config, db, recorder, mixmonitor_runs=False)
    assert recorder.starts == 2 and rec["state"] == "recording"


class HeldSession:
    """ARI while another process holds our application: registered twice, then gone."""

    def __init__(self, answers: list[bool]):
        self.answers, self.closed = answers, False

    async def is_registered(self):
        return self.answers.pop(0)

    async def close(self):
        self.closed = True


async def test_a_replaced_application_stops_its_flows_and_registers_again_once_free(config, caplog):
    app = Application(config)
    app.replaced_check_seconds = 0.01
    session = HeldSession([True, True, False])
    app.ari = session  # type: ignore[assignment]
    flow = asyncio.ensure_future(asyncio.sleep(60))  # a call this process was driving
    app.tasks["c-1"] = flow
    app.route_event({"type": "ApplicationReplaced", "application": config.ari.app})
    await asyncio.wait_for(asyncio.gather(*app._background), 2)
    assert flow.cancelled() and "c-1" in app._interrupted  # the other process resumes it
    assert session.closed and session.answers == []  # closed (run() reconnects) once Asterisk let go
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("ari.application")] == [
        "ari.application_replaced", "ari.application_free"]


class OutOfStasisAri:
    """ARI back after a REST request broke: the channel is up but no longer in our application."""

    def __init__(self, up: bool):
        self.up = up

    async def application_channel_ids(self):
        return []

    async def channel_exists(self, channel_id):
        return self.up


class TrackingRecorder:
    def __init__(self):
        self.tracked: dict[str, int] = {}

    def track(self, uniqueid, recording_id, path):
        self.tracked[uniqueid] = recording_id


class LinkLostFlow:
    """A flow whose last request (the hand-off) broke with the link."""

    def __init__(self, channel_id):
        self.channel_id, self.outcome, self.link_lost = channel_id, None, True

    async def run(self):
        return "interrupted"


@pytest.mark.parametrize("up", [True, False])
async def test_a_flow_cut_off_in_its_hand_off_is_settled_as_a_reconnect_would(config, db, tmp_path, up):
    """The continueInDialplan was carried out, its answer lost: the channel left our application.
    The call must not stay 'recording' for ever: up, it is handed off and watched for its hang-up;
    gone, it is settled."""
    app = Application(config)
    app.db, app.ari, app.recorder = db, OutOfStasisAri(up), TrackingRecorder()  # type: ignore[assignment]
    app.connected.set()
    call_id = await db.calls.create(NewCall("c-cut", "c-cut", None, "1", None, None, None, "pt_BR",
                                            "2026-11-22T15:00:00Z"))
    await advance(db, call_id, "recording")
    rec_id = await db.recordings.create(call_id, None, str(tmp_path / "c.wav"), None, "2026-11-22T15:00:30Z")
    await app._run_flow(LinkLostFlow("c-cut"))  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*app._background), 2)
    row = await db.calls.get(call_id)
    if up:
        assert row["status"] == "handed_off" and app.handed_off == {"c-cut": call_id}
        assert app.recorder.tracked == {"c-cut": rec_id}  # finalised, then completed, on its Hangup
    else:
        assert row["status"] == "recording" and row["ended_at"]  # (a hang-up in 'recording' keeps it)
        assert "ARI link was down" in row["hangup_cause"]
    assert "c-cut" not in app._interrupted
