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
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydub import AudioSegment

from callproof.config import EXPORT_FORMATS, Config
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
    ``recording_missing``, ``integrity``, ``conversion``."""

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
    source = _checked_source(db, config, request, recording, actor=actor, at=at)

    started = parse_db_time(call["started_at"]).astimezone(config.general.tz)
    tags = recording_tags(call["protocol"], started, config.general.timezone)
    export_dir = _export_dir(config.rights.export_dir)
    final = _write_export(source, Path(recording["path"]).suffix.lstrip(".").lower() or "wav",
                          fmt, tags, export_dir, request_id, call["protocol"])
    try:
        digest, size = _sha256_and_size(final)
        try:
            return db.exports.record(
                request_id, fmt=fmt, path=str(final), sha256=digest, size_bytes=size, actor=actor, at=at,
                protocol=call["protocol"], exportable=EXPORTABLE_STATES,
                audit_details={"request_id": request_id, "recording_id": recording["id"], "format": fmt,
                               "sha256": digest, "size_bytes": size, "file": final.name,
                               "source_sha256": hashlib.sha256(source).hexdigest()})
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


def _checked_source(db: SyncDatabase, config: Config, request: dict, recording: dict, *,
                    actor: str, at: str) -> bytes:
    """The recording's bytes, read once, after checking them against the stored sha256."""
    protocol = request["protocol"]
    path = Path(recording["path"])
    root = config.recording.root.resolve()
    if not path.resolve().is_relative_to(root):
        _audit_failure(db, actor, at, protocol, recording, request["id"], "outside_root")
        raise ExportError("recording_missing", f"recording {recording['id']} is not under"
                          f" recording.root {root}; refusing to read it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        why = "symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        _audit_failure(db, actor, at, protocol, recording, request["id"], f"unreadable: {why}")
        raise ExportError("recording_missing", f"the recording file of protocol {protocol}"
                          f" cannot be read ({why}): {path}") from None
    actual = hashlib.sha256(data).hexdigest()
    try:  # the signed evidence record, never the editable column alone (docs/evidence.md)
        expected, signed = expected_sha256(db, config, recording)
    except EvidenceError as exc:
        db.audit.append("recording.integrity_failed", actor, at, protocol=protocol,
                        subject=f"recording:{recording['id']}",
                        details={"request_id": request["id"], "why": "no valid signed evidence record",
                                 "actual_sha256": actual, "size_bytes": len(data)})
        raise ExportError("integrity", f"the recording of protocol {protocol} cannot be proven: {exc};"
                          " not exported") from None
    if actual != expected:
        db.audit.append("recording.integrity_failed", actor, at, protocol=protocol,
                    subject=f"recording:{recording['id']}",
                    details={"request_id": request["id"], "expected_sha256": expected, "signed": signed,
                             "actual_sha256": actual, "size_bytes": len(data)})
        raise ExportError("integrity", f"the recording of protocol {protocol} changed since it was"
                          f" finalised (sha256 {actual} != {'signed' if signed else 'stored'} {expected});"
                          " not exported")
    return data


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


def _write_export(source: bytes, source_format: str, fmt: str, tags: dict[str, str],
                  export_dir: Path, request_id: int, protocol: str) -> Path:
    """Convert and publish: temp file (0600) -> 0640 -> hard link to a new name (never
    replaces an existing export) -> temp removed.  Returns the final path."""
    if not _PROTOCOL.fullmatch(protocol):
        raise ExportError("no_recording", f"not a 17-digit protocol: {protocol!r}")
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=f".{fmt}", dir=export_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                audio = AudioSegment.from_file(io.BytesIO(source), format=source_format)
                audio.export(out, format=fmt, tags=tags, **_CODECS[fmt])
            except Exception as exc:  # pydub raises CouldntDecode/EncodeError, OSError...
                raise ExportError("conversion", f"converting the recording to {fmt} failed: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, EXPORT_FILE_MODE)
        final = _publish(tmp, export_dir, int(request_id), protocol, fmt)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(export_dir)
    return final


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
