"""Measuring a finished recording never follows a symbolic link: the file measured, hashed
and made private is the one at the recording's path, opened once (O_NOFOLLOW), with
fstat/fchmod on that descriptor.  A link (or anything but a regular file) is refused and
the recording row fails, with nothing recorded for the link's target."""

from __future__ import annotations

import hashlib
import os
import wave
from pathlib import Path

import pytest

from callproof.callflow.port import RecordingError
from callproof.callflow.recording_files import (
    NotFollowed,
    finalise_recording,
    measure_recording,
    wait_and_measure,
)
from callproof.storage import Database, NewCall

NOW = "2026-03-10T14:00:00.000000Z"


def write_wav(path: Path, seconds: float = 0.5) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x02" * int(8000 * seconds))
    return path.read_bytes()


def test_a_regular_file_is_measured_and_made_private(tmp_path):
    path = tmp_path / "rec.wav"
    data = write_wav(path)
    path.chmod(0o644)
    facts = measure_recording(path)
    assert (facts.size_bytes, facts.duration_ms, facts.sha256) == (len(data), 500, hashlib.sha256(data).hexdigest())
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_a_symlink_is_refused_and_its_target_left_alone(tmp_path):
    target = tmp_path / "elsewhere" / "secret.wav"
    target.parent.mkdir()
    write_wav(target)
    target.chmod(0o777)
    link = tmp_path / "rec.wav"
    link.symlink_to(target)
    with pytest.raises(NotFollowed, match="symbolic link"):
        measure_recording(link)
    assert os.stat(target).st_mode & 0o777 == 0o777  # before: chmod followed the link (0770)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "rec.wav"
    os.mkfifo(fifo)
    with pytest.raises(NotFollowed, match="not a regular file"):
        measure_recording(fifo)


async def test_wait_and_measure_gives_up_at_once_on_a_link(tmp_path):
    target = tmp_path / "t.wav"
    write_wav(target)
    (tmp_path / "rec.wav").symlink_to(target)
    with pytest.raises(RecordingError, match="symbolic link"):
        await wait_and_measure(tmp_path / "rec.wav", attempts=40, delay=10)  # no retries: it would take 400 s


async def test_finalising_a_link_fails_the_row_and_records_no_hash(tmp_path):
    target = tmp_path / "t.wav"
    write_wav(target)
    link = tmp_path / "rec.wav"
    link.symlink_to(target)
    async with Database.open(tmp_path / "cp.db", now=lambda: NOW) as db:
        call_id = await db.calls.create(NewCall("chan-1", "u", "l", "+5511912345678", "+5511912345678",
                                                None, "4000", "pt_BR", NOW))
        rec = await db.recordings.create(call_id, None, str(link), "5511912345678", NOW)
        assert await finalise_recording(db, rec, link, NOW, attempts=3) is False
        row = await db.recordings.get(rec)
        assert row["state"] == "failed" and row["sha256"] is None
        assert "symbolic link" in row["error"]
