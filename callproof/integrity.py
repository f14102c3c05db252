"""Evidence integrity of recordings: re-hash files against their SIGNED evidence record
(``callproof recording verify``, exports), never against the editable ``recordings.sha256``
column alone (docs/evidence.md)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.storage import SyncDatabase

from .evidence.keys import KeyFileError, TrustedKeys, trusted_from_config
from .evidence.late_seal import describe as describe_late
from .evidence.records import Checked, check, signed_sha256
from .retention import SafeTree, UnsafePath

if TYPE_CHECKING:
    from .config import Config

_CHUNK = 1 << 20

#: Results of :func:`verify_recordings`; only ``ok`` proves the file is the call's.
#: ``empty``: the file holds no audio (a header-only WAV, 0 ms): nothing to prove.
RESULTS = ("ok", "mismatch", "forged", "unsigned", "missing", "unreadable", "empty")


class EvidenceError(Exception):
    """A recording whose bytes cannot be proven (no valid signed record, or it disagrees)."""


def sha256_file(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def judge(checked: Checked, actual: str, column: str | None) -> tuple[str, str]:
    """(result, detail) for a file hashing to ``actual`` whose record check gave ``checked``."""
    if checked.signed:
        expected = signed_sha256(checked)
        late = describe_late(checked.record)
        if actual != expected:
            return "mismatch", f"file hashes to {actual}, its signed evidence record says {expected}"
        if column != expected:
            return "ok", " ".join(filter(None, (late, f"(the recordings.sha256 column was altered to {column}; "
                                                      "the file matches the signed record)")))
        return "ok", late
    if checked.status in ("untrusted_key", "bad_signature"):
        return "forged", f"evidence record does not verify: {checked.detail}"
    if actual != column:
        return "mismatch", f"file hashes to {actual} (UNSIGNED: {checked.detail})"
    return "unsigned", f"UNSIGNED ({checked.detail}): matches only the editable recordings.sha256 column"


def verify_recordings(db: SyncDatabase, root: Path, protocol: str | None = None,
                      batch: int = 500, trusted: TrustedKeys | None = None) -> Iterator[dict[str, Any]]:
    """One result per finalised or empty recording (see :data:`RESULTS`), in id order, in bounded
    batches.  Files are opened without following symlinks, under the recordings root only."""
    db = SyncDatabase.wrap(db)
    trusted = trusted or TrustedKeys()
    tree = SafeTree(root)
    try:
        last = 0
        while True:
            rows = db.evidence.finalised_batch(after_id=last, protocol=protocol, limit=batch)
            if not rows:
                return
            last = rows[-1]["id"]
            for row in rows:
                rid, path = row["id"], row["path"]
                item = {"id": rid, "protocol": row["protocol"], "path": path, "sha256": row["sha256"]}
                if row.get("state") == "empty":
                    yield {**item, "result": "empty",
                           "detail": f"no audio ({row['size_bytes']} bytes, 0 ms): not a recording of the call"}
                    continue
                try:
                    parts = tree.parts(path)
                    pfd = tree._parent_fd(parts[:-1])
                    fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                    try:
                        actual = sha256_file(fd)
                    finally:
                        os.close(fd)
                except FileNotFoundError:
                    yield {**item, "result": "missing"}
                    continue
                except (UnsafePath, OSError) as exc:
                    yield {**item, "result": "unreadable", "detail": str(exc)}
                    continue
                checked = check(row["record"], row["signature"], row["key_fingerprint"], trusted, recording_id=rid)
                result, detail = judge(checked, actual, row["sha256"])
                yield {**item, "result": result, "detail": detail, "signed": checked.signed}
    finally:
        tree.close()


def expected_sha256(db: SyncDatabase, config: Config, recording: dict[str, Any]) -> tuple[str, bool]:
    """The sha256 the recording's file must have, and whether a signature proves it.

    With ``[evidence] signing_key`` configured only a valid signed record counts (EvidenceError
    otherwise); without one (signing off) the column is all there is, and False says so."""
    row = db.evidence.for_recording(recording["id"])
    signing = config.evidence.signing_key is not None or config.evidence.trusted_keys is not None
    if row is None and not signing:
        return recording["sha256"], False
    try:
        trusted = trusted_from_config(config)
    except KeyFileError as exc:
        raise EvidenceError(f"cannot load the evidence keys: {exc}") from None
    checked = check(row["record"] if row else None, row["signature"] if row else None,
                    row["key_fingerprint"] if row else None, trusted, recording_id=recording["id"])
    if checked.signed:
        digest = signed_sha256(checked)
        assert digest is not None
        return digest, True
    if not signing and checked.status == "unsigned":
        return recording["sha256"], False
    raise EvidenceError(f"recording {recording['id']} has no valid signed evidence record ({checked.detail})")
