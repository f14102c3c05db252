"""Export a requested call recording as a file the customer can receive.

The customer asked for the recording of their call (docs/customer-rights.md).
The finalised MixMonitor file is checked against the sha256 stored when it was
finalised (a file changed since then is never handed out), converted with
pydub (ffmpeg) to mp3 / ogg / wav with the call's protocol and local start
time in the file's own tags, and written atomically with mode 0640 under
``[rights] export_dir``.  The ``request_exports`` row, the ``recording.exported``
audit entry and the request's move to ``exported`` record it.

The output name is built from integers and the 17-digit protocol only
(``request-<id>-<protocol>-<n>.<fmt>``): nothing a caller typed reaches a path.

With ``[encryption] enabled`` an encrypted recording is decrypted, streaming, into a
private temporary file (0600, removed afterwards) and checked against its signed record
there; the export itself is stored encrypted, as ``….<fmt>.age``, to the hold key: an
export exists because a customer's request is open, and what an open request keeps is
readable by the hold key (docs/keys.md), whatever the recording's period.  Its row's
sha256 is the stored file's (the download route checks it unchanged); the plaintext's is
in the audit entry.  The download route decrypts it, streaming, as it sends it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydub import AudioSegment

from callproof.config import EXPORT_FORMATS, Config
from callproof.encryption.errors import AgeError
from callproof.integrity import EvidenceError, expected_sha256
from callproof.storage import InvalidStateError, SyncDatabase
from callproof.storage.exports import Export
from callproof.storage.timefmt import parse_db_time, to_db_time

EXPORT_FILE_MODE = 0o640
EXPORT_DIR_MODE = 0o750
# Requests in these states may be exported; 'delivered' keeps its state (a
# second format for a request already answered does not reopen it).
EXPORTABLE_STATES = frozenset({"received", "exported", "delivered"})
_PROTOCOL = re.compile(r"[0-9]{17}")
# ffmpeg settings per format: pydub writes WAV itself (without tags) unless a
# codec is named, so WAV goes through ffmpeg too.
_CODECS = {"mp3": {"codec": "libmp3lame", "bitrate": "64k"},
           "ogg": {"codec": "libvorbis"},
           "wav": {"codec": "pcm_s16le"}}
_MAX_NAME_TRIES = 1000


class ExportError(Exception):
    """An export refused or failed; ``reason`` is a short machine-readable code:
    ``not_found``, ``state``, ``format``, ``no_recording``, ``recording_deleted``,
    ``recording_missing``, ``integrity``, ``conversion``, ``encryption``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def export_request_sync(db: SyncDatabase, config: Config, request_id: int, *,
                        actor: str, now: str | datetime, fmt: str | None = None) -> Export:
    """Export the recording of request ``request_id``; returns the ``request_exports`` row.

    Refuses (ExportError) a request that is not yet verified or was refused, a
    recording that is not finalised, deleted by retention, missing on disk, or
    whose bytes no longer match the stored sha256 (that last one is audited as
    ``recording.integrity_failed``: someone changed evidence).
    """
    db = SyncDatabase.wrap(db)
    if not actor:
        raise ValueError("an export needs the actor (who asked for it)")
    fmt = (fmt or config.rights.export_format).lower()
    if fmt not in EXPORT_FORMATS:
        raise ExportError("format", f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    at = to_db_time(now)
    request = _exportable_request(db, request_id)
    call, recording = _recording_of(db, request)
    keyring = _keyring(config)
    export_dir = _export_dir(config.rights.export_dir)
    with _checked_source(db, config, request, recording, actor=actor, at=at, keyring=keyring,
                         scratch=export_dir) as (source, source_sha256):
        started = parse_db_time(call["started_at"]).astimezone(config.general.tz)
        tags = recording_tags(call["protocol"], started, config.general.timezone)
        final, plain = _write_export(source, Path(recording["path"]).suffix.lstrip(".").lower() or "wav",
                                     fmt, tags, export_dir, request_id, call["protocol"], keyring)
    try:
        digest, size = _sha256_and_size(final)
        details = {"request_id": request_id, "recording_id": recording["id"], "format": fmt,
                   "sha256": digest, "size_bytes": size, "file": final.name, "source_sha256": source_sha256}
        if plain is not None:
            details.update(encrypted_to=list(plain.key_ids), plaintext_sha256=plain.sha256,
                           plaintext_size=plain.size)
        try:
            return db.exports.record(
                request_id, fmt=fmt, path=str(final), sha256=digest, size_bytes=size, actor=actor, at=at,
                protocol=call["protocol"], exportable=EXPORTABLE_STATES, audit_details=details)
        except InvalidStateError as exc:
            raise ExportError("state", str(exc)) from None
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def recording_tags(protocol: str, started_local: datetime, timezone: str) -> dict[str, str]:
    """Tags written into the exported file: the protocol and the call's local start time."""
    when = started_local.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "title": f"Protocol {protocol} - {when}",
        "comment": f"protocol {protocol}; call started {started_local.isoformat(timespec='seconds')}"
                   f" ({timezone})",
        "date": started_local.strftime("%Y-%m-%d"),
    }


