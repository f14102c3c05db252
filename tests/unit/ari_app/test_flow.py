"""The call flow's step order and persisted outcomes, against a scripted fake ARI.

The fake (tests/fakes/ari.py) answers each playback with PlaybackStarted/PlaybackFinished events
(or a hang-up, when the script says so); storage is the real SQLite layer in
a temporary directory.  The same behaviours are checked against a real
Asterisk in tests/integration.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.flow import CallFlow, Services
from tests.fakes import FakeAri, FakePrompts, FakeRecorder, start_event

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


async def run_call(config, db, *, number="11987654321", hangup_in=None, dtmf_in=None, recorder_fails=False):
    ev = start_event(number)
    inbox = CallInbox(ev["channel"]["id"])
    ari = FakeAri(inbox, hangup_in, dtmf_in)
    recorder = FakeRecorder(recorder_fails)
    services = Services(config=config, db=db, ari=ari, recorder=recorder, prompts=FakePrompts(),
                        wake_sms=lambda: None, clock=lambda: NOW)
    flow = CallFlow(services, inbox, ev)
    await asyncio.wait_for(flow.run(), 5)
    row = await db.calls.get(flow.call_id)
    return flow, ari, recorder, row


async def test_steps_run_in_order_and_are_persisted(config, db):
    _flow, ari, recorder, row = await run_call(config, db)
    kinds = [op[0] if op[0] != "play" else f"play:{op[1]}" for op in ari.ops]
    assert kinds[:4] == ["play:consent", "play:protocol", "play:protocol", "set"]
    assert kinds[-1] == "continue"
    assert recorder.started, "MixMonitor was never started"
    assert row["status"] == "handed_off"
    assert row["consent_outcome"] == "finished" and row["consent_sha256"] == "ab" * 32
    assert row["consent_started_at"] <= row["consent_finished_at"]
    assert len(row["protocol"]) == 17 and row["protocol"].startswith("2026")
    assert row["protocol_read_count"] == 2
    assert row["caller_number"] == "+5511987654321" and row["dialled_number"] == "551130000000"
    handoff_vars = {op[1]: op[2] for op in ari.ops if op[0] == "set"}
    assert handoff_vars["CALLPROOF_PROTOCOL"] == row["protocol"]
    assert handoff_vars["CALLPROOF_RECORDING"].endswith(".wav")
    assert row["protocol"] in handoff_vars["CALLPROOF_RECORDING"]
    assert ("continue", "callproof-handoff", "s", 1) in ari.ops
    sms = await db.outbox.get_for_protocol(row["protocol"])
    assert len(sms) == 1 and sms[0]["state"] == "pending" and sms[0]["destination"] == "+5511987654321"
    assert row["protocol"] in sms[0]["body"]


async def test_hangup_during_consent_gives_no_protocol(config, db):
    _flow, ari, recorder, row = await run_call(config, db, hangup_in="consent")
    assert row["status"] == "abandoned_in_consent"
    assert row["consent_outcome"] == "caller_left"
    assert row["protocol"] is None and row["ended_at"] is not None
    assert not recorder.started
    assert [op for op in ari.ops if op[0] == "play"] == [ari.ops[0]]


async def test_hangup_during_reading_keeps_protocol_and_sms(config, db):
    _flow, _ari, recorder, row = await run_call(config, db, hangup_in="protocol")
    assert row["status"] == "abandoned_in_protocol"
    assert row["protocol"] is not None and row["protocol_read_count"] == 0
    assert not recorder.started
    sms = await db.outbox.get_for_protocol(row["protocol"])
    assert len(sms) == 1  # the caller was given a number: the SMS still goes out


async def test_replay_key_reads_the_protocol_again(config, db):
    _flow, _ari, _recorder, row = await run_call(config, db, dtmf_in={"protocol": "*"})
    assert row["protocol_read_count"] == 3


async def test_dtmf_does_not_skip_consent(config, db):
    _flow, _ari, _recorder, row = await run_call(config, db, dtmf_in={"consent": "#"})
    assert row["consent_outcome"] == "finished"
    assert row["status"] == "handed_off"


@pytest.mark.parametrize("number, reason", [("", "withheld"), ("anonymous", "withheld"), ("$(reboot)", "invalid")])
async def test_unusable_caller_number_gets_a_not_sendable_sms_row(config, db, number, reason):
    _flow, _ari, recorder, row = await run_call(config, db, number=number)
    assert row["status"] == "handed_off"
    sms = await db.outbox.get_for_protocol(row["protocol"])
    assert sms[0]["state"] == "not_sendable" and sms[0]["reason"] == reason
    assert recorder.started and "anonymous" in recorder.started[0][2]


async def test_recording_failure_still_hands_off_and_says_so(config, db):
    _flow, ari, _recorder, row = await run_call(config, db, recorder_fails=True)
    assert row["status"] == "handed_off"
    assert "recording" in (row["error"] or "")
    handoff_vars = {op[1]: op[2] for op in ari.ops if op[0] == "set"}
    assert handoff_vars["CALLPROOF_STATUS"] == "recording_failed"
    assert handoff_vars["CALLPROOF_RECORDING"] == ""
    recs = await db.recordings.for_call(row["id"])
    assert recs[0]["state"] == "failed"


async def test_protocols_of_successive_calls_are_consecutive(config, db):
    protocols = []
    for i in range(3):
        ev = start_event(channel_id=f"1700000000.{10 + i}")
        inbox = CallInbox(ev["channel"]["id"])
        services = Services(config=config, db=db, ari=FakeAri(inbox), recorder=FakeRecorder(),
                            prompts=FakePrompts(), wake_sms=lambda: None, clock=lambda: NOW)
        flow = CallFlow(services, inbox, ev)
        await flow.run()
        protocols.append(int(flow.protocol))
    assert protocols == list(range(protocols[0], protocols[0] + 3))


async def test_a_channel_id_that_is_another_nodes_call_is_refused_not_resumed(config, db):
    """The ARI twin of the AGI flow's test: another node's row under this channel id is not
    this call's; nothing is played on it, the hand-off says channel_id_taken, the row is left."""
    import dataclasses

    from callproof.storage import NewCall

    ev = start_event("11987654321")
    channel = ev["channel"]["id"]
    other = await db.calls.create(NewCall(
        channel_id=channel, uniqueid=channel, linkedid="1.1", caller_number_raw="", caller_number=None,
        caller_name=None, dialled_number="4000", language="pt_BR", started_at=NOW, node="another-node"))
    await db.calls.update(other, consent_outcome="finished")
    config = dataclasses.replace(config, recording=dataclasses.replace(config.recording, node="this-node"))
    inbox = CallInbox(channel)
    ari = FakeAri(inbox, None, None)
    services = Services(config=config, db=db, ari=ari, recorder=FakeRecorder(False), prompts=FakePrompts(),
                        wake_sms=lambda: None, clock=lambda: NOW)
    await asyncio.wait_for(CallFlow(services, inbox, ev).run(), 5)
    assert [op for op in ari.ops if op[0] == "play"] == []
    handoff_vars = {op[1]: op[2] for op in ari.ops if op[0] == "set"}
    assert handoff_vars.get("CALLPROOF_REASON") == "channel_id_taken" and "CALLPROOF_PROTOCOL" not in handoff_vars
    row = await db.calls.get(other)
    assert (row["node"], row["status"], row["protocol"]) == ("another-node", "consent_playing", None)
