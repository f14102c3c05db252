"""A recording finalised while storage was unavailable ends encrypted like a live one: the
call encrypts it to its period key in the pass that hashes it and journals the age file's
digests with the measurements; the replay records the row encrypted and seals a record that
binds both sha256; the long-running process then removes the plaintext (or, when the call
could not know the period, encrypts it) by the code of ``callproof recording encrypt``."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
from pathlib import Path

from callproof.callflow.journal_replay import journal_for
from callproof.callflow.recording_files import NO_PERIOD_IN_JOURNAL, finalise_recording, journal_recording_end
from callproof.encryption import decrypt
from callproof.encryption.atrest import use_keyring
from callproof.encryption.migration import settle_recordings
from callproof.evidence import records
from callproof.evidence.keys import Signer, trusted_from_config
from callproof.integrity import verify_recordings
from callproof.storage import Database, SyncDatabase, connect_sync
from callproof.storage import recordings as recordings_store
from callproof.storage.journal import replay_sync
from tests.unit.encryption.fakekeys import FakeKeyring
from tests.unit.encryption.world import CLASS, UNTIL, encrypted_config, unfinalised_call, write_keyring
from tests.unit.evidence.world import NOW_ISO

CHANNEL = "ch-1"
REPLAYED_AT = "2026-03-10T17:05:00.000000+00:00"


def _locked(*_args, **_kwargs):
    raise sqlite3.OperationalError("database is locked")


def _finalise_under_a_lock(config, rec: dict, keyring: FakeKeyring):
    """The row exists; storage refuses the finalisation's write: the call journals it."""
    journal = journal_for(config)

    async def go() -> None:
        db = await Database.open(config.storage.database)
        use_keyring(keyring, db.path)
        try:
            db.recordings.finalise = _locked  # type: ignore[method-assign]
            assert await finalise_recording(db, rec["recording_id"], rec["path"], NOW_ISO, attempts=1,
                                            journal=journal, channel=CHANNEL)
        finally:
            use_keyring(None, db.path)
            await db.close()

    asyncio.run(go())
    journal.flush()
    return journal


def _replay(config, journal):
    records.use_signer(Signer.load(config.evidence.signing_key), config.storage.database)
    conn = connect_sync(config.storage.database)
    try:
        result = replay_sync(conn, journal, REPLAYED_AT)
        row = recordings_store.get_sync(conn, result_id(conn))
        ev = conn.execute("SELECT record, signature, key_fingerprint FROM evidence_records").fetchone()
        audit = [json.loads(d) for (d,) in
                 conn.execute("SELECT details FROM audit_log WHERE action LIKE 'recording.encrypt%'")]
    finally:
        conn.close()
        records.use_signer(None, config.storage.database)
    return result, row, ev, audit


def result_id(conn) -> int:
    return conn.execute("SELECT id FROM recordings").fetchone()[0]


def _settle(config, ids) -> dict:
    conn = connect_sync(config.storage.database)
    try:
        return settle_recordings(config, SyncDatabase.wrap(conn), ids, actor="callproof")
    finally:
        conn.close()


def _plaintext_of(age: Path, keyring: FakeKeyring) -> bytes:
    out = io.BytesIO()
    with age.open("rb") as fh:
        decrypt(fh, out, keyring.identities())
    return out.getvalue()


def _verify(config) -> list[dict]:
    conn = connect_sync(config.storage.database)
    try:
        return list(verify_recordings(SyncDatabase.wrap(conn), config.recording.root,
                                      trusted=trusted_from_config(config)))
    finally:
        conn.close()


def test_a_finalisation_storage_refused_ends_encrypted_with_a_record_binding_both_digests(tmp_path):
    config = encrypted_config(tmp_path)
    rec = unfinalised_call(config)
    keyring = FakeKeyring()
    journal = _finalise_under_a_lock(config, rec, keyring)
    age = Path(str(rec["path"]) + ".age")
    [entry] = [e for e in journal.entries_for(CHANNEL) if e["op"] == "recording.finalise"]
    assert entry["facts"]["encryption"]["key_ids"] == [f"{CLASS}-2027-03"]
    assert age.exists() and rec["path"].exists()  # the plaintext stays until a row says encrypted

    result, row, ev, audit = _replay(config, journal)
    plain_sha = hashlib.sha256(rec["plaintext"]).hexdigest()
    assert (row["state"], row["encryption"], row["age_path"]) == ("finalised", "encrypted", str(age))
    assert row["sha256"] == plain_sha and row["ciphertext_sha256"] == hashlib.sha256(age.read_bytes()).hexdigest()
    record = json.loads(ev[0])  # signed, and bound to the plaintext and the age payload, as a live call's
    checked = records.check(ev[0], ev[1], ev[2], trusted_from_config(config), recording_id=row["id"])
    assert checked.signed, checked.detail
    assert record["recording"]["sha256"] == plain_sha
    assert record["encryption"]["payload_sha256"] == row["payload_sha256"]
    assert [a["via"] for a in audit] == ["journal"]
    assert result.to_settle == {row["id"]}

    assert _settle(config, result.to_settle) == {row["id"]: ("finished", "plaintext left by an interrupted run "
                                                                         "removed")}
    assert not rec["path"].exists()
    assert hashlib.sha256(_plaintext_of(age, keyring)).hexdigest() == plain_sha
    [verified] = _verify(config)
    assert verified["result"] == "ok" and verified["encrypted"], verified