def get_export_sync(db: SyncDatabase, export_id: int) -> Export | None:
    return SyncDatabase.wrap(db).exports.get(export_id)


def exports_for_request_sync(db: SyncDatabase, request_id: int) -> list[Export]:
    return SyncDatabase.wrap(db).exports.for_request(request_id)


def latest_export_sync(db: SyncDatabase, request_id: int) -> Export | None:
    """The newest export of the request whose file was not deleted."""
    return SyncDatabase.wrap(db).exports.latest(request_id)


# --------------------------------------------------------------------------

def _exportable_request(db: SyncDatabase, request_id: int) -> dict[str, Any]:
    request = db.requests.get(request_id)
    if request is None:
        raise ExportError("not_found", f"recording request {request_id} does not exist")
    state = request["state"]
    if state == "needs_identity_check":
        raise ExportError("state", f"request {request_id} is waiting for an identity check;"
                          " verify the requester's identity before exporting")
    if state == "refused":
        raise ExportError("state", f"request {request_id} was refused"
                          f" ({request.get('refused_reason')}); nothing is exported")
    if state not in EXPORTABLE_STATES:
        raise ExportError("state", f"request {request_id} is {state!r}; cannot export")
    return request


def _recording_of(db: SyncDatabase, request: dict[str, Any]) -> tuple[dict, dict]:
    protocol = request["protocol"]
    call = db.calls.get_by_protocol(protocol)
    if call is None:
        raise ExportError("no_recording", f"no call has protocol {protocol}")
    rows = db.recordings.for_call(call["id"])
    if not rows:
        raise ExportError("no_recording", f"the call of protocol {protocol} was not recorded")
    finalised = [r for r in rows if r["state"] == "finalised"]
    if finalised:
        return call, finalised[-1]
    last = rows[-1]
    if last["state"] == "deleted":
        raise ExportError("recording_deleted",
                          f"the recording of protocol {protocol} was deleted by retention"
                          f" (recording {last['id']}; see the audit log for its receipt)")
    raise ExportError("no_recording", f"the recording of protocol {protocol} is {last['state']!r},"
                      " not finalised; nothing to export")


def _keyring(config: Config) -> Any:
    """The private keyring (encrypted recordings are read with it, exports encrypted to its
    hold key); None when encryption is off."""
    if not config.encryption.enabled:
        return None
    from callproof.encryption.keyring import KeyringError, PrivateKeyring
    try:
        return PrivateKeyring.load(config)
    except KeyringError as exc:
        raise ExportError("encryption", f"exports need the private keyring ([encryption]): {exc}") from None


@contextmanager
def _checked_source(db: SyncDatabase, config: Config, request: dict, recording: dict, *,
                    actor: str, at: str, keyring: Any, scratch: Path) -> Iterator[tuple[Any, str]]:
    """The recording's plaintext (bytes, or a private temporary file for an encrypted one)
    and its sha256, after checking that against the signed record."""
    protocol = request["protocol"]
    encrypted = recording.get("encryption") == "encrypted"
    path = Path(recording["age_path"] if encrypted else recording["path"])
    root = config.recording.root.resolve()
    if not path.resolve().is_relative_to(root):
        _audit_failure(db, actor, at, protocol, recording, request["id"], "outside_root")
        raise ExportError("recording_missing", f"recording {recording['id']} is not under"
                          f" recording.root {root}; refusing to read it")
    tmp: Path | None = None
    try:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                if encrypted:
                    tmp, actual, size = _decrypt_to_scratch(fh, keyring, scratch, recording["id"])
                    source: Any = tmp
                else:
                    source = fh.read()
                    actual, size = hashlib.sha256(source).hexdigest(), len(source)
        except OSError as exc:
            why = "symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
            _audit_failure(db, actor, at, protocol, recording, request["id"], f"unreadable: {why}")
            raise ExportError("recording_missing", f"the recording file of protocol {protocol}"
                              f" cannot be read ({why}): {path}") from None
        except AgeError as exc:
            _audit_failure(db, actor, at, protocol, recording, request["id"], f"cannot be decrypted: {exc}")
            raise ExportError("integrity", f"the recording of protocol {protocol} cannot be decrypted: {exc};"
                              " not exported") from None
        _check_against_record(db, config, request, recording, actual, size, actor=actor, at=at)
        yield source, actual
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _decrypt_to_scratch(fh: Any, keyring: Any, scratch: Path, recording_id: int) -> tuple[Path, str, int]:
    """Decrypt, streaming, into a 0600 temporary file in ``scratch``: (its path, plaintext sha256, size)."""
    if keyring is None:
        raise AgeError(f"recording {recording_id} is encrypted and [encryption] is off here: no private key")
    from callproof.encryption import decrypt
    fd, name = tempfile.mkstemp(prefix=".source-", suffix=".wav", dir=scratch)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            digests = decrypt(fh, out, keyring.identities())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digests.plaintext_sha256, digests.plaintext_size


