"""Exact resume after an ARI drop, against the scripted ARI: what is played again, what
is followed, what the row says.  The application cancels every flow when the link ends
and starts a new one per kept channel (ari_app/app.py); here that is done by hand."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callproof.ari_app.app import reconnect_delay
from callproof.ari_app.ari import AriSession
from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.flow import CallFlow, Services
from callproof.callflow.call_store import CallStore
from callproof.storage import EvidenceOrderError
from callproof.storage.call_status import CallStatus
from tests.fakes import FakeAri, FakePrompts, FakeRecorder, start_event

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


def new_flow(config, db, ari_setup=None, recorder=None, variables=None):
    ev = start_event()
    inbox = CallInbox(ev["channel"]["id"])
    ari = FakeAri(inbox, variables=variables)
    if ari_setup:
        ari_setup(ari)
    services = Services(config=config, db=db, ari=ari, recorder=recorder or FakeRecorder(), prompts=FakePrompts(),
                        wake_sms=lambda: None, clock=lambda: NOW)
    return CallFlow(services, inbox, ev), ari, inbox


async def interrupt(flow: CallFlow, until) -> None:
    """Run the flow until ``until()`` holds, then cancel it as the application does on a drop."""
    task = asyncio.ensure_future(flow.run())
    deadline = asyncio.get_running_loop().time() + 30  # generous: a loaded CI machine is slow, not wrong
    while not await asyncio.wait_for(until(), 30):
        assert asyncio.get_running_loop().time() < deadline, "the flow never reached the point to cut"
        assert not task.done(), f"the flow ended before the point to cut: {task.result()!r}"
        await asyncio.sleep(0.005)
    task.cancel()
    # a flow that does not end on its cancellation is a failure to name, not a hang until the
    # suite's timeout (seen once on a loaded CI: this test waited 600 s)
    done, _ = await asyncio.wait([task], timeout=30)
    assert done, "the cancelled flow did not end within 30 s"
    if not task.cancelled():
        task.exception()  # retrieved, as gather(return_exceptions=True) did


async def row_of(db):
    return await db.calls.get_by_channel(start_event()["channel"]["id"])


async def test_consent_still_playing_is_followed_not_replayed(config, db):
    first, _, _ = new_flow(config, db, lambda a: setattr(a, "link_lost_in", "consent"))

    async def accepted():
        row = await row_of(db)
        return bool(row and row["consent_playback_id"])

    await interrupt(first, accepted)
    row = await row_of(db)
    playback = row["consent_playback_id"]
    assert row["status"] == "consent_playing" and row["consent_outcome"] is None

    second, ari2, inbox = new_flow(config, db, lambda a: a.playbacks.update({playback: "playing"}))
    # Asterisk finishes the announcement after the reconnect: its PlaybackFinished arrives.
    asyncio.get_running_loop().call_later(0.05, inbox.push, {
        "type": "PlaybackFinished", "playback": {"id": playback, "state": "done",
                                                 "target_uri": f"channel:{second.channel_id}"}})
    assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert ari2.played() == ["protocol", "protocol"], "the announcement was played again"
    assert ("playback_state", playback) in ari2.ops
    row = await row_of(db)
    assert row["consent_outcome"] == "finished" and row["protocol_read_count"] == 2
    assert row["status"] == "handed_off"


async def test_consent_that_ended_while_away_is_not_replayed(config, db, caplog):
    first, _, _ = new_flow(config, db, lambda a: setattr(a, "link_lost_in", "consent"))

    async def accepted():
        row = await row_of(db)
        return bool(row and row["consent_playback_id"])

    await interrupt(first, accepted)
    second, ari2, _ = new_flow(config, db)  # Asterisk no longer has the playback; the channel is up
    with caplog.at_level(logging.INFO, logger="callproof.flow"):
        assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert ari2.played() == ["protocol", "protocol"]
    followed = [r for r in caplog.records if r.getMessage() == "consent.followed"]
    assert followed and followed[0].fields["seen"] == "ended while the link was down"


async def test_unacknowledged_consent_is_played_again_and_nothing_is_failed(config, db):
    first, _, _ = new_flow(config, db, lambda a: setattr(a, "unacknowledged_in", "consent"))
    assert await asyncio.wait_for(first.run(), 30) == "interrupted"
    assert first.link_lost and first.outcome is None
    row = await row_of(db)
    assert row["status"] == "consent_playing" and row["error"] is None and row["consent_playback_id"] is None

    second, ari2, _ = new_flow(config, db)
    assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert ari2.played() == ["consent", "protocol", "protocol"]
    assert (await row_of(db))["consent_outcome"] == "finished"


async def test_finished_consent_is_never_heard_again(config, db):
    """The drop came after the announcement finished, before the protocol was allocated."""
    first, ari1, _ = new_flow(config, db)
    real_allocate = db.protocols.allocate_for_call_within
    gate = asyncio.Event()

    async def stuck(*args, **kwargs):
        await gate.wait()
        return await real_allocate(*args, **kwargs)

    db.protocols.allocate_for_call_within = stuck
    try:
        async def consent_done():
            row = await row_of(db)
            return bool(row and row["consent_outcome"] == "finished")
        await interrupt(first, consent_done)
    finally:
        db.protocols.allocate_for_call_within = real_allocate
    second, ari2, _ = new_flow(config, db)
    assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert ari1.played() == ["consent"] and ari2.played() == ["protocol", "protocol"]


async def test_reading_in_progress_is_followed_and_counted_once(config, db):
    first, _, _ = new_flow(config, db)
    first_ari = first.port.s.ari
    plays = 0
    real_play = first_ari.play

    async def play(channel_id, media, playback_id, language=None):
        nonlocal plays
        if "protocol" in playback_id:
            plays += 1
            if plays == 2:
                first_ari.link_lost_in = "protocol"
        await real_play(channel_id, media, playback_id, language)

    first_ari.play = play

    async def second_reading_accepted():
        row = await row_of(db)
        return bool(row and row["protocol_read_count"] == 1 and row["protocol_playback_id"])

    await interrupt(first, second_reading_accepted)
    row = await row_of(db)
    assert row["status"] == "protocol_reading"
    playback = row["protocol_playback_id"]

    second, ari2, _ = new_flow(config, db)  # it finished while we were away
    assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert ari2.played() == [], "no reading was started again"
    row = await row_of(db)
    assert row["protocol_read_count"] == 2 and row["protocol_playback_id"] is None
    assert ("playback_state", playback) in ari2.ops


async def test_running_mixmonitor_is_adopted_not_started_again(config, db):
    """The drop came after the recording row and MixMonitor, before status 'recording'."""
    first, _, _ = new_flow(config, db)
    real_update = CallStore.update

    async def no_recording_status(store, **changes):
        if changes.get("status") == CallStatus.RECORDING:
            raise asyncio.CancelledError  # the flow stops right there, as if cancelled
        await real_update(store, **changes)

    CallStore.update = no_recording_status  # type: ignore[method-assign]
    try:
        await asyncio.gather(asyncio.wait_for(first.run(), 30), return_exceptions=True)
    finally:
        CallStore.update = real_update  # type: ignore[method-assign]
    row = await row_of(db)
    (rec,) = await db.recordings.for_call(row["id"])
    assert row["status"] == "protocol_given" and rec["state"] == "recording"

    recorder = FakeRecorder()
    second, _, _ = new_flow(config, db, recorder=recorder, variables={"MIXMONITOR_FILENAME": rec["path"]})
    assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert recorder.started == [], "MixMonitor was started a second time"
    assert recorder.tracked == {second.channel_id: rec["id"]}
    assert len(await db.recordings.for_call(row["id"])) == 1
    row = await row_of(db)
    assert row["status"] == "handed_off" and row["recording_started_at"] is not None


async def test_stopped_mixmonitor_is_started_on_the_same_row(config, db):
    first, _, _ = new_flow(config, db)
    real_update = CallStore.update

    async def no_recording_status(store, **changes):
        if changes.get("status") == CallStatus.RECORDING:
            raise asyncio.CancelledError
        await real_update(store, **changes)

    CallStore.update = no_recording_status  # type: ignore[method-assign]
    try:
        await asyncio.gather(asyncio.wait_for(first.run(), 30), return_exceptions=True)
    finally:
        CallStore.update = real_update  # type: ignore[method-assign]
    row = await row_of(db)
    (rec,) = await db.recordings.for_call(row["id"])
    recorder = FakeRecorder()
    second, _, _ = new_flow(config, db, recorder=recorder)  # MIXMONITOR_FILENAME not set
    assert await asyncio.wait_for(second.run(), 30) == "handed_off"
    assert [Path(p) for _, _, p in recorder.started] == [Path(rec["path"])]
    assert [r["id"] for r in await db.recordings.for_call(row["id"])] == [rec["id"]]


async def test_storage_refuses_evidence_out_of_order(config, db):
    flow, _, _ = new_flow(config, db)
    assert await asyncio.wait_for(flow.run(), 30) == "handed_off"
    row = await row_of(db)
    with pytest.raises(EvidenceOrderError, match="consent must have finished before the protocol"):
        await db.calls.update(row["id"], consent_started_at="2026-11-22T16:00:00Z")
    with pytest.raises(EvidenceOrderError, match="recording_started_at is before protocol_read_finished_at"):
        await db.calls.update(row["id"], recording_started_at="2026-11-22T15:00:00Z")
    with pytest.raises(EvidenceOrderError, match="consent_finished_at is before consent_started_at"):
        await db.calls.update(row["id"], consent_finished_at="2026-11-22T15:00:00Z")


async def test_no_protocol_for_a_consent_that_did_not_finish(config, db):
    flow, _, _ = new_flow(config, db, lambda a: setattr(a, "link_lost_in", "consent"))

    async def accepted():
        row = await row_of(db)
        return bool(row and row["consent_playback_id"])

    await interrupt(flow, accepted)
    row = await row_of(db)
    with pytest.raises(EvidenceOrderError):
        await db.protocols.allocate_for_call(row["id"], year=2026, allocated_at=NOW, sms=None)
    assert (await row_of(db))["protocol"] is None


def test_reconnect_delay_first_attempt_fast_then_capped():
    assert all(0.05 <= reconnect_delay(0, 1.0) <= 0.1 for _ in range(100))
    assert all(reconnect_delay(n, 1.0) <= 1.0 for n in range(100) for _ in range(5))
    assert max(reconnect_delay(10, 1.0) for _ in range(200)) > 0.9  # reaches the cap
    assert min(reconnect_delay(10, 1.0) for _ in range(200)) < 0.6  # with jitter


async def test_failed_connect_leaves_no_unclosed_session(caplog):
    import gc
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            with pytest.raises(Exception):  # noqa: B017 (refused: aiohttp's ClientConnectorError)
                await AriSession.connect(f"http://127.0.0.1:{port}/", "u", "p", "app")
        gc.collect()
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if "Unclosed client session" in r.getMessage()]