def test_a_journalled_row_gives_the_call_its_period_key(tmp_path):
    """The row itself waits in the journal: its retention facts there choose the period key."""
    config = encrypted_config(tmp_path)
    rec = unfinalised_call(config)
    journal = journal_for(config)
    journal.append(CHANNEL, "recording.create", path=str(rec["path"]), recording={
        "protocol": rec["protocol"], "caller_number": None, "started_at": NOW_ISO, "retention_until": UNTIL,
        "retention_class": CLASS})
    keyring = FakeKeyring()
    assert asyncio.run(journal_recording_end(journal, CHANNEL, rec["path"], NOW_ISO, attempts=1, keyring=keyring))
    [entry] = [e for e in journal.entries_for(CHANNEL) if e["op"] == "recording.finalise"]
    enc = entry["facts"]["encryption"]
    assert enc["key_ids"] == [f"{CLASS}-2027-03"] and enc["age_path"] == str(rec["path"]) + ".age"
    assert entry["facts"]["sha256"] == hashlib.sha256(rec["plaintext"]).hexdigest()
    assert _plaintext_of(Path(enc["age_path"]), keyring) == rec["plaintext"]


def test_without_the_period_the_replay_says_pending_and_settling_encrypts_it(tmp_path):
    """The row was written before storage went away: the call cannot tell the period, so the
    replay marks it pending with why, and settling encrypts it once the keys are there."""
    config = encrypted_config(tmp_path)
    rec = unfinalised_call(config)
    keyring = FakeKeyring()
    journal = journal_for(config)
    assert asyncio.run(journal_recording_end(journal, CHANNEL, rec["path"], NOW_ISO, attempts=1, keyring=keyring))
    journal.flush()
    [entry] = [e for e in journal.entries_for(CHANNEL) if e["op"] == "recording.finalise"]
    assert entry["facts"]["encryption_pending"] == NO_PERIOD_IN_JOURNAL
    assert not Path(str(rec["path"]) + ".age").exists()

    result, row, _ev, audit = _replay(config, journal)
    assert (row["encryption"], row["encryption_error"]) == ("pending", NO_PERIOD_IN_JOURNAL)
    assert audit == [{"reason": NO_PERIOD_IN_JOURNAL, "via": "journal"}]

    from callproof.storage.timefmt import parse_db_time
    keyring.recipients_for(CLASS, parse_db_time(UNTIL))
    write_keyring(config, keyring)
    assert _settle(config, result.to_settle) == {row["id"]: ("encrypted", f"{CLASS}-2027-03")}
    age = Path(str(rec["path"]) + ".age")
    assert not rec["path"].exists() and _plaintext_of(age, keyring) == rec["plaintext"]
    [verified] = _verify(config)
    assert verified["result"] == "ok" and verified["encrypted"], verified


def test_the_long_running_replayer_settles_what_it_replayed(tmp_path):
    """``callproof run`` / ``callproof fastagi``: their replayer removes the plaintext itself,
    off the calls' time, once the replayed row says encrypted."""
    from callproof.callflow.journal_replay import JournalReplayer

    config = encrypted_config(tmp_path)
    rec = unfinalised_call(config)
    keyring = FakeKeyring()
    journal = _finalise_under_a_lock(config, rec, keyring)

    async def go() -> dict:
        records.use_signer(Signer.load(config.evidence.signing_key), config.storage.database)
        db = await Database.open(config.storage.database)
        replayer = JournalReplayer(db, journal, config)
        try:
            assert await replayer.replay_once()
            await replayer.settled()
            row = await db.recordings.get(rec["recording_id"])
            assert row is not None
            return row
        finally:
            replayer.close()
            await db.close()
            records.use_signer(None, config.storage.database)

    row = asyncio.run(go())
    assert row["encryption"] == "encrypted" and not rec["path"].exists()
    assert _plaintext_of(Path(row["age_path"]), keyring) == rec["plaintext"]


def test_the_agi_hangup_handler_settles_what_its_replay_finalised(tmp_path):
    """Classic AGI and FastAGI: the hangup handler brings the journal in itself; the caller has
    gone, so it removes the plaintext of what that replay recorded encrypted there and then."""
    from datetime import UTC, datetime

    from callproof.callflow.endings import finalise

    config = encrypted_config(tmp_path)
    rec = unfinalised_call(config, channel=CHANNEL)
    keyring = FakeKeyring()
    journal = _finalise_under_a_lock(config, rec, keyring)

    async def go() -> dict:
        records.use_signer(Signer.load(config.evidence.signing_key), config.storage.database)
        db = await Database.open(config.storage.database)
        try:
            await finalise(db, config, CHANNEL, cause=16, cause_raw="16", now=datetime.now(UTC), journal=journal)
            row = await db.recordings.get(rec["recording_id"])
            assert row is not None
            return row
        finally:
            await db.close()
            records.use_signer(None, config.storage.database)

    row = asyncio.run(go())
    assert row["encryption"] == "encrypted" and not rec["path"].exists()
    assert _plaintext_of(Path(row["age_path"]), keyring) == rec["plaintext"]
