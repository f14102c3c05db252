"""A finished recording file: measured (size, duration, sha256), encrypted, its row finalised.

The same for both transports: the ARI application finalises when AMI reports that
MixMonitor stopped (``ari_app/recorder.py``), the AGI paths from the hangup handler
(the ``finalise`` step).

With ``[encryption] enabled`` the file is encrypted in the same pass that hashes it, to its
period key (retention class x expiry month, callproof/encryption/keyring.py), into
``<name>.wav.age`` beside it (callproof/encryption/atrest.py); once the row records the age
file the plaintext is removed.  When that cannot be done (no key for the period, a keyring
that cannot be read, a full disk) the call is not failed and nothing is lost: the plaintext
stays, the row says ``encryption pending`` and why, and ``callproof recording encrypt``
encrypts it later (docs/keys.md).
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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.evidence.records import seal
from callproof.logs import event
from callproof.storage import Database, is_storage_error
from callproof.storage.journal import Journal

from .port import RecordingError

if TYPE_CHECKING:  # callproof.encryption needs cryptography, imported only when encrypting: the
    from callproof.encryption.stream import Digests  # classic AGI script may run on a Python without it

log = logging.getLogger("callproof.recording")


@dataclass(frozen=True)
class RecordingFacts:
    size_bytes: int
    duration_ms: int
    sha256: str
    encrypted: Digests | None = None     # the age file written beside the plaintext
    age_path: str | None = None
    encryption_error: str | None = None  # encryption was asked for and failed: why


@dataclass(frozen=True)
class EncryptTo:
    """What a recording is to be encrypted to: the recipients and their key ids."""
    recipients: tuple[Any, ...]
    key_ids: tuple[str, ...]


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


def measure_recording(path: Path, encrypt_to: EncryptTo | None = None) -> RecordingFacts:
    """Size, duration and sha256 of a finished WAV file (blocking: run in a thread); with
    ``encrypt_to``, also its age file ``<name>.age`` beside it, written in the same pass.

    Everything is read through one descriptor opened with O_NOFOLLOW: the size, the
    hash, the WAV header and the permission change all concern the same file, the one
    at ``path`` (a link there raises :class:`NotFollowed`).  The WAV header is checked
    before the file is read through, so a file still being written is not encrypted."""
    fd = _open_recording(path)
    with open(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
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
        fh.seek(0)
        encrypted, failure, dir_fd, digest = None, None, None, ""
        if encrypt_to is not None:
            try:
                from callproof.encryption.atrest import encrypt_beside, open_dir
                dir_fd = open_dir(path.parent)
                encrypted = encrypt_beside(fh, dir_fd, path.name, encrypt_to.recipients)
            except Exception as exc:  # a full disk, a stray file in the way: the plaintext stays
                failure = _why(exc)
                if dir_fd is not None:
                    os.close(dir_fd)
                    dir_fd = None
                fh.seek(0)
        try:
            if encrypted is None:
                digest = _sha256_of(fh)
            if os.fstat(fd).st_size != st.st_size or (encrypted and encrypted.plaintext_size != st.st_size):
                if encrypted is not None and dir_fd is not None:
                    os.unlink(path.name + ".age", dir_fd=dir_fd)
                raise NotReady("file still growing")
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        try:  # recordings are evidence and personal data: never world-readable
            if st.st_mode & 0o007:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o770)
        except PermissionError:
            # the folder, not the file: a recording's name holds the caller's digits
            log.warning("cannot tighten permissions of a recording in %s (owned by another user)", path.parent)
    sha256 = encrypted.plaintext_sha256 if encrypted else digest
    return RecordingFacts(size_bytes=st.st_size, duration_ms=int(frames * 1000 / rate) if rate else 0,
                          sha256=sha256, encrypted=encrypted,
                          age_path=str(path) + ".age" if encrypted else None, encryption_error=failure)


def _sha256_of(fh: Any) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_READ_SIZE)
    view = memoryview(buffer)
    while n := fh.readinto(buffer):
        digest.update(view[:n])
    return digest.hexdigest()


def _why(exc: BaseException) -> str:
    """What went wrong, without a path (a recording's name holds the caller's digits)."""
    if isinstance(exc, FileExistsError):
        return "an age file of that name is there already (left by an earlier attempt)"
    if isinstance(exc, OSError):
        return f"cannot write the age file: {exc.strerror or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


async def wait_and_measure(path: Path, attempts: int = 40, delay: float = 0.25,
                           encrypt_to: EncryptTo | None = None) -> RecordingFacts:
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await asyncio.to_thread(measure_recording, path, encrypt_to)
        except NotFollowed as exc:  # waiting will not turn a link into the recording
            raise RecordingError(str(exc)) from None
        except (NotReady, FileNotFoundError) as exc:
            last = exc
            await asyncio.sleep(delay)
    # no path in the message: it reaches the log, and a recording's name holds the caller's digits
    detail = last.strerror if isinstance(last, OSError) and last.strerror else last
    raise RecordingError(f"recording not final after {attempts} checks: {detail}")


def encryption_target(keyring: Any, row: dict | None) -> tuple[EncryptTo | None, str | None]:
    """(what to encrypt to, None) or (None, why it cannot be encrypted now) for a recording row;
    (None, None) when encryption is off."""
    if keyring is None:
        return None, None
    if isinstance(keyring, str):  # the keyring could not be loaded at start-up
        return None, keyring
    if row is None or not row.get("retention_until"):
        return None, "the recording has no retention expiry: no period key fits it"
    from callproof.encryption.keyring import KeyringError
    from callproof.storage.timefmt import parse_db_time

    try:
        expires: datetime = parse_db_time(row["retention_until"])
        chosen = keyring.recipients_for(row.get("retention_class") or "", expires)
    except KeyringError as exc:
        return None, str(exc)
    return EncryptTo(tuple(chosen.recipients), tuple(chosen.key_ids)), None


async def finalise_recording(db: Database, recording_id: int, path: Path, now_iso: str, attempts: int = 40,
                             journal: Journal | None = None, channel: str = "") -> bool:
    """Measure (and encrypt) the finished file and finalise its row (or mark it failed); audit either way.

    With ``journal``: when storage refuses the row's finalisation, what was measured (and the
    age file's digests) waits in the journal under ``channel`` instead (:func:`journal_facts`)."""
    row = await db.recordings.get(recording_id)
    protocol = row["protocol"] if row else None
    target, pending = encryption_target(keyring_of(db), row)
    try:
        facts = await wait_and_measure(path, attempts=attempts, encrypt_to=target)
    except RecordingError as exc:
        await db.recordings.fail(recording_id, str(exc))
        await db.audit.append("recording.failed", actor="callproof", protocol=protocol, subject=str(path),
                              details={"error": str(exc)})
        event(log, "recording.failed", logging.ERROR, recording_id=recording_id, protocol=protocol, error=str(exc))
        return False
    pending = pending or facts.encryption_error
    try:
        await db.recordings.finalise(recording_id, size_bytes=facts.size_bytes, duration_ms=facts.duration_ms,
                                     sha256=facts.sha256, finalised_at=now_iso)
    except Exception as exc:
        if journal is None or not is_storage_error(exc):
            raise
        _journal_finalise(journal, channel, path, now_iso, facts, target, pending)
        return True
    if facts.encrypted is not None and target is not None:
        await _record_encrypted(db, recording_id, protocol, facts, target)
    elif pending is not None:
        await _record_pending(db, recording_id, protocol, pending)
    if facts.duration_ms == 0:  # storage made the row 'empty': no audio to seal or to present as proof
        await db.audit.append("recording.empty", actor="callproof", protocol=protocol, subject=str(path),
                              details={"sha256": facts.sha256, "size_bytes": facts.size_bytes, "duration_ms": 0})
        event(log, "recording.empty", logging.WARNING, recording_id=recording_id, protocol=protocol,
              bytes=facts.size_bytes, duration_ms=0,
              hint="the file holds no audio: did the call hang up at once after hand-off? (docs/operations.md)")
        if facts.encrypted is not None:
            await asyncio.to_thread(_remove_plaintext, path)
        return True
    # the signed evidence record (callproof/evidence/records.py), made by this process's key, and
    # the recording.finalised audit entry, in one transaction (the journal's replay writes the same);
    # it binds the plaintext's sha256 and, when encrypted, the age payload's
    await seal(db, recording_id, now_iso)
    if facts.encrypted is not None:  # recorded and sealed: the plaintext goes
        await asyncio.to_thread(_remove_plaintext, path)
    event(log, "recording.finalised", recording_id=recording_id, protocol=protocol,
          bytes=facts.size_bytes, duration_ms=facts.duration_ms, sha256=facts.sha256,
          encrypted=facts.encrypted is not None)
    return True


