"""Signed evidence records: written at finalisation, checked by verify and exports against
the SIGNED sha256; finding 1 (file bytes and recordings.sha256 both swapped) is caught."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.evidence import records
from callproof.evidence.keys import Signer, TrustedKeys, generate_key_file, trusted_from_config
from callproof.integrity import verify_recordings
from callproof.rights.export import ExportError, export_request_sync
from callproof.storage import connect_sync
from callproof.storage.evidence import facts_sync
from tests.engines import drop_trigger
from tests.unit.rights.test_export import audit_rows, file_request

from .world import NOW, finalised_call, signed_config


def _toml(config) -> str:
    e, a = config.evidence, config.audit
    lines = [f'[storage]\ndatabase = "{config.storage.database}"', f'[recording]\nroot = "{config.recording.root}"']
    if config.storage.url:
        lines[0] += f'\nurl = "{config.storage.url}"'
    ev = []
    if e.signing_key:
        ev.append(f'signing_key = "{e.signing_key}"')
    if e.trusted_keys:
        ev.append(f'trusted_keys = "{e.trusted_keys}"')
    if ev:
        lines.append("[evidence]\n" + "\n".join(ev))
    if a.checkpoint_file:
        lines.append(f'[audit]\ncheckpoint_file = "{a.checkpoint_file}"')
    return "\n".join(lines) + "\n"


def cli(config, tmp_path: Path, *argv: str) -> int:
    p = tmp_path / "callproof.toml"
    p.write_text(_toml(config))
    return main(["--config", str(p), *argv])


def swap_file_and_column(conn, rec: dict) -> str:
    """Finding 1: new bytes in the file, and their hash in recordings.sha256."""
    data = bytearray(rec["path"].read_bytes())
    data[-100:] = b"\x00" * 100
    rec["path"].write_bytes(bytes(data))
    forged = hashlib.sha256(bytes(data)).hexdigest()
    conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?", (forged, rec["recording_id"]))
    return forged


def test_finalisation_writes_a_signed_record_without_personal_data(tmp_path: Path, target: str) -> None:
    config = signed_config(tmp_path, target=target)
    rec = finalised_call(config)
    conn = connect_sync(config.storage.target)
    row = conn.execute("SELECT record, signature, key_fingerprint, record_sha256 FROM evidence_records"
                       " WHERE recording_id = ?", (rec["recording_id"],)).fetchone()
    file_sha = hashlib.sha256(rec["path"].read_bytes()).hexdigest()
    record = json.loads(row[0])
    signer = Signer.load(config.evidence.signing_key)
    assert row[2] == record["key"] == signer.fingerprint
    signer.public_key.verify(base64.b64decode(row[1]), row[0].encode())  # raises if not
    assert record["protocol"] == rec["protocol"]
    assert record["recording"]["sha256"] == file_sha and record["recording"]["size_bytes"] == rec["path"].stat().st_size
    assert record["recording"]["duration_ms"] == 1000
    assert record["consent"]["sha256"] == "ab" * 32 and record["consent"]["outcome"] == "finished"
    assert "987654321" not in row[0]  # no caller digits (the path is there as its hash only)
    assert row[3] == hashlib.sha256(row[0].encode()).hexdigest()
    (entry,) = audit_rows(conn, "recording.finalised")
    assert entry["details"]["evidence_sha256"] == row[3] and entry["details"]["evidence_key"] == signer.fingerprint
    with pytest.raises(Exception, match="append-only"):
        conn.execute("UPDATE evidence_records SET record = '{}'")
    with pytest.raises(Exception, match="append-only"):
        conn.execute("DELETE FROM evidence_records")
    assert [i["result"] for i in verify_recordings(conn, config.recording.root,
                                                   trusted=trusted_from_config(config))] == ["ok"]


def test_finding_1_swapped_bytes_and_column_fail_verify_and_export(tmp_path: Path, target: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = signed_config(tmp_path, target=target)
    rec = finalised_call(config)
    conn = connect_sync(config.storage.target)
    forged = swap_file_and_column(conn, rec)
    (item,) = verify_recordings(conn, config.recording.root, trusted=trusted_from_config(config))
    assert item["result"] == "mismatch" and "signed evidence record says" in item["detail"]
    capsys.readouterr()
    assert cli(config, tmp_path, "recording", "verify", "--by", "auditor") == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and f"recording {rec['recording_id']}" in out and rec["protocol"] in out
    request_id = file_request(conn, config, rec["protocol"])
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "integrity"
    (failed,) = audit_rows(conn, "recording.integrity_failed")
    assert failed["details"]["actual_sha256"] == forged and failed["details"]["signed"] is True
    assert conn.execute("SELECT count(*) FROM request_exports").fetchone()[0] == 0


def test_a_replaced_record_does_not_verify(tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Dropping the triggers and writing a record of the forged file: signed by a key of the
    attacker's (not trusted), or left unsigned: neither passes, and the export refuses."""
    config = signed_config(tmp_path, target=target)
    rec = finalised_call(config)
    conn = connect_sync(config.storage.target)
    swap_file_and_column(conn, rec)
    drop_trigger(conn, "evidence_records_no_delete")
    facts = facts_sync(conn, rec["recording_id"])
    generate_key_file(tmp_path / "mallory.pem")
    for signer, expected in ((Signer.load(tmp_path / "mallory.pem"), "forged"), (None, "unsigned")):
        sealed = records.seal_facts(facts, "2026-03-10T17:00:05.000000+00:00", signer)
        conn.execute("DELETE FROM evidence_records")
        conn.execute("INSERT INTO evidence_records (recording_id, protocol, record, record_sha256, signature,"
                     " key_fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (rec["recording_id"], rec["protocol"], sealed.record, sealed.record_sha256, sealed.signature,
                      sealed.key_fingerprint, "2026-03-10T17:00:05.000000+00:00"))
        (item,) = verify_recordings(conn, config.recording.root, trusted=trusted_from_config(config))
        assert item["result"] == expected
        assert cli(config, tmp_path, "recording", "verify") == 1
        request_id = file_request(conn, config, rec["protocol"])
        with pytest.raises(ExportError, match="cannot be proven"):
            export_request_sync(conn, config, request_id, actor="ops", now=NOW)


