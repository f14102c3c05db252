"""A finished recording file: measured (size, duration, sha256) and its row finalised.

The same for both transports: the ARI application finalises when AMI reports that
MixMonitor stopped (``ari_app/recorder.py``), the AGI paths from the hangup handler
(the ``finalise`` step).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import stat
import wave
from dataclasses import dataclass
from pathlib import Path

from callproof.evidence.records import seal
from callproof.logs import event
from callproof.storage import Database
from callproof.storage.journal import Journal

from .port import RecordingError

log = logging.getLogger("callproof.recording")


@dataclass(frozen=True)
class RecordingFacts:
    size_bytes: int
    duration_ms: int
    sha256: str


class NotReady(Exception):
    """The file is still being written (size changing or WAV header not final)."""


# Read in 64 KiB into one buffer: a 1 MiB ``read()`` per recording made glibc raise its mmap
# threshold to 1 MiB for the whole process (a freed mmapped block raises it to that block's
# size), after which every allocation up to 1 MiB, in every thread, came from the heaps and
# fragmented them (docs/benchmarks.md, "Memory per call").
_READ_SIZE = 64 * 1024


class NotFollowed(Exception):
    """The recording's path is a symbolic link or not a regular file: refused, not waited for."""


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _open_recording(path: Path) -> int:
    """A descriptor on the file at ``path`` itself: never through a symbolic link (O_NOFOLLOW),
    never blocking on a FIFO (O_NONBLOCK), and only a regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotFollowed("the recording's path is a symbolic link; refused") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFollowed("the recording's path is not a regular file; refused")
    return fd


def measure_recording(path: Path) -> RecordingFacts:
    """Size, duration and sha256 of a finished WAV file (blocking: run in a thread).

    Everything is read through one descriptor opened with O_NOFOLLOW: the size, the
    hash, the WAV header and the permission change all concern the same file, the one
    at ``path`` (a link there raises :class:`NotFollowed`)."""
    fd = _open_recording(path)
    with open(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        digest = hashlib.sha256()
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        while n := fh.readinto(buffer):
            digest.update(view[:n])
        fh.seek(0)
        try:
            with wave.open(fh, "rb") as w:
                frames, rate = w.getnframes(), w.getframerate()
                expected = 44 + frames * w.getsampwidth() * w.getnchannels()
        except (wave.Error, EOFError) as exc:
            raise NotReady(f"WAV header not readable yet: {exc}") from None
        if st.st_size > 0 and frames == 0 and st.st_size > 44:
            raise NotReady("WAV header not finalised yet")
        if abs(expected - st.st_size) > 4096:
            raise NotReady(f"WAV header says {expected} bytes, file has {st.st_size}")
        if os.fstat(fd).st_size != st.st_size:
            raise NotReady("file still growing")
        try:  # recordings are evidence and personal data: never world-readable
            if st.st_mode & 0o007:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o770)
        except PermissionError:
            # the folder, not the file: a recording's name holds the caller's digits
            log.warning("cannot tighten permissions of a recording in %s (owned by another user)", path.parent)
    return RecordingFacts(size_bytes=st.st_size, duration_ms=int(frames * 1000 / rate) if rate else 0,
                          sha256=digest.hexdigest())


async def wait_and_measure(path: Path, attempts: int = 40, delay: float = 0.25) -> RecordingFacts:
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await asyncio.to_thread(measure_recording, path)
        except NotFollowed as exc:  # waiting will not turn a link into the recording
            raise RecordingError(str(exc)) from None
        except (NotReady, FileNotFoundError) as exc:
            last = exc
            await asyncio.sleep(delay)
    # no path in the message: it reaches the log, and a recording's name holds the caller's digits
    detail = last.strerror if isinstance(last, OSError) and last.strerror else last
    raise RecordingError(f"recording not final after {attempts} checks: {detail}")


async def finalise_recording(db: Database, recording_id: int, path: Path, now_iso: str, attempts: int = 40) -> bool:
    """Measure the finished file and finalise its row (or mark it failed); audit either way."""
    row = await db.recordings.get(recording_id)
    protocol = row["protocol"] if row else None
    try:
        facts = await wait_and_measure(path, attempts=attempts)
    except RecordingError as exc:
        await db.recordings.fail(recording_id, str(exc))
        await db.audit.append("recording.failed", actor="callproof", protocol=protocol, subject=str(path),
                              details={"error": str(exc)})
        event(log, "recording.failed", logging.ERROR, recording_id=recording_id, protocol=protocol, error=str(exc))
        return False
    await db.recordings.finalise(recording_id, size_bytes=facts.size_bytes, duration_ms=facts.duration_ms,
                                 sha256=facts.sha256, finalised_at=now_iso)
    if facts.duration_ms == 0:  # storage made the row 'empty': no audio to seal or to present as proof
        await db.audit.append("recording.empty", actor="callproof", protocol=protocol, subject=str(path),
                              details={"sha256": facts.sha256, "size_bytes": facts.size_bytes, "duration_ms": 0})
        event(log, "recording.empty", logging.WARNING, recording_id=recording_id, protocol=protocol,
              bytes=facts.size_bytes, duration_ms=0,
              hint="the file holds no audio: did the call hang up at once after hand-off? (docs/operations.md)")
        return True
    # the signed evidence record (callproof/evidence/records.py), made by this process's key, and
    # the recording.finalised audit entry, in one transaction (the journal's replay writes the same)
    await seal(db, recording_id, now_iso)
    event(log, "recording.finalised", recording_id=recording_id, protocol=protocol,
          bytes=facts.size_bytes, duration_ms=facts.duration_ms, sha256=facts.sha256)
    return True


async def journal_recording_end(journal: Journal, channel: str, path: Path, now_iso: str, attempts: int = 40) -> bool:
    """The file of a recording whose row waits in the journal (storage unavailable): measured
    now, its finalisation (or failure) journalled to be applied with the row."""
    try:
        facts = await wait_and_measure(path, attempts=attempts)
    except RecordingError as exc:
        journal.submit(channel, "recording.fail", path=str(path), error=str(exc))
        event(log, "recording.failed", logging.ERROR, channel=channel, error=str(exc), journalled=True)
        return False
    journal.submit(channel, "recording.finalise", path=str(path),
                   facts={"size_bytes": facts.size_bytes, "duration_ms": facts.duration_ms,
                          "sha256": facts.sha256, "finalised_at": now_iso})
    event(log, "recording.empty" if facts.duration_ms == 0 else "recording.finalised",
          logging.WARNING if facts.duration_ms == 0 else logging.INFO, channel=channel, bytes=facts.size_bytes,
          duration_ms=facts.duration_ms, sha256=facts.sha256, journalled=True)
    return True