async def _record_encrypted(db: Database, recording_id: int, protocol: str | None, facts: RecordingFacts,
                            target: EncryptTo) -> None:
    enc = facts.encrypted
    assert enc is not None and facts.age_path is not None
    await db.recordings.mark_encrypted(recording_id, age_path=facts.age_path, ciphertext_sha256=enc.ciphertext_sha256,
                                       ciphertext_size=enc.ciphertext_size, payload_sha256=enc.payload_sha256,
                                       key_ids=target.key_ids)
    await db.audit.append("recording.encrypted", actor="callproof", protocol=protocol,
                          subject=f"recording:{recording_id}",
                          details={"sha256": facts.sha256, "payload_sha256": enc.payload_sha256,
                                   "ciphertext_sha256": enc.ciphertext_sha256, "key_ids": list(target.key_ids),
                                   "via": "finalisation"})


async def _record_pending(db: Database, recording_id: int, protocol: str | None, reason: str) -> None:
    await db.recordings.mark_encryption_pending(recording_id, reason)
    await db.audit.append("recording.encryption_pending", actor="callproof", protocol=protocol,
                          subject=f"recording:{recording_id}", details={"reason": reason})
    event(log, "recording.encryption_pending", logging.WARNING, recording_id=recording_id, protocol=protocol,
          reason=reason)