def _check_against_record(db: SyncDatabase, config: Config, request: dict, recording: dict, actual: str,
                          size: int, *, actor: str, at: str) -> None:
    protocol = request["protocol"]
    try:  # the signed evidence record, never the editable column alone (docs/evidence.md)
        expected, signed = expected_sha256(db, config, recording)
    except EvidenceError as exc:
        db.audit.append("recording.integrity_failed", actor, at, protocol=protocol,
                        subject=f"recording:{recording['id']}",
                        details={"request_id": request["id"], "why": "no valid signed evidence record",
                                 "actual_sha256": actual, "size_bytes": size})
        raise ExportError("integrity", f"the recording of protocol {protocol} cannot be proven: {exc};"
                          " not exported") from None
    if actual != expected:
        db.audit.append("recording.integrity_failed", actor, at, protocol=protocol,
                    subject=f"recording:{recording['id']}",
                    details={"request_id": request["id"], "expected_sha256": expected, "signed": signed,
                             "actual_sha256": actual, "size_bytes": size})
        raise ExportError("integrity", f"the recording of protocol {protocol} changed since it was"
                          f" finalised (sha256 {actual} != {'signed' if signed else 'stored'} {expected});"
                          " not exported")


def _audit_failure(db: SyncDatabase, actor: str, at: str, protocol: str, recording: dict[str, Any],
                   request_id: int, why: str) -> None:
    db.audit.append("recording.export_failed", actor, at, protocol=protocol,
                subject=f"recording:{recording['id']}", details={"request_id": request_id, "why": why})


def _export_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=EXPORT_DIR_MODE, parents=True)
        os.chmod(path, EXPORT_DIR_MODE)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        if not path.is_dir():
            raise ExportError("conversion", f"rights.export_dir {path} exists and is not a directory") from None
    return path


@dataclass(frozen=True)
class _Plain:
    """The export's plaintext, when what is stored is its age file."""
    sha256: str
    size: int
    key_ids: tuple[str, ...]


def _write_export(source: Any, source_format: str, fmt: str, tags: dict[str, str], export_dir: Path,
                  request_id: int, protocol: str, keyring: Any = None) -> tuple[Path, _Plain | None]:
    """Convert and publish: temp file (0600) -> [encrypted to the hold key] -> 0640 -> hard
    link to a new name (never replaces an existing export) -> temps removed.  Returns the
    final path (and the plaintext's digest when it is stored encrypted)."""
    if not _PROTOCOL.fullmatch(protocol):
        raise ExportError("no_recording", f"not a 17-digit protocol: {protocol!r}")
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=f".{fmt}", dir=export_dir)
    tmp = Path(tmp_name)
    sealed: Path | None = None
    plain = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                audio = AudioSegment.from_file(io.BytesIO(source) if isinstance(source, bytes) else source,
                                               format=source_format)
                audio.export(out, format=fmt, tags=tags, **_CODECS[fmt])
            except Exception as exc:  # pydub raises CouldntDecode/EncodeError, OSError...
                raise ExportError("conversion", f"converting the recording to {fmt} failed: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        published = tmp
        if keyring is not None:
            sealed, plain = _encrypt_export(tmp, keyring, export_dir)
            published = sealed
        os.chmod(published, EXPORT_FILE_MODE)
        final = _publish(published, export_dir, int(request_id), protocol, fmt + (".age" if sealed else ""))
    finally:
        tmp.unlink(missing_ok=True)
        if sealed is not None:
            sealed.unlink(missing_ok=True)
    _fsync_dir(export_dir)
    return final, plain


def _encrypt_export(tmp: Path, keyring: Any, export_dir: Path) -> tuple[Path, _Plain]:
    """The converted file encrypted to the hold key, as a second temporary file."""
    from callproof.encryption import encrypt
    hold = keyring.hold_recipients()
    fd, name = tempfile.mkstemp(prefix=".export-", suffix=".age", dir=export_dir)
    sealed = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, tmp.open("rb") as src:
            digests = encrypt(src, out, hold.recipients)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        sealed.unlink(missing_ok=True)
        raise
    return sealed, _Plain(digests.plaintext_sha256, digests.plaintext_size, tuple(hold.key_ids))


def _publish(tmp: Path, export_dir: Path, request_id: int, protocol: str, fmt: str) -> Path:
    for n in range(1, _MAX_NAME_TRIES + 1):
        final = export_dir / f"request-{request_id}-{protocol}-{n}.{fmt}"
        try:
            os.link(tmp, final)
        except FileExistsError:
            continue
        return final
    raise ExportError("conversion", f"too many exports of request {request_id} in {export_dir}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_and_size(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
