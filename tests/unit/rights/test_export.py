"""Exporting a requested recording: real pydub/ffmpeg conversion of a tiny WAV,
tags read back with ffprobe, sha256, file modes, atomic publication, refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydub.generators import Sine

from callproof.config import Config, RecordingConfig, RightsConfig
from callproof.rights.export import ExportError, export_request_sync
from callproof.rights.requests import file_request_sync
from callproof.storage import NewCall, allocate_sync, connect_sync
from callproof.storage import calls as calls_store
from callproof.storage import recordings as recordings_store
from callproof.storage.audit import verify_chain_sync
from callproof.storage.requests import get_request_sync, set_state_sync

NOW = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # 14:00 in São Paulo
CALLER = "+5511987654321"
SECRET = "unit-test-link-secret-0123456789abcdef"
EXPORT_NAME = re.compile(r"request-\d+-\d{17}-\d+\.(mp3|ogg|wav)")

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe (Debian package ffmpeg) not installed")


# ---------------------------------------------------------------------------
# helpers shared with test_rights_links.py and test_rights_delivery.py

def make_config(tmp_path: Path, **rights) -> Config:
    rights.setdefault("link_secret", SECRET)
    return Config(recording=RecordingConfig(root=tmp_path / "recordings"),
                  rights=dataclasses.replace(RightsConfig(export_dir=tmp_path / "exports"), **rights))


def make_recording(conn, config: Config, *, channel: str = "ch-1", caller: str = CALLER,
                   language: str = "pt_BR", at: datetime = NOW, finalise: bool = True) -> dict:
    """A call with a protocol and a finalised 1 s WAV recording (generated with pydub)."""
    call_id = calls_store.create_sync(conn, NewCall(channel, None, None, caller[3:], caller, None, None,
                                                    language, at), at)
    protocol = allocate_sync(conn, year=at.year, allocated_at=at, call_id=call_id).protocol
    root = config.recording.root
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{protocol}_{caller[1:]}_20260310-140000.wav"
    Sine(440).to_audio_segment(duration=1000).set_frame_rate(8000).set_channels(1) \
        .set_sample_width(2).export(path, format="wav")
    rec_id = recordings_store.create_sync(conn, call_id, protocol, str(path), caller, at)
    if finalise:
        recordings_store.finalise_sync(conn, rec_id, size_bytes=path.stat().st_size, duration_ms=1000,
                                       sha256=hashlib.sha256(path.read_bytes()).hexdigest(), finalised_at=at)
    return {"call_id": call_id, "protocol": protocol, "recording_id": rec_id, "path": path}


def file_request(conn, config: Config, protocol: str, *, number: str = CALLER,
                 deliver_to: str | None = None) -> int:
    return file_request_sync(conn, config, call_protocol=protocol, channel="cli", actor="ops", now=NOW,
                             requester_number=number, deliver_to=deliver_to).id


def audit_rows(conn, action: str) -> list[dict]:
    rows = conn.execute("SELECT protocol, subject, actor, details FROM audit_log WHERE action = ?"
                        " ORDER BY id", (action,)).fetchall()
    return [{"protocol": p, "subject": s, "actor": a, "details": json.loads(d) if d else None}
            for p, s, a, d in rows]


def ffprobe_tags(path: Path) -> tuple[str, dict[str, str]]:
    """(format name, tags) as ffprobe reads them (OGG keeps them on the stream)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name:format_tags"
                          ":stream_tags", "-of", "json", str(path)], capture_output=True, text=True,
                         check=True).stdout
    info = json.loads(out)
    tags: dict[str, str] = {}
    for stream in info.get("streams", []):
        tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    tags.update({k.lower(): v for k, v in info["format"].get("tags", {}).items()})
    return info["format"]["format_name"], tags


# ---------------------------------------------------------------------------

@pytest.fixture
def world(tmp_path, target):
    config = make_config(tmp_path)
    conn = connect_sync(target)  # SQLite and PostgreSQL (tests/conftest.py)
    rec = make_recording(conn, config)
    request_id = file_request(conn, config, rec["protocol"])
    yield config, conn, rec, request_id
    conn.close()


@needs_ffmpeg
@pytest.mark.parametrize("fmt, format_name", [("mp3", "mp3"), ("ogg", "ogg"), ("wav", "wav")])
def test_export_writes_a_tagged_private_file_and_moves_the_request(world, fmt, format_name):
    config, conn, rec, request_id = world
    row = export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt=fmt)

    path = Path(row["path"])
    assert path.parent == config.rights.export_dir and EXPORT_NAME.fullmatch(path.name)
    assert row["format"] == fmt and row["created_by"] == "ops"
    data = path.read_bytes()
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size_bytes"] == len(data) > 1000
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(config.rights.export_dir.stat().st_mode) == 0o750
    assert [p.name for p in config.rights.export_dir.iterdir()] == [path.name], "no temp file left"

    name, tags = ffprobe_tags(path)
    assert format_name in name.split(",")
    assert rec["protocol"] in tags["title"] and "2026-03-10 14:00:00" in tags["title"]
    assert rec["protocol"] in tags["comment"] and "2026-03-10T14:00:00-03:00" in tags["comment"]

    assert get_request_sync(conn, request_id)["state"] == "exported"
    (entry,) = audit_rows(conn, "recording.exported")
    assert entry["protocol"] == rec["protocol"] and entry["actor"] == "ops"
    assert entry["details"]["sha256"] == row["sha256"] and entry["details"]["format"] == fmt
    assert [e["details"]["to"] for e in audit_rows(conn, "request.exported")] == ["exported"]
    assert verify_chain_sync(conn) is None


