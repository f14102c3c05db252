"""Export a requested call recording as a file the customer can receive.

The customer asked for the recording of their call (docs/customer-rights.md).
The finalised MixMonitor file is checked against the sha256 stored when it was
finalised (a file changed since then is never handed out), converted by
streaming it through ffmpeg (callproof/rights/conversion.py: no whole recording in
memory) to mp3 / ogg / wav with the call's protocol and local start
time in the file's own tags, and written atomically with mode 0640 under
``[rights] export_dir``.  The ``request_exports`` row, the ``recording.exported``
audit entry and the request's move to ``exported`` record it.

The output name is built from integers and the 17-digit protocol only
(``request-<id>-<protocol>-<n>.<fmt>``): nothing a caller typed reaches a path.

The recording is hashed as it is fed to ffmpeg, and the digest checked against the signed
record before anything is published: a changed recording is refused (``integrity``) even
when ffmpeg could convert it.  With ``[encryption] enabled`` an encrypted recording is
decrypted, chunk by chunk, straight into ffmpeg (every chunk authenticated); the export
itself is stored encrypted, as ``….<fmt>.age``, to the hold key: an export exists because
a customer's request is open, and what an open request keeps is readable by the hold key
(docs/keys.md), whatever the recording's period.  Its row's sha256 is the stored file's
(the download route checks it unchanged); the plaintext's is in the audit entry.  The
download route decrypts it, streaming, as it sends it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from callproof.config import EXPORT_FORMATS, Config
from callproof.encryption.errors import AgeError
from callproof.integrity import EvidenceError, expected_sha256
from callproof.rights.conversion import ConversionFailed, convert
from callproof.storage import InvalidStateError, SyncDatabase
from callproof.storage.exports import Export
from callproof.storage.timefmt import parse_db_time, to_db_time

EXPORT_FILE_MODE = 0o640
EXPORT_DIR_MODE = 0o750
# Requests in these states may be exported; 'delivered' keeps its state (a
# second format for a request already answered does not reopen it).
EXPORTABLE_STATES = frozenset({"received", "exported", "delivered"})
_PROTOCOL = re.compile(r"[0-9]{17}")
_READ_CHUNK = 1 << 20
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
    started = parse_db_time(call["started_at"]).astimezone(config.general.tz)
    tags = recording_tags(call["protocol"], started, config.general.timezone)
    with _opened_source(db, config, request, recording, actor=actor, at=at) as (fh, encrypted):
        source = _Source(db, config, request, recording, fh, encrypted, keyring, actor=actor, at=at)
        final, plain = _write_export(source, Path(recording["path"]).suffix.lstrip(".").lower() or "wav",
                                     fmt, tags, export_dir, request_id, call["protocol"], keyring)
        source_sha256 = source.sha256
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
def _opened_source(db: SyncDatabase, config: Config, request: dict, recording: dict, *,
                   actor: str, at: str) -> Iterator[tuple[Any, bool]]:
    """The recording's file (its age file when encrypted), open, never through a symlink,
    only under ``recording.root``; and whether it is encrypted."""
    from callproof.store.location import Elsewhere, locate

    protocol = request["protocol"]
    encrypted = recording.get("encryption") == "encrypted"
    try:  # this node's root, or the shared store once the recording's node moved it there
        where, stored = locate(recording, config)
    except Elsewhere as exc:
        _audit_failure(db, actor, at, protocol, recording, request["id"], f"unreachable here: {exc}")
        raise ExportError("recording_missing", f"recording {recording['id']}: {exc}") from None
    path, root = Path(stored), where.resolve()
    if not path.resolve().is_relative_to(root):
        _audit_failure(db, actor, at, protocol, recording, request["id"], "outside_root")
        raise ExportError("recording_missing", f"recording {recording['id']} is not under"
                          f" recording.root {root}; refusing to read it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _unreadable(db, actor, at, recording, request, path, exc) from None
    with os.fdopen(fd, "rb") as fh:
        yield fh, encrypted


def _unreadable(db: SyncDatabase, actor: str, at: str, recording: dict, request: dict, path: Path,
                exc: OSError) -> ExportError:
    protocol = request["protocol"]
    why = "symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
    _audit_failure(db, actor, at, protocol, recording, request["id"], f"unreadable: {why}")
    return ExportError("recording_missing", f"the recording file of protocol {protocol}"
                       f" cannot be read ({why}): {path}")


class _Source:
    """Feeds the recording's plaintext into the converter, hashing it; ``check()`` then
    holds the digest against the signed record (audited, ExportError when it fails)."""

    def __init__(self, db: SyncDatabase, config: Config, request: dict, recording: dict, fh: Any,
                 encrypted: bool, keyring: Any, *, actor: str, at: str) -> None:
        self.db, self.config, self.request, self.recording = db, config, request, recording
        self.fh, self.encrypted, self.keyring, self.actor, self.at = fh, encrypted, keyring, actor, at
        self.sha256 = ""
        self.size = 0

    def feed(self, sink: Any) -> None:
        protocol = self.request["protocol"]
        try:
            if self.encrypted:
                self.sha256, self.size = _decrypt_into(self.fh, sink, self.keyring, self.recording["id"])
            else:
                self.sha256, self.size = _copy_into(self.fh, sink)
        except OSError as exc:
            path = Path(self.recording["age_path"] if self.encrypted else self.recording["path"])
            raise _unreadable(self.db, self.actor, self.at, self.recording, self.request, path, exc) from None
        except AgeError as exc:
            _audit_failure(self.db, self.actor, self.at, protocol, self.recording, self.request["id"],
                           f"cannot be decrypted: {exc}")
            raise ExportError("integrity", f"the recording of protocol {protocol} cannot be decrypted: {exc};"
                              " not exported") from None

    def check(self) -> None:
        _check_against_record(self.db, self.config, self.request, self.recording, self.sha256, self.size,
                              actor=self.actor, at=self.at)


def _copy_into(fh: Any, sink: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := fh.read(_READ_CHUNK):
        h.update(chunk)
        size += len(chunk)
        sink.write(chunk)
    return h.hexdigest(), size


def _decrypt_into(fh: Any, sink: Any, keyring: Any, recording_id: int) -> tuple[str, int]:
    """Decrypt, streaming, into ``sink``: (plaintext sha256, size).  A chunk that fails
    authentication stops it (the converter's output is then thrown away)."""
    if keyring is None:
        raise AgeError(f"recording {recording_id} is encrypted and [encryption] is off here: no private key")
    from callproof.encryption import decrypt
    digests = decrypt(fh, sink, keyring.identities())
    return digests.plaintext_sha256, digests.plaintext_size


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


def _write_export(source: _Source, source_format: str, fmt: str, tags: dict[str, str], export_dir: Path,
                  request_id: int, protocol: str, keyring: Any = None) -> tuple[Path, _Plain | None]:
    """Convert and publish: temp file (0600) written by ffmpeg as the source streams in ->
    source checked against its signed record -> [encrypted to the hold key] -> 0640 -> hard
    link to a new name (never replaces an existing export) -> temps removed.  Returns the
    final path (and the plaintext's digest when it is stored encrypted)."""
    if not _PROTOCOL.fullmatch(protocol):
        raise ExportError("no_recording", f"not a 17-digit protocol: {protocol!r}")
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=f".{fmt}", dir=export_dir)
    tmp = Path(tmp_name)
    sealed: Path | None = None
    plain = None
    try:
        os.close(fd)  # ffmpeg writes it (its mode stays 0600)
        try:
            _, failure = convert(source.feed, source_format, fmt, tags, tmp)
        except (ConversionFailed, ValueError, OSError) as exc:
            raise ExportError("conversion", f"converting the recording to {fmt} failed: {exc}") from exc
        source.check()  # a changed recording is refused even when ffmpeg could convert it
        if failure is not None:
            raise ExportError("conversion", f"converting the recording to {fmt} failed: {failure}")
        _fsync_file(tmp)
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


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
