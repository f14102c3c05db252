"""A recording with no audio (a header-only WAV, 0 ms: the call hung up at once after
hand-off) is finalised as 'empty' with a warning and an audit entry, counted in the
metrics, and ``recording verify`` never calls it ok."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from callproof.callflow.recording_files import finalise_recording
from callproof.integrity import verify_recordings
from callproof.metrics import StoredFigures
from callproof.storage import Database, NewCall, SyncDatabase

NOW = "2026-03-10T14:00:00.000000Z"


def write_wav(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x02" * int(8000 * seconds))


async def _recording(db, path: Path, channel: str) -> int:
    call_id = await db.calls.create(NewCall(channel, "u", "l", "+5511912345678", "+5511912345678",
                                            None, "4000", "pt_BR", NOW))
    return await db.recordings.create(call_id, None, str(path), "5511912345678", NOW)


async def test_a_header_only_wav_is_finalised_empty_with_a_warning(tmp_path, caplog):
    path = tmp_path / "rec.wav"
    write_wav(path, 0)
    assert path.stat().st_size == 44  # what Asterisk left after a call that hung up at once
    async with Database.open(tmp_path / "cp.db", now=lambda: NOW) as db:
        rec = await _recording(db, path, "chan-1")
        with caplog.at_level(logging.WARNING, logger="callproof.recording"):
            assert await finalise_recording(db, rec, path, NOW, attempts=3) is True
        row = await db.recordings.get(rec)
        assert (row["state"], row["duration_ms"], row["size_bytes"]) == ("empty", 0, 44)
        assert [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "callproof.recording"] == ["recording.empty"]
        assert await db.evidence.for_recording(rec) is None  # nothing sealed as evidence of the call
        figures = StoredFigures(db, soon_until=lambda now: now)
        registry = CollectorRegistry()
        registry.register(figures)
        await figures.refresh()
        metrics = generate_latest(registry).decode()  # what /metrics serves
        assert 'callproof_recordings{state="empty"} 1.0' in metrics
        assert 'callproof_recordings{state="finalised"} 0.0' in metrics


async def test_verify_reports_empty_not_ok(tmp_path):
    empty, full = tmp_path / "empty.wav", tmp_path / "full.wav"
    write_wav(empty, 0)
    write_wav(full, 0.5)
    async with Database.open(tmp_path / "cp.db", now=lambda: NOW) as db:
        for n, path in enumerate((empty, full)):
            rec = await _recording(db, path, f"chan-{n}")
            await finalise_recording(db, rec, path, NOW, attempts=3)
        assert (await db.recordings.get(rec))["state"] == "finalised"
    with SyncDatabase.open(tmp_path / "cp.db") as sdb:
        results = {Path(r["path"]).name: r["result"] for r in verify_recordings(sdb, tmp_path)}
    assert results == {"empty.wav": "empty", "full.wav": "unsigned"}
