"""A recording finalised from the journal (storage was down during the call) gets its signed
evidence record and its ``recording.finalised`` audit entry when the journal is applied, with
the same facts and the same database's key as a live finalisation."""

from __future__ import annotations

import json

from callproof.callflow.journal_replay import journal_for
from callproof.evidence import records
from callproof.evidence.keys import Signer, trusted_from_config
from callproof.storage import calls as calls_table
from callproof.storage import connect_sync
from callproof.storage.evidence import for_recording_sync
from callproof.storage.journal import replay_sync
from tests.unit.storage.test_journal import CHANNEL, NOW, new_call

from .world import signed_config

SHA = "cd" * 32


def journal_a_recorded_call(journal) -> None:
    """A handed-off call whose recording's start and end both wait in the journal."""
    journal.append(CHANNEL, "recording.create", path="/rec/a.wav", recording={
        "protocol": None, "caller_number": "11987654321", "started_at": NOW, "retention_until": None,
        "retention_class": "consumer_service"})
    journal.append(CHANNEL, "call.update", changes={"status": "recording", "recording_started_at": NOW})
    journal.append(CHANNEL, "call.update", changes={"status": "handed_off", "handed_off_at": NOW})
    journal.append(CHANNEL, "recording.finalise", path="/rec/a.wav", facts={
        "size_bytes": 1044, "duration_ms": 125, "sha256": SHA, "finalised_at": NOW})
    journal.append(CHANNEL, "call.ended", ended_at=NOW, hangup_cause="Hangup:Normal Clearing")


def _replay(config):
    signer = Signer.load(config.evidence.signing_key)
    records.use_signer(signer, config.storage.target)
    conn = connect_sync(config.storage.target)
    try:
        call_id = calls_table.create_sync(conn, new_call(), NOW)
        for status in ("protocol_reading", "protocol_given"):
            conn.execute("UPDATE calls SET status = ? WHERE id = ?", (status, call_id))
        journal = journal_for(config)
        journal_a_recorded_call(journal)
        replay_sync(conn, journal, "2026-11-22T15:40:00.000000Z")
        rec = conn.execute("SELECT id, state FROM recordings").fetchone()
        stored = for_recording_sync(conn, rec[0])
        entries = conn.execute("SELECT details FROM audit_log WHERE action = 'recording.finalised'").fetchall()
        again = replay_sync(conn, journal_for(config), NOW)  # nothing left: nothing written twice
        count = conn.execute("SELECT count(*) FROM evidence_records").fetchone()[0]
    finally:
        conn.close()
        records.use_signer(None, config.storage.target)
    return signer, rec, stored, entries, again, count


def test_a_recording_finalised_from_the_journal_gets_a_signed_record(tmp_path, target):
    config = signed_config(tmp_path, target=target)
    signer, rec, stored, entries, again, count = _replay(config)
    assert rec[1] == "finalised"
    assert stored is not None and stored["key_fingerprint"] == signer.fingerprint
    checked = records.check(stored["record"], stored["signature"], stored["key_fingerprint"],
                            trusted_from_config(config), recording_id=rec[0])
    assert checked.signed, checked.detail
    record = json.loads(stored["record"])
    assert record["recording"]["sha256"] == SHA and record["recording"]["size_bytes"] == 1044
    assert record["recording"]["finalised_at"] == NOW  # when the call ended, not when the journal was applied
    assert record["signed_at"] == "2026-11-22T15:40:00.000000Z"
    assert record["call"]["handed_off_at"] == NOW
    [(details,)] = entries  # the entry `evidence seal` and auditors read, as a live finalisation writes it
    assert json.loads(details) == {"sha256": SHA, "size_bytes": 1044, "duration_ms": 125, "journalled": True,
                                   "evidence_sha256": stored["record_sha256"],
                                   "evidence_key": signer.fingerprint}
    assert count == 1 and again.applied == 0
