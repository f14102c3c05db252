"""Crypto-shredding (callproof/encryption/shredding.py): a period key is destroyed only once
its month and the margin are over and no recording that is not held still needs it; held
recordings (legal hold, open customer request) are re-wrapped to the hold key first, keeping
their payload (so their signed evidence stays valid); every refusal is named and audited."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pytest

from callproof.encryption.keyring import PrivateKeyring
from callproof.encryption.shredding import destroy_expired, rewrap_file
from callproof.storage import SyncDatabase, connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.holds import place_hold_sync
from tests.unit.encryption.keyworld import (
    APRIL,
    MARCH,
    decrypts_with,
    encrypted_recording,
    key_config,
    make_keys,
)
from tests.unit.rights.test_export import file_request

IN_MARCH = "2027-03-10T14:00:00.000000Z"
IN_APRIL = "2027-04-10T14:00:00.000000Z"
AFTER_MARCH = datetime(2027, 4, 9, tzinfo=UTC)  # March over + the 7-day margin; April not


@pytest.fixture
def world(tmp_path, target):
    config = key_config(tmp_path, target)
    ring = make_keys(config)
    return config, ring


def _db(config) -> SyncDatabase:
    return SyncDatabase.open(config.storage.target)


def _delete(config, rec):
    """What retention does to an expired recording: file gone, row 'deleted'."""
    rec["age_path"].unlink()
    conn = connect_sync(config.storage.target)
    conn.execute("UPDATE recordings SET state = 'deleted' WHERE id = ?", (rec["recording_id"],))
    conn.close()


def _audit(config, action):
    conn = connect_sync(config.storage.target)
    rows = conn.execute("SELECT subject, actor, details FROM audit_log WHERE action = ? ORDER BY id",
                        (action,)).fetchall()
    assert verify_chain_sync(conn) is None
    conn.close()
    return [{"subject": s, "actor": a, **json.loads(d)} for s, a, d in rows]


def _shred(config, now=AFTER_MARCH, **kw):
    with _db(config) as db:
        return {o.key_id: o for o in destroy_expired(config, db, now=now, actor="ops", **kw)}


def test_a_period_whose_recordings_are_gone_loses_its_private_key(world):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    backup = config.recording.root.parent / "backup.age"
    shutil.copy(rec["age_path"], backup)
    _delete(config, rec)
    outcomes = _shred(config)
    assert list(outcomes) == [f"consumer_service-2027-0{m}" for m in (2, 3)]
    assert outcomes[MARCH].result == "destroyed"
    after = PrivateKeyring.from_dir(config.encryption.private_keys_dir)
    assert MARCH not in after.key_ids() and APRIL in after.key_ids()
    # the backup copy opens with no key callproof still holds
    assert decrypts_with(backup, after.identities()) is None
    entry = next(e for e in _audit(config, "keys.destroyed") if e["key_id"] == MARCH)
    assert entry["subject"] == f"key:{MARCH}" and entry["actor"] == "ops"
    assert entry["fingerprint"] == ring.identity(MARCH).recipient.fingerprint
    assert ring.identity(MARCH).secret_string() not in json.dumps(entry)


def test_an_unheld_recording_still_there_blocks_the_destruction_and_is_named(world):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    outcome = _shred(config)[MARCH]
    assert outcome.result == "refused"
    assert [b["id"] for b in outcome.blocking] == [rec["recording_id"]]
    assert f"recording {rec['recording_id']} (protocol {rec['protocol']}" in outcome.describe()
    assert "callproof retention sweep" in outcome.describe()
    assert MARCH in PrivateKeyring.from_dir(config.encryption.private_keys_dir).key_ids()
    assert decrypts_with(rec["age_path"], [ring.identity(MARCH)]) == rec["plaintext_sha256"]
    refused = _audit(config, "keys.destroy_refused")
    assert refused[0]["key_id"] == MARCH and refused[0]["blocking_recordings"] == [rec["recording_id"]]


def test_a_period_not_over_by_the_margin_is_left_alone(world):
    config, ring = world
    encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    assert MARCH not in _shred(config, now=datetime(2027, 4, 7, 12, tzinfo=UTC))


def test_a_held_recording_is_rewrapped_to_the_hold_key_then_the_key_goes(world):
    config, ring = world
    held = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    gone = encrypted_recording(config, ring, MARCH, channel="b", retention_until=IN_MARCH)
    backup = config.recording.root.parent / "held-backup.age"
    shutil.copy(held["age_path"], backup)
    _delete(config, gone)
    conn = connect_sync(config.storage.target)
    place_hold_sync(conn, "protocol", protocol=held["protocol"], reason="lawsuit 123", placed_by="legal",
                    at=AFTER_MARCH)
    conn.close()
    outcome = _shred(config)[MARCH]
    assert outcome.result == "destroyed" and outcome.rewrapped == [held["recording_id"]]
    after = PrivateKeyring.from_dir(config.encryption.private_keys_dir)
    hold = after.identity("hold-1")
    assert decrypts_with(held["age_path"], [hold]) == held["plaintext_sha256"]
    assert decrypts_with(backup, after.identities()) is None  # the copy made before the re-wrap
    with _db(config) as db:
        row = db.recordings.get(held["recording_id"])
    assert row["key_ids"] == "hold-1" and row["payload_sha256"] == held["payload_sha256"]
    import hashlib
    assert row["ciphertext_sha256"] == hashlib.sha256(held["age_path"].read_bytes()).hexdigest()
    assert oct(held["age_path"].stat().st_mode & 0o777) == "0o640"
    rewrapped = _audit(config, "recording.rewrapped")
    assert rewrapped[0]["subject"] == f"recording:{held['recording_id']}"
    assert rewrapped[0]["from_keys"] == MARCH and rewrapped[0]["to_keys"] == "hold-1"
    assert not list(held["age_path"].parent.glob(".*.rewrap"))


def test_an_open_customer_request_holds_like_a_legal_hold(world):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    conn = connect_sync(config.storage.target)
    file_request(conn, config, rec["protocol"])
    conn.close()
    outcome = _shred(config)[MARCH]
    assert outcome.result == "destroyed" and outcome.rewrapped == [rec["recording_id"]]
    assert decrypts_with(rec["age_path"], [ring.identity("hold-1")]) == rec["plaintext_sha256"]


def test_a_dry_run_changes_nothing(world):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    _delete(config, rec)
    assert _shred(config, dry_run=True)[MARCH].result == "would-destroy"
    assert MARCH in PrivateKeyring.from_dir(config.encryption.private_keys_dir).key_ids()
    assert _audit(config, "keys.destroyed") == []


def test_a_held_recording_whose_file_is_missing_keeps_the_key(world):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    rec["age_path"].unlink()
    conn = connect_sync(config.storage.target)
    place_hold_sync(conn, "protocol", protocol=rec["protocol"], reason="r", placed_by="legal", at=AFTER_MARCH)
    conn.close()
    outcome = _shred(config)[MARCH]
    assert outcome.result == "failed"
    assert f"recording {rec['recording_id']} could not be re-wrapped" in outcome.describe()
    assert MARCH in PrivateKeyring.from_dir(config.encryption.private_keys_dir).key_ids()


def test_a_rewrap_that_would_change_the_payload_is_refused(world):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    before = rec["age_path"].read_bytes()
    with pytest.raises(Exception, match="payload sha256"):
        rewrap_file(rec["age_path"], [ring.identity(MARCH)], [ring.identity("hold-1").recipient],
                    payload_sha256="0" * 64, already=[ring.identity("hold-1")])
    assert rec["age_path"].read_bytes() == before
    assert not list(rec["age_path"].parent.glob(".*.rewrap"))


def test_a_crash_after_the_rename_is_finished_by_the_next_run(world):
    """The file was re-wrapped but the row still names the period key: the next run only
    measures the file, records it, and destroys the key."""
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    rewrap_file(rec["age_path"], [ring.identity(MARCH)], [ring.identity("hold-1").recipient],
                payload_sha256=rec["payload_sha256"], already=[])
    conn = connect_sync(config.storage.target)
    place_hold_sync(conn, "protocol", protocol=rec["protocol"], reason="r", placed_by="legal", at=AFTER_MARCH)
    conn.close()
    outcome = _shred(config)[MARCH]
    assert outcome.result == "destroyed" and outcome.rewrapped == [rec["recording_id"]]
    with _db(config) as db:
        assert db.recordings.get(rec["recording_id"])["key_ids"] == "hold-1"


def test_a_file_outside_the_recordings_root_is_not_touched(world, tmp_path):
    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    outside = tmp_path / "outside.age"
    shutil.move(rec["age_path"], outside)
    conn = connect_sync(config.storage.target)
    conn.execute("UPDATE recordings SET age_path = ? WHERE id = ?", (str(outside), rec["recording_id"]))
    place_hold_sync(conn, "protocol", protocol=rec["protocol"], reason="r", placed_by="legal", at=AFTER_MARCH)
    conn.close()
    outcome = _shred(config)[MARCH]
    assert outcome.result == "failed" and "recordings root" in outcome.describe()


def test_a_retired_hold_key_takes_the_copies_made_while_held_with_it(world):
    """Released recordings stay on the hold key until retention deletes them; after
    ``keys rotate --hold``, ``keys retire-hold hold-1`` moves whatever is still on the old hold
    key to the new one and destroys the old one, so copies made while they were held die too."""
    from callproof.encryption.keystore import new_hold_key
    from callproof.encryption.shredding import retire_hold_key

    config, ring = world
    rec = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    conn = connect_sync(config.storage.target)
    place_hold_sync(conn, "protocol", protocol=rec["protocol"], reason="r", placed_by="legal", at=AFTER_MARCH)
    conn.close()
    assert _shred(config)[MARCH].result == "destroyed"
    on_hold_1 = config.recording.root.parent / "copy-while-held.age"
    shutil.copy(rec["age_path"], on_hold_1)
    new_hold_key(config.encryption.private_keys_dir, AFTER_MARCH)
    assert "hold-1" not in _shred(config)  # never on its own
    with _db(config) as db:
        outcome = retire_hold_key(config, db, "hold-1", now=AFTER_MARCH, actor="ops")
    assert outcome.result == "destroyed" and outcome.rewrapped == [rec["recording_id"]]
    after = PrivateKeyring.from_dir(config.encryption.private_keys_dir)
    assert "hold-1" not in after.key_ids() and after.hold_key_id == "hold-2"
    assert decrypts_with(rec["age_path"], [after.identity("hold-2")]) == rec["plaintext_sha256"]
    assert decrypts_with(on_hold_1, after.identities()) is None


def test_a_hold_key_an_export_still_needs_is_not_retired(world):
    from callproof.encryption import encrypt
    from callproof.encryption.keyring import KeyringError
    from callproof.encryption.keystore import new_hold_key
    from callproof.encryption.shredding import retire_hold_key

    config, ring = world
    config.rights.export_dir.mkdir(parents=True)
    export = config.rights.export_dir / "request-1-x-1.mp3.age"
    import io
    with export.open("wb") as out:
        encrypt(io.BytesIO(b"mp3"), out, [ring.identity("hold-1").recipient])
    new_hold_key(config.encryption.private_keys_dir, AFTER_MARCH)
    with _db(config) as db, pytest.raises(KeyringError) as err:
        retire_hold_key(config, db, "hold-1", now=AFTER_MARCH, actor="ops")
    assert str(export) in str(err.value) and "still encrypted to it" in str(err.value)
    assert "hold-1" in PrivateKeyring.from_dir(config.encryption.private_keys_dir).key_ids()


def test_every_generation_of_a_period_goes_when_the_period_is_over(world):
    from callproof.encryption.keystore import replace_key

    config, _ = world
    replace_key(config.encryption.private_keys_dir, MARCH, AFTER_MARCH)
    outcomes = _shred(config)
    assert outcomes[MARCH].result == outcomes[f"{MARCH}.2"].result == "destroyed"


def test_keys_list_counts_the_recordings_each_key_opens(world):
    config, ring = world
    a = encrypted_recording(config, ring, MARCH, channel="a", retention_until=IN_MARCH)
    encrypted_recording(config, ring, MARCH, channel="b", retention_until=IN_MARCH)
    encrypted_recording(config, ring, APRIL, channel="c", retention_until=IN_APRIL)
    _delete(config, a)
    with _db(config) as db:
        assert db.keys.recordings_per_key() == {MARCH: 1, APRIL: 1}


def test_retire_hold_refuses_a_period_key(world):
    from callproof.encryption.keyring import KeyringError
    from callproof.encryption.shredding import retire_hold_key

    config, _ = world
    with _db(config) as db, pytest.raises(KeyringError, match="not a hold key"):
        retire_hold_key(config, db, MARCH, now=AFTER_MARCH, actor="ops")
    assert MARCH in PrivateKeyring.from_dir(config.encryption.private_keys_dir).key_ids()