def keyring_of(db: Database) -> Any:
    """The public keyring finalisation encrypts with for ``db`` (None: encryption off)."""
    try:
        from callproof.encryption.atrest import keyring_for
    except ImportError:  # no cryptography on this Python: configure() said so, nothing to encrypt with
        return None
    return keyring_for(db.path)


def _remove_plaintext(path: Path) -> None:
    from callproof.encryption.atrest import open_dir, remove_plaintext

    dir_fd = open_dir(path.parent)
    try:
        remove_plaintext(dir_fd, path.name)
    finally:
        os.close(dir_fd)


#: Why a recording finalised from the journal is not encrypted at once, when the call could
#: not know its retention period (its row was written before storage went away).
NO_PERIOD_IN_JOURNAL = ("finalised while storage was unavailable, its retention period unknown to the call:"
                        " encrypted once storage is back")


def journalled_retention(journal: Journal, channel: str, path: Path) -> dict | None:
    """The retention facts of the recording at ``path`` from its ``recording.create`` entry in
    the journal (the row was journalled too), or None."""
    for e in journal.entries_for(channel):
        if e["op"] == "recording.create" and e.get("path") == str(path):
            return dict(e.get("recording") or {})
    return None


async def journal_recording_end(journal: Journal, channel: str, path: Path, now_iso: str, attempts: int = 40,
                                keyring: Any = None) -> bool:
    """The file of a recording whose row waits in the journal (storage unavailable): measured
    now, its finalisation (or failure) journalled to be applied with the row.  With a
    ``keyring`` it is encrypted now, like a live finalisation, to the period key its journalled
    row names (retention class x expiry month); the replay records the age file, and the
    plaintext goes once the row says so (``ReplayResult.to_settle``)."""
    row = journalled_retention(journal, channel, path) if keyring is not None else None
    target, pending = encryption_target(keyring, row)
    if keyring is not None and row is None and not isinstance(keyring, str):
        pending = NO_PERIOD_IN_JOURNAL
    try:
        facts = await wait_and_measure(path, attempts=attempts, encrypt_to=target)
    except RecordingError as exc:
        journal.submit(channel, "recording.fail", path=str(path), error=str(exc))
        event(log, "recording.failed", logging.ERROR, channel=channel, error=str(exc), journalled=True)
        return False
    _journal_finalise(journal, channel, path, now_iso, facts, target, pending or facts.encryption_error)
    return True


def journal_facts(facts: RecordingFacts, now_iso: str, target: EncryptTo | None, pending: str | None) -> dict:
    """A ``recording.finalise`` journal entry's facts: the measurements, and the age file's
    digests (``encryption``) or why it is not encrypted (``encryption_pending``)."""
    out: dict[str, Any] = {"size_bytes": facts.size_bytes, "duration_ms": facts.duration_ms,
                           "sha256": facts.sha256, "finalised_at": now_iso}
    enc = facts.encrypted
    if enc is not None and target is not None:
        out["encryption"] = {"age_path": facts.age_path, "ciphertext_sha256": enc.ciphertext_sha256,
                             "ciphertext_size": enc.ciphertext_size, "payload_sha256": enc.payload_sha256,
                             "key_ids": list(target.key_ids)}
    elif pending is not None:
        out["encryption_pending"] = pending
    return out


def _journal_finalise(journal: Journal, channel: str, path: Path, now_iso: str, facts: RecordingFacts,
                      target: EncryptTo | None, pending: str | None) -> None:
    journal.submit(channel, "recording.finalise", path=str(path), facts=journal_facts(facts, now_iso, target, pending))
    event(log, "recording.empty" if facts.duration_ms == 0 else "recording.finalised",
          logging.WARNING if facts.duration_ms == 0 else logging.INFO, channel=channel, bytes=facts.size_bytes,
          duration_ms=facts.duration_ms, sha256=facts.sha256, journalled=True,
          encrypted=facts.encrypted is not None and target is not None)
