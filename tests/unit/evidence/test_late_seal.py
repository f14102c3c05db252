"""``callproof evidence seal``: recordings finalised before a signing key existed get a signed
record after the fact, from the sha256 of their ``recording.finalised`` audit entry (never the
editable column); a file that is not the one finalised is refused and audited; the record,
``recording verify`` and the evidence package say "sealed late"; a second run does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callproof.rights.export import ExportError, export_request_sync
from callproof.storage import connect_sync
from tests.engines import drop_trigger
from tests.unit.rights.test_export import NOW, file_request, needs_ffmpeg

from .test_records import cli, swap_file_and_column
from .world import finalised_call, signed_config


def unsigned_then_keyed(tmp_path: Path, target: str):
    """A recording finalised with no key configured, then a key created (the upgrade)."""
    rec = finalised_call(signed_config(tmp_path, key=False, target=target))
    return rec, signed_config(tmp_path, target=target)


def test_seal_signs_an_unsigned_recording_from_its_audit_entry(tmp_path: Path, target: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    rec, config = unsigned_then_keyed(tmp_path, target)
    assert cli(config, tmp_path, "recording", "verify") == 1  # UNSIGNED: proves nothing yet
    capsys.readouterr()
    conn = connect_sync(config.storage.target)
    entry_id, details = conn.execute("SELECT id, details FROM audit_log"
                                     " WHERE action = 'recording.finalised'").fetchone()
    entry_sha = json.loads(details)["sha256"]
    conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?", ("00" * 32, rec["recording_id"]))  # ignored
    assert cli(config, tmp_path, "evidence", "seal", "--by", "admin") == 0
    assert "recordings without a signed record: 1; sealed 1" in capsys.readouterr().out
    rows = conn.execute("SELECT record, signature FROM evidence_records WHERE recording_id = ? ORDER BY id",
                        (rec["recording_id"],)).fetchall()
    assert [r[1] is not None for r in rows] == [False, True]  # the unsigned record stays; the signed one added
    record = json.loads(rows[1][0])
    assert record["recording"]["sha256"] == entry_sha  # from the audit chain, not the altered column
    assert record["sealed_late"]["sha256_from"] == "audit_log" and record["sealed_late"]["audit_entry_id"] == entry_id
    assert record["sealed_late"]["at"] == record["signed_at"]
    (late,) = conn.execute("SELECT actor, details FROM audit_log WHERE action = 'evidence.sealed_late'").fetchall()
    assert late[0] == "admin" and json.loads(late[1])["audit_entry_id"] == entry_id
    assert cli(config, tmp_path, "recording", "verify") == 0
    out = capsys.readouterr().out
    assert "ok 1 (signed, 1 sealed late)" in out and "SEALED LATE on" in out
    # idempotent: a second run finds nothing to seal and writes no record
    assert cli(config, tmp_path, "evidence", "seal") == 0
    assert "recordings without a signed record: 0" in capsys.readouterr().out
    assert conn.execute("SELECT count(*) FROM evidence_records").fetchone()[0] == 2
    # the evidence package carries it and says so
    package = tmp_path / "package.zip"
    assert cli(config, tmp_path, "evidence", "export", rec["protocol"], "--out", str(package)) == 0
    assert "SEALED LATE" in capsys.readouterr().out
    assert cli(config, tmp_path, "evidence", "verify", str(package)) == 0
    out = capsys.readouterr().out
    assert "evidence package VERIFIED" in out and "note: SEALED LATE on" in out


def test_seal_refuses_a_file_that_is_not_the_one_finalised(tmp_path: Path, target: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 1 before the key existed: the file and the column swapped. The column agrees with
    the file; the audit entry does not, and nothing is signed."""
    rec, config = unsigned_then_keyed(tmp_path, target)
    conn = connect_sync(config.storage.target)
    forged = swap_file_and_column(conn, rec)
    capsys.readouterr()
    assert cli(config, tmp_path, "evidence", "seal") == 1
    out = capsys.readouterr().out
    assert f"MISMATCH  recording {rec['recording_id']}" in out and "mismatch 1" in out
    assert conn.execute("SELECT count(*) FROM evidence_records WHERE signature IS NOT NULL").fetchone()[0] == 0
    (failed,) = conn.execute("SELECT details FROM audit_log WHERE action = 'recording.integrity_failed'").fetchall()
    assert json.loads(failed[0])["actual_sha256"] == forged


def test_seal_refuses_when_the_audit_chain_is_broken(tmp_path: Path, target: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The entry it trusts must be in an intact chain: an edited entry (triggers dropped) stops it."""
    _, config = unsigned_then_keyed(tmp_path, target)
    conn = connect_sync(config.storage.target)
    drop_trigger(conn, "audit_log_no_update")
    conn.execute("UPDATE audit_log SET details = replace(details, substr(details, 12, 8), 'ffffffff')"
                 " WHERE action = 'recording.finalised'")
    capsys.readouterr()
    assert cli(config, tmp_path, "evidence", "seal") == 1
    assert "audit chain does not verify" in capsys.readouterr().err
    assert conn.execute("SELECT count(*) FROM evidence_records WHERE signature IS NOT NULL").fetchone()[0] == 0


@needs_ffmpeg
def test_the_export_for_a_request_refuses_the_unsigned_recording_and_accepts_it_sealed(tmp_path: Path,
                                                                                      target: str) -> None:
    rec, config = unsigned_then_keyed(tmp_path, target)
    conn = connect_sync(config.storage.target)
    request_id = file_request(conn, config, rec["protocol"])
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "integrity"
    assert cli(config, tmp_path, "evidence", "seal") == 0
    exported = export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert Path(exported.path).is_file() and exported.size_bytes > 0