def test_an_edited_column_alone_does_not_fail_a_genuine_file(tmp_path: Path, target: str) -> None:
    config = signed_config(tmp_path, target=target)
    rec = finalised_call(config)
    conn = connect_sync(config.storage.target)
    conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?", ("0" * 64, rec["recording_id"]))
    (item,) = verify_recordings(conn, config.recording.root, trusted=trusted_from_config(config))
    assert item["result"] == "ok" and "column was altered" in item["detail"]


def test_records_signed_before_a_rotation_still_verify(tmp_path: Path, target: str) -> None:
    config = signed_config(tmp_path, target=target)
    finalised_call(config)
    old_fp = Signer.load(config.evidence.signing_key).fingerprint
    assert cli(config, tmp_path, "evidence", "rotate") == 0
    trusted = trusted_from_config(config)
    assert old_fp in trusted and Signer.load(config.evidence.signing_key).fingerprint != old_fp
    conn = connect_sync(config.storage.target)
    (item,) = verify_recordings(conn, config.recording.root, trusted=trusted)
    assert item["result"] == "ok" and item["signed"]
    # without the old public key the record is not trusted
    (item,) = verify_recordings(conn, config.recording.root, trusted=TrustedKeys())
    assert item["result"] == "forged"


def test_without_a_key_records_are_unsigned_and_verify_says_so(tmp_path: Path, target: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = signed_config(tmp_path, target=target, key=False)
    rec = finalised_call(config)
    conn = connect_sync(config.storage.target)
    (row,) = conn.execute("SELECT signature, key_fingerprint FROM evidence_records").fetchall()
    assert row == (None, None)
    capsys.readouterr()
    assert cli(config, tmp_path, "recording", "verify") == 1
    captured = capsys.readouterr()
    assert "UNSIGNED" in captured.out and "proves nothing" in captured.err
    assert cli(config, tmp_path, "recording", "verify", "--allow-unsigned") == 0
    # signing off, the column is all there is: the swap goes through (the documented, unprotected mode)
    forged = swap_file_and_column(conn, rec)
    (item,) = verify_recordings(conn, config.recording.root)
    assert item["result"] == "unsigned" and item["sha256"] == forged


def test_each_database_is_signed_with_its_own_configurations_key(tmp_path: Path) -> None:
    """Two configurations in one process (two applications, as in the test suite): each one's
    records carry its own key, not the key of whichever started last."""
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    generate_key_file(a)
    generate_key_file(b)
    records.use_signer(Signer.load(a), tmp_path / "a.db")
    records.use_signer(Signer.load(b), tmp_path / "b.db")
    try:
        assert records.signer_for(str(tmp_path / "a.db")).fingerprint == Signer.load(a).fingerprint
        assert records.signer_for(tmp_path / "b.db").fingerprint == Signer.load(b).fingerprint
    finally:
        records.use_signer(None, tmp_path / "a.db")
        records.use_signer(None, tmp_path / "b.db")


def test_the_configurations_key_signs_the_records_of_its_database(tmp_path: Path, target: str) -> None:
    """``[evidence] signing_key`` loaded as ``callproof run`` loads it (records.configure): the
    records finalised on that configuration's database -- the SQLite file or the ``[storage]
    url`` -- are signed by it (the key was once filed under the file name alone, so a
    PostgreSQL database's records went unsigned)."""
    config = signed_config(tmp_path, target=target)
    signer = records.configure(config)
    try:
        rec = finalised_call(config, process_key=False)
    finally:
        records.use_signer(None, config.storage.target)
    conn = connect_sync(config.storage.target)
    fingerprint, signature = conn.execute("SELECT key_fingerprint, signature FROM evidence_records"
                                          " WHERE recording_id = ?", (rec["recording_id"],)).fetchone()
    conn.close()
    assert signer is not None and fingerprint == signer.fingerprint and signature
