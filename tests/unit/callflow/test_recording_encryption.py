"""Finalisation encrypts the recording in the pass that hashes it (the one function ARI,
classic AGI and FastAGI share): the plaintext is replaced by ``<name>.wav.age`` (0640) that
decrypts to the exact bytes whose sha256 the row and the signed record hold; when it cannot
be encrypted the call is not failed, the plaintext stays and the row says why."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import stat
from pathlib import Path

import pytest

from callproof.callflow.recording_files import finalise_recording
from callproof.encryption import decrypt, read_header
from callproof.encryption.atrest import use_keyring
from callproof.storage import Database, NewCall
from tests.unit.callflow.test_recording_files import NOW, write_wav
from tests.unit.encryption.fakekeys import FakeKeyring

UNTIL = "2027-03-10T14:00:00.000000Z"


async def _recording(db: Database, path: Path, retention_until: str | None = UNTIL,
                     retention_class: str = "consumer") -> int:
    call_id = await db.calls.create(NewCall("ch-1", "u", "l", "+5511912345678", "+5511912345678",
                                            None, "4000", "pt_BR", NOW))
    return await db.recordings.create(call_id, None, str(path), "5511", NOW, retention_until,
                                      retention_class)


def _run(tmp_path: Path, keyring, *, retention_until: str | None = UNTIL, retention_class: str = "consumer",
         before=None):
    path = tmp_path / "rec.wav"
    data = write_wav(path, seconds=3)
    if before:
        before(path)

    async def go():
        db = await Database.open(tmp_path / "cp.db", now=lambda: NOW)
        use_keyring(keyring, db.path)
        try:
            rec_id = await _recording(db, path, retention_until, retention_class)
            assert await finalise_recording(db, rec_id, path, NOW, attempts=1)
            row = await db.recordings.get(rec_id)
            return row, await db.evidence.for_recording(rec_id)
        finally:
            use_keyring(None, db.path)
            await db.close()

    row, evidence = asyncio.run(go())
    return path, data, row, evidence


def _audit(tmp_path: Path, action: str) -> list[dict]:
    import sqlite3
    conn = sqlite3.connect(tmp_path / "cp.db")
    try:
        return [json.loads(d) for (d,) in conn.execute("SELECT details FROM audit_log WHERE action = ?", (action,))]
    finally:
        conn.close()


def test_the_recording_is_replaced_by_an_age_file_that_decrypts_to_the_measured_bytes(tmp_path):
    keyring = FakeKeyring()
    path, data, row, evidence = _run(tmp_path, keyring)
    age = Path(str(path) + ".age")
    assert not path.exists()                      # no plaintext left on disk
    assert stat.S_IMODE(age.stat().st_mode) == 0o640
    out = io.BytesIO()
    with age.open("rb") as fh:
        digests = decrypt(fh, out, keyring.identities())
    assert out.getvalue() == data
    assert row["sha256"] == hashlib.sha256(data).hexdigest() == digests.plaintext_sha256
    assert row["size_bytes"] == len(data)
    assert (row["encryption"], row["age_path"], row["key_ids"]) == ("encrypted", str(age), "consumer-2027-03")
    assert row["ciphertext_sha256"] == hashlib.sha256(age.read_bytes()).hexdigest()
    assert row["payload_sha256"] == digests.payload_sha256
    with age.open("rb") as fh:
        header = read_header(fh)
    assert [s.type for s in header.stanzas] == ["X25519"]  # to the period key only
    record = json.loads(evidence["record"])
    assert record["recording"]["sha256"] == row["sha256"]
    assert record["encryption"] == {"format": "age-v1", "payload_sha256": digests.payload_sha256,
                                    "key_ids": ["consumer-2027-03"]}
    [entry] = _audit(tmp_path, "recording.encrypted")
    assert entry["payload_sha256"] == digests.payload_sha256 and entry["key_ids"] == ["consumer-2027-03"]


def test_without_a_period_key_the_call_finalises_plaintext_and_the_row_says_pending(tmp_path):
    path, data, row, evidence = _run(tmp_path, FakeKeyring(missing=frozenset({"consumer"})))
    assert path.read_bytes() == data and not Path(str(path) + ".age").exists()
    assert row["state"] == "finalised" and row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["encryption"] == "pending"
    assert "no period key consumer-2027-03" in row["encryption_error"]
    assert "encryption" not in json.loads(evidence["record"])
    [entry] = _audit(tmp_path, "recording.encryption_pending")
    assert "consumer-2027-03" in entry["reason"]


def test_a_keyring_that_could_not_be_loaded_leaves_the_recording_pending(tmp_path):
    path, data, row, _ = _run(tmp_path, "the public keyring cannot be read: /keys: no such directory")
    assert path.read_bytes() == data
    assert row["encryption"] == "pending" and "cannot be read" in row["encryption_error"]


def test_a_recording_kept_for_ever_has_no_period_key_and_stays_pending(tmp_path):
    path, _data, row, _ = _run(tmp_path, FakeKeyring(), retention_until=None)
    assert path.exists() and row["encryption"] == "pending"
    assert "no retention expiry" in row["encryption_error"]


def test_a_file_in_the_way_of_the_age_file_is_left_alone(tmp_path):
    stray = b"not mine"

    def plant(path: Path) -> None:
        Path(str(path) + ".age").write_bytes(stray)

    path, data, row, _ = _run(tmp_path, FakeKeyring(), before=plant)
    assert Path(str(path) + ".age").read_bytes() == stray  # O_EXCL: never overwritten
    assert path.read_bytes() == data
    assert row["encryption"] == "pending" and "there already" in row["encryption_error"]


def test_encryption_off_keeps_the_plaintext_and_says_nothing(tmp_path):
    path, data, row, evidence = _run(tmp_path, None)
    assert path.read_bytes() == data and row["encryption"] is None
    assert "encryption" not in json.loads(evidence["record"])


@pytest.mark.parametrize("umask", [0o077])
def test_the_age_file_is_0640_whatever_the_umask(tmp_path, umask):
    import os
    old = os.umask(umask)
    try:
        path, _, _, _ = _run(tmp_path, FakeKeyring())
    finally:
        os.umask(old)
    assert stat.S_IMODE(Path(str(path) + ".age").stat().st_mode) == 0o640
