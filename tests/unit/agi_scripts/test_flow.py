"""The AGI flow (classic and FastAGI share it) against a scripted fake Asterisk AGI peer.

Storage is the real SQLite layer; the fake (tests/fakes/agi.py) answers AGI commands as Asterisk 22 does
(``200 result=...``, ``511`` on a dead channel).  The same behaviours run against a
real Asterisk in tests/integration/test_agi_calls.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callproof.agi_scripts.channel import AgiCommandError, AgiHangup, parse_reply, quote
from callproof.agi_scripts.flow import AgiFlow, strip_sound
from tests.fakes import FakeAsterisk, FakePrompts

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


async def run(config, db, fake):
    flow = AgiFlow(config, db, FakePrompts(), fake, clock=lambda: NOW)
    outcome = await asyncio.wait_for(flow.run(), 5)
    row = await db.calls.get_by_channel(fake.env["agi_uniqueid"])
    return flow, outcome, row


async def test_whole_flow_in_order_with_the_same_rows_as_ari(config, db):
    fake = FakeAsterisk()
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "handed_off"
    assert fake.played == ["consent", "protocol", "protocol"]
    first_mixmonitor = next(i for i, c in enumerate(fake.commands) if c.startswith("EXEC MixMonitor"))
    last_playback = max(i for i, c in enumerate(fake.commands) if c.startswith("EXEC Playback"))
    assert last_playback < first_mixmonitor
    assert row["status"] == "handed_off" and row["consent_outcome"] == "finished"
    assert row["consent_sha256"] == "ab" * 32 and row["protocol_read_count"] == 2
    assert len(row["protocol"]) == 17 and row["protocol"].startswith("2026")
    assert row["caller_number"] == "+5511987654321" and row["dialled_number"] == "551130000000"
    assert row["linkedid"] == "1700000000.0"
    assert fake.vars["CALLPROOF_PROTOCOL"] == row["protocol"]
    assert fake.vars["CALLPROOF_STATUS"] == "ok"
    rec = (await db.recordings.for_call(row["id"]))[0]
    assert fake.vars["CALLPROOF_RECORDING"] == rec["path"]
    assert Path(rec["path"]).name.startswith(f"{row['protocol']}_11987654321_20261122-")
    sms = await db.outbox.get_for_protocol(row["protocol"])
    assert len(sms) == 1 and sms[0]["state"] == "pending" and sms[0]["destination"] == "+5511987654321"


async def test_consent_playback_is_not_interruptible(config, db):
    fake = FakeAsterisk()
    await run(config, db, fake)
    consent = next(c for c in fake.commands if c.startswith("EXEC Playback"))
    assert consent == 'EXEC Playback "/prompts/pt_BR/consent"'  # Playback: no escape digits


@pytest.mark.parametrize("step, status", [("consent", "abandoned_in_consent"),
                                          ("protocol", "abandoned_in_protocol"),
                                          ("record", "protocol_given")])
async def test_hangup_during_each_step(config, db, step, status):
    fake = FakeAsterisk(hangup_in=step)
    _flow, _outcome, row = await run(config, db, fake)
    assert row["status"] == status and row["ended_at"] is not None
    assert "CALLPROOF_STATUS" not in fake.vars or fake.vars["CALLPROOF_STATUS"] != "ok"
    if step == "consent":
        assert row["protocol"] is None and row["consent_outcome"] == "caller_left"
    else:
        assert len(await db.outbox.get_for_protocol(row["protocol"])) == 1


async def test_hangup_while_answering_is_an_abandoned_call(config, db):
    fake = FakeAsterisk(hangup_in="enter")
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "abandoned_in_consent" == row["status"] and row["protocol"] is None
    assert not fake.played


async def test_mixmonitor_failure_still_hands_off_with_recording_failed(config, db):
    fake = FakeAsterisk(mixmonitor_fails=True)
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "handed_off" and fake.vars["CALLPROOF_STATUS"] == "recording_failed"
    assert fake.vars["CALLPROOF_RECORDING"] == "" and fake.vars["CALLPROOF_REASON"] == "recording_not_started"
    rec = (await db.recordings.for_call(row["id"]))[0]
    assert rec["state"] == "failed"


async def test_missing_prompt_fails_to_the_dialplan(config, db):
    fake = FakeAsterisk(playback_status="FAILED")
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "failed"
    assert fake.vars["CALLPROOF_STATUS"] == "failed" and fake.vars["CALLPROOF_REASON"] == "playback_failed"
    assert row["status"] == "failed"


async def test_storage_locked_sets_status_and_reason(tmp_path, monkeypatch):
    """Another process holds the database's write lock: the caller hears the consent, then is
    handed off at once with storage_unavailable; the journal brings the row in afterwards."""
    from callproof.storage import Database
    from callproof.storage.journal import Journal, ReplayConnection
    from tests.fakes.flow_config import flow_config

    config = flow_config(tmp_path)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, call_wait_seconds=0.3))
    async with Database.open(config.storage.database) as db:
        locker = sqlite3.connect(config.storage.database, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("UPDATE protocol_sequences SET last_value = last_value WHERE 0")
        journal = Journal(config.storage.journal_path)
        fake = FakeAsterisk()
        flow = AgiFlow(config, db, FakePrompts(), fake)
        flow.journal = journal
        outcome = await asyncio.wait_for(flow.run(), 5)
        locker.execute("ROLLBACK")
        locker.close()
        assert outcome == "failed"
        assert fake.vars["CALLPROOF_STATUS"] == "failed" and fake.vars["CALLPROOF_REASON"] == "storage_unavailable"
        assert "CALLPROOF_PROTOCOL" not in fake.vars  # none could be allocated
        assert sum("consent" in p for p in fake.played) == 1, fake.played
        ReplayConnection(config.storage.database, 1000).replay(journal)
        row = await db.calls.get_by_channel(fake.env["agi_uniqueid"])
        assert row["status"] == "failed" and row["error"].startswith("storage_unavailable")
        assert row["consent_outcome"] == "finished" and row["protocol"] is None


async def test_step_by_step_shares_state_through_the_call_row(config, db):
    outcomes, fake = [], None
    for step in ("consent", "protocol", "read", "record", "handoff"):
        fake_step = FakeAsterisk(args=(step, "551130000000", "1700000000.0", ""))
        if fake is not None:
            fake_step.vars.update({k: v for k, v in fake.vars.items() if k.startswith("CALLPROOF")})
        fake = fake_step
        _, outcome, row = await run(config, db, fake)
        outcomes.append((step, outcome, fake.vars.get("CALLPROOF_STATUS")))
        if step == "protocol":
            assert fake.vars["CALLPROOF_PROTOCOL"] == row["protocol"]
    assert [o[2] for o in outcomes] == ["ok", "ok", "ok", "ok", "ok"]
    assert row["status"] == "handed_off" and row["protocol_read_count"] == 2


async def test_protocol_before_consent_is_refused(config, db):
    fake = FakeAsterisk(args=("protocol", "", "", ""))
    _, outcome, row = await run(config, db, fake)
    assert outcome == "failed" and fake.vars["CALLPROOF_REASON"] == "consent_required" and row is None


async def test_unknown_step_is_refused_by_name(config, db):
    fake = FakeAsterisk(args=("rm -rf", "", "", ""))
    _, outcome, _ = await run(config, db, fake)
    assert outcome == "failed" and fake.vars["CALLPROOF_REASON"] == "bad_step"


@pytest.mark.parametrize("caller", ['../../etc/passwd', '$(reboot)"; rm -rf /', "ｌ１２３", "a" * 5000, ""])
async def test_hostile_caller_ids_stay_out_of_paths(config, db, caller):
    fake = FakeAsterisk(caller=caller)
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "handed_off" and row["caller_number_raw"] == caller
    rec = (await db.recordings.for_call(row["id"]))[0]
    path = Path(rec["path"])
    assert path.is_relative_to(config.recording.root)
    assert path.name.split("_")[1] in ("anonymous", "123") or path.name.split("_")[1].isdigit()


def test_reply_parsing():
    assert parse_reply("200 result=1 (a (b) c)").data == "a (b) c"
    assert parse_reply("200 result=0 endpos=8000").tail.strip() == "endpos=8000"
    with pytest.raises(AgiHangup):
        parse_reply("511 Command Not Permitted on a dead channel or intercept routine")
    with pytest.raises(AgiHangup):
        parse_reply("200 result=-1 (hangup)")
    with pytest.raises(AgiCommandError):
        parse_reply("510 Invalid or unknown command")
    with pytest.raises(ValueError):
        quote('x" ; EXEC System "reboot')
    assert strip_sound("sound:/a/b") == "/a/b" and strip_sound("digits/1") == "digits/1"


@pytest.mark.parametrize("asked, expected", [("mobile_telecom", "mobile_telecom"), ("", "consumer_service")])
async def test_recording_gets_the_same_retention_class_as_with_ari(config, db, asked, expected):
    fake = FakeAsterisk(args=("all", "551130000000", "1700000000.0", "", asked, ""))
    _, _outcome, row = await run(config, db, fake)
    rec = (await db.recordings.for_call(row["id"]))[0]
    assert rec["retention_class"] == expected and rec["retention_until"] > rec["started_at"]


@pytest.mark.parametrize(("extra_env", "args", "served_by"), [
    ({}, ("all", "551130000000", "1700000000.0", "", "", ""), "agi"),
    ({"agi_network": "yes", "agi_request": "agi://127.0.0.1:4573/callproof"},
     ("all", "551130000000", "1700000000.0", "", "", ""), "fastagi"),
    # dialplan/callproof.conf's [callproof-fallback]: Stasis() failed, the last argument says so
    ({}, ("all", "551130000000", "1700000000.0", "", "", "", "fallback"), "agi_fallback"),
    ({"agi_network": "yes", "agi_request": "agi://127.0.0.1:4573/callproof"},
     ("all", "551130000000", "1700000000.0", "", "", "", "fallback"), "fastagi_fallback"),
])
async def test_the_row_says_which_path_served_the_call(config, db, extra_env, args, served_by):
    fake = FakeAsterisk(args=args)
    fake.env.update(extra_env)
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "handed_off" and row["served_by"] == served_by
    assert fake.played == ["consent", "protocol", "protocol"]  # a fallback call hears the same


async def test_storage_lost_after_the_protocol_the_call_goes_on_with_it(tmp_path):
    """The protocol exists, then another process takes the write lock: the caller still hears
    the whole reading, MixMonitor starts, the hand-off carries the protocol; the journal then
    brings every step in, the row handed off and saying why it was written late."""
    from callproof.storage import Database
    from callproof.storage.journal import Journal, ReplayConnection
    from tests.fakes.flow_config import flow_config

    config = flow_config(tmp_path)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, call_wait_seconds=0.3))
    holder: list[sqlite3.Connection] = []

    class LockedAfterProtocol(FakeAsterisk):
        async def command(self, line: str):
            if line.startswith("EXEC Playback") and not line.endswith('consent"') and not holder:
                other = sqlite3.connect(config.storage.database, isolation_level=None)
                other.execute("BEGIN EXCLUSIVE")
                other.execute("UPDATE protocol_sequences SET last_value = last_value WHERE 0")
                holder.append(other)
            return await super().command(line)

    async with Database.open(config.storage.database) as db:
        journal = Journal(config.storage.journal_path)
        fake = LockedAfterProtocol()
        flow = AgiFlow(config, db, FakePrompts(), fake, journal=journal)
        outcome = await asyncio.wait_for(flow.run(), 10)
        holder[0].execute("ROLLBACK")
        holder[0].close()
        assert outcome == "handed_off" and fake.played == ["consent", "protocol", "protocol"]
        assert any(c.startswith("EXEC MixMonitor") for c in fake.commands)
        assert fake.vars["CALLPROOF_STATUS"] == "ok" and fake.vars["CALLPROOF_PROTOCOL"] == flow.flow.protocol
        row = await db.calls.get_by_channel(fake.env["agi_uniqueid"])
        assert row["status"] == "protocol_reading"  # what storage took before the lock
        ReplayConnection(config.storage.database, 1000).replay(journal)
        row = await db.calls.get_by_channel(fake.env["agi_uniqueid"])
        assert row["status"] == "handed_off" and row["protocol_read_count"] == 2
        assert row["error"].startswith("storage_unavailable: database locked")
        [rec] = await db.recordings.for_call(row["id"])
        assert rec["state"] == "recording" and rec["protocol"] == row["protocol"]


async def test_a_failure_after_the_protocol_still_records_and_hands_off_with_it(config, db):
    """The reading cannot be played: the call fails, but it has its protocol, so the agents get
    it (CALLPROOF_PROTOCOL) and the call is recorded all the same."""

    class ReadingFails(FakeAsterisk):
        async def command(self, line: str):
            reply = await super().command(line)
            if line.startswith("EXEC Playback") and not line.endswith('consent"'):
                self.vars["PLAYBACKSTATUS"] = "FAILED"
            return reply

    fake = ReadingFails()
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "failed" and row["status"] == "failed" and row["protocol"]
    assert fake.vars["CALLPROOF_STATUS"] == "failed" and fake.vars["CALLPROOF_PROTOCOL"] == row["protocol"]
    [rec] = await db.recordings.for_call(row["id"])
    assert fake.vars["CALLPROOF_RECORDING"] == rec["path"] and rec["protocol"] == row["protocol"]
    assert any(c.startswith("EXEC MixMonitor") for c in fake.commands)


async def test_a_hang_up_asterisk_notices_late_is_a_hang_up_not_a_failed_playback(config, db):
    """FastAGI: the caller hangs up in the announcement; Asterisk's Playback ends FAILED, and the
    next command or two still see the channel up before Asterisk marks it dead.  The row must
    say what happened (the caller left in the consent), not 'failed: playback_failed'."""

    class NoticedLate(FakeAsterisk):
        status_checks = 0

        async def command(self, line: str):
            if line == "CHANNEL STATUS" and self.vars.get("PLAYBACKSTATUS") == "FAILED":
                self.status_checks += 1
                if self.status_checks == 3:
                    self.dead = True
            return await super().command(line)

    fake = NoticedLate(playback_status="FAILED", hangup_cause=16)
    _flow, outcome, row = await run(config, db, fake)
    assert outcome == "abandoned_in_consent"
    assert row["status"] == "abandoned_in_consent" and row["error"] is None, dict(row)
    assert fake.played == ["consent"] and "CALLPROOF_STATUS" not in fake.vars


async def test_a_channel_id_that_is_another_nodes_call_is_refused_not_resumed(config, db):
    """Two nodes whose Asterisks give the same channel id (no systemname): the row found is
    not this call's, so nothing is played on it and the other node's row is left alone."""
    from callproof.storage import NewCall

    fake = FakeAsterisk()
    other = await db.calls.create(NewCall(
        channel_id=fake.env["agi_uniqueid"], uniqueid=fake.env["agi_uniqueid"], linkedid="1.1",
        caller_number_raw="", caller_number=None, caller_name=None, dialled_number="4000", language="pt_BR",
        started_at=NOW, node="another-node"))
    await db.calls.update(other, consent_outcome="finished")
    config = dataclasses.replace(config, recording=dataclasses.replace(config.recording, node="this-node"))
    _, outcome, row = await run(config, db, fake)
    assert outcome == "failed" and fake.vars["CALLPROOF_REASON"] == "channel_id_taken"
    assert fake.played == [] and "CALLPROOF_PROTOCOL" not in fake.vars
    assert (row["id"], row["node"], row["status"], row["protocol"]) == (other, "another-node", "consent_playing", None)


async def test_a_call_row_names_its_node(config, db):
    config = dataclasses.replace(config, recording=dataclasses.replace(config.recording, node="node-7"))
    _, outcome, row = await run(config, db, FakeAsterisk())
    assert outcome == "handed_off" and row["node"] == "node-7"
