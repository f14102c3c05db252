"""``recording verify`` on encrypted recordings: without any private key the age payload's
sha256 and its plaintext size are checked against the signed record; with ``--plaintext``
the file is decrypted and its plaintext sha256 checked too.  A changed payload, a re-wrap
(new header, same payload: still ok) and a missing private keyring say what they are."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from callproof.encryption import rewrap
from callproof.evidence.keys import trusted_from_config
from callproof.integrity import verify_recordings
from callproof.storage import connect_sync
from tests.unit.encryption.world import encrypted_call, encrypted_config

from .test_records import _toml, main


def cli(config, tmp_path: Path, *argv: str) -> int:
    p = tmp_path / "callproof.toml"
    enc = config.encryption
    p.write_text(_toml(config) + f'[encryption]\nenabled = true\npublic_keys_dir = "{enc.public_keys_dir}"\n'
                 f'private_keys_dir = "{enc.private_keys_dir}"\n')
    p.chmod(0o600)
    return main(["--config", str(p), *argv])


def _verify(config, identities=None):
    conn = connect_sync(config.storage.database)
    try:
        return list(verify_recordings(conn, config.recording.root, trusted=trusted_from_config(config),
                                      identities=identities))
    finally:
        conn.close()


def test_an_encrypted_recording_verifies_without_a_key_and_with_it(tmp_path, capsys):
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    (item,) = _verify(config)
    assert (item["result"], item["encrypted"], item["path"]) == ("ok", True, str(rec["age_path"]))
    assert item["detail"] == "payload matches"
    (item,) = _verify(config, rec["keyring"].identities())
    assert item["result"] == "ok" and item["detail"] == "decrypted: plaintext matches"
    assert cli(config, tmp_path, "recording", "verify", "--plaintext", "-v") == 0
    out = capsys.readouterr().out
    assert "decrypted: plaintext matches" in out and "ok 1 (signed)" in out


def test_a_changed_payload_is_a_mismatch(tmp_path, capsys):
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    data = bytearray(rec["age_path"].read_bytes())
    data[-5] ^= 1
    rec["age_path"].write_bytes(bytes(data))
    (item,) = _verify(config)
    assert item["result"] == "mismatch" and "signed evidence record says" in item["detail"]
    assert cli(config, tmp_path, "recording", "verify") == 1
    assert "MISMATCH 1" in capsys.readouterr().out


def test_a_truncated_age_file_is_a_mismatch_and_does_not_decrypt(tmp_path):
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    data = rec["age_path"].read_bytes()
    rec["age_path"].write_bytes(data[:-10])
    (item,) = _verify(config)
    assert item["result"] == "mismatch" and "age payload hashes to" in item["detail"]
    (item,) = _verify(config, rec["keyring"].identities())
    assert item["result"] == "unreadable" and "fails authentication" in item["detail"]


def test_a_rewrapped_recording_still_verifies(tmp_path):
    """A legal hold re-wraps the header to the hold key: the payload, which the record binds, is the same."""
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    keyring = rec["keyring"]
    out = io.BytesIO()
    with rec["age_path"].open("rb") as fh:
        rewrap(fh, out, keyring.identities(), keyring.hold_recipients().recipients)
    rec["age_path"].write_bytes(out.getvalue())
    (item,) = _verify(config)
    assert item["result"] == "ok"
    (item,) = _verify(config, [keyring.hold])  # only the hold key: still decrypts
    assert item["result"] == "ok" and item["detail"] == "decrypted: plaintext matches"


def test_plaintext_without_the_private_keyring_says_what_is_missing(tmp_path, capsys):
    config = encrypted_config(tmp_path)
    encrypted_call(config)
    for p in config.encryption.private_keys_dir.iterdir():
        p.unlink()
    assert cli(config, tmp_path, "recording", "verify", "--plaintext") == 2
    err = capsys.readouterr().err
    assert "--plaintext needs the private keyring" in err and "no hold key" in err


@pytest.mark.parametrize("plaintext", [False, True])
def test_the_plaintext_is_gone_and_verify_reads_the_age_file(tmp_path, plaintext):
    config = encrypted_config(tmp_path)
    rec = encrypted_call(config)
    assert not rec["path"].exists() and rec["age_path"].exists()
    (item,) = _verify(config, rec["keyring"].identities() if plaintext else None)
    assert item["result"] == "ok"
