"""The evidence package of an encrypted recording: built with the private keyring, it holds
the plaintext recording (decrypted, streaming, into the zip) and verifies offline like any
other; without the private keyring, or from a tampered age file, nothing is written."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from callproof.evidence.package import PackageError, build_package
from callproof.storage import SyncDatabase, connect_sync
from tests.unit.encryption.world import encrypted_call, encrypted_config

from .test_package import offline_verify


def test_an_encrypted_recording_is_packaged_decrypted_and_verifies_offline(tmp_path):
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    out = tmp_path / "evidence.zip"
    conn = connect_sync(config.storage.database)
    try:
        summary = build_package(SyncDatabase.wrap(conn), config, rec["protocol"], out)
    finally:
        conn.close()
    assert summary["recording_id"] == rec["recording_id"]
    with zipfile.ZipFile(out) as zf:
        assert zf.read("recording.wav") == rec["plaintext"]
        record = zf.read("record.json").decode()
    assert hashlib.sha256(rec["plaintext"]).hexdigest() in record and '"payload_sha256"' in record
    result = offline_verify(out, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "evidence package VERIFIED" in result.stdout


def test_no_package_without_the_private_keyring_or_from_a_tampered_file(tmp_path):
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    conn = connect_sync(config.storage.database)
    db = SyncDatabase.wrap(conn)
    try:
        data = bytearray(rec["age_path"].read_bytes())
        data[-2] ^= 1
        rec["age_path"].write_bytes(bytes(data))
        with pytest.raises(PackageError, match="cannot be decrypted"):
            build_package(db, config, rec["protocol"], tmp_path / "a.zip")
        assert not (tmp_path / "a.zip").exists()
        for p in config.encryption.private_keys_dir.iterdir():
            p.unlink()
        with pytest.raises(PackageError, match="needs the private keyring"):
            build_package(db, config, rec["protocol"], tmp_path / "b.zip")
        assert not (tmp_path / "b.zip").exists()
    finally:
        conn.close()