@needs_ffmpeg
def test_default_format_and_a_second_export_never_overwrite(world):
    config, conn, _rec, request_id = world
    first = export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    second = export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert first["format"] == second["format"] == "mp3"  # [rights] export_format default
    assert first["path"] != second["path"]
    assert Path(first["path"]).exists() and Path(second["path"]).exists()
    assert Path(first["path"]).name.endswith("-1.mp3") and Path(second["path"]).name.endswith("-2.mp3")
    assert get_request_sync(conn, request_id)["state"] == "exported"


@needs_ffmpeg
def test_tampered_recording_is_refused_and_audited(world):
    config, conn, rec, request_id = world
    data = bytearray(rec["path"].read_bytes())
    data[-10] ^= 0xFF  # one sample changed after finalisation
    rec["path"].write_bytes(bytes(data))
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "integrity" and "changed since it was finalised" in str(exc.value)
    (entry,) = audit_rows(conn, "recording.integrity_failed")
    assert entry["protocol"] == rec["protocol"] and entry["actor"] == "ops"
    assert entry["details"]["actual_sha256"] == hashlib.sha256(bytes(data)).hexdigest()
    assert conn.execute("SELECT count(*) FROM request_exports").fetchone()[0] == 0
    assert not config.rights.export_dir.exists() or not any(config.rights.export_dir.iterdir())
    assert get_request_sync(conn, request_id)["state"] == "received"


def test_missing_file_is_refused_and_audited(world):
    config, conn, rec, request_id = world
    rec["path"].unlink()
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "recording_missing" and rec["protocol"] in str(exc.value)
    (entry,) = audit_rows(conn, "recording.export_failed")
    assert entry["details"]["why"].startswith("unreadable")


def test_deleted_recording_is_refused(world):
    config, conn, rec, request_id = world
    conn.execute("UPDATE recordings SET state = 'deleted' WHERE id = ?", (rec["recording_id"],))
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "recording_deleted" and "deleted by retention" in str(exc.value)


def test_unfinalised_recording_is_refused(tmp_path):
    config = make_config(tmp_path)
    conn = connect_sync(tmp_path / "cp.db")
    rec = make_recording(conn, config, finalise=False)
    request_id = file_request(conn, config, rec["protocol"])
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "no_recording" and "not finalised" in str(exc.value)


def test_unverified_and_refused_requests_are_not_exported(world):
    config, conn, rec, request_id = world
    stranger = file_request(conn, config, rec["protocol"], number="+5511912340000")
    assert get_request_sync(conn, stranger)["state"] == "needs_identity_check"
    with pytest.raises(ExportError, match="identity check") as exc:
        export_request_sync(conn, config, stranger, actor="ops", now=NOW)
    assert exc.value.reason == "state"
    set_state_sync(conn, request_id, "refused", actor="ops", at=NOW, reason="duplicate")
    with pytest.raises(ExportError, match="refused") as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert exc.value.reason == "state"
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, 999, actor="ops", now=NOW)
    assert exc.value.reason == "not_found"
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="../../x")
    assert exc.value.reason == "format"


@needs_ffmpeg
def test_failed_conversion_leaves_no_file_and_no_row(world):
    config, conn, rec, request_id = world
    junk = b"RIFF not really a wave file" * 10
    rec["path"].write_bytes(junk)
    conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?",
                 (hashlib.sha256(junk).hexdigest(), rec["recording_id"]))
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="ogg")
    assert exc.value.reason == "conversion"
    assert "ffmpeg exited with status" in str(exc.value)  # ffmpeg's own words follow, for the operator
    assert list(config.rights.export_dir.iterdir()) == []
    assert conn.execute("SELECT count(*) FROM request_exports").fetchone()[0] == 0
    assert get_request_sync(conn, request_id)["state"] == "received"


def test_without_ffmpeg_the_export_says_which_package_is_missing(world, monkeypatch):
    from callproof.rights import conversion
    config, conn, _rec, request_id = world
    monkeypatch.setattr(conversion.shutil, "which", lambda name: None)
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="mp3")
    assert exc.value.reason == "conversion"
    assert "ffmpeg is not installed (Debian package ffmpeg)" in str(exc.value)
    assert list(config.rights.export_dir.iterdir()) == []
    assert get_request_sync(conn, request_id)["state"] == "received"


def test_recording_outside_the_root_is_not_read(world, tmp_path):
    config, conn, rec, request_id = world
    elsewhere = tmp_path / "elsewhere.wav"
    shutil.copy(rec["path"], elsewhere)
    conn.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(elsewhere), rec["recording_id"]))
    with pytest.raises(ExportError, match="not under"):
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    assert audit_rows(conn, "recording.export_failed")[0]["details"]["why"] == "outside_root"
