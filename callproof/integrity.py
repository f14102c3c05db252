"""Evidence integrity of recordings: re-hash files against their SIGNED evidence record
(``callproof recording verify``, exports), never against the editable ``recordings.sha256``
column alone (docs/evidence.md).

An encrypted recording (``<name>.wav.age``) is checked without any private key by its age
payload: the sha256 of everything after the header, which the signed record binds (or, for a
recording encrypted after it was signed, the ``recording.encrypted`` audit entry, in the
hash chain), and the plaintext size the payload's length implies.  With the private keyring
(``verify --plaintext``) it is also decrypted, streaming, and its plaintext sha256 compared
with the signed one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.storage import SyncDatabase

from .encryption.errors import AgeError
from .evidence.keys import KeyFileError, TrustedKeys, trusted_from_config
from .evidence.late_seal import describe as describe_late
from .evidence.records import Checked, check, signed_payload_sha256, signed_sha256
from .retention import SafeTree, UnsafePath

if TYPE_CHECKING:
    from .config import Config

_CHUNK = 1 << 20

#: Results of :func:`verify_recordings`; only ``ok`` proves the file is the call's.
#: ``empty``: the file holds no audio (a header-only WAV, 0 ms): nothing to prove.
RESULTS = ("ok", "mismatch", "forged", "unsigned", "missing", "unreadable", "empty", "elsewhere")


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


@dataclass(frozen=True)
class AgeDigests:
    """What an age file shows: its payload's sha256 and the plaintext size its length implies
    (no key needed), and the plaintext's sha256 when it was decrypted."""
    payload_sha256: str
    plaintext_size: int
    plaintext_sha256: str | None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def age_digests(fd: int, identities: list[Any] | None = None) -> AgeDigests:
    """Read the age file at ``fd`` once, streaming: the payload's sha256 and plaintext size;
    with ``identities`` it is decrypted (every chunk authenticated) and hashed as well."""
    from .encryption.header import read_header
    from .encryption.stream import NONCE_SIZE, decrypt, plaintext_size

    with open(fd, "rb", buffering=_CHUNK, closefd=False) as fh:
        if identities is not None:
            d = decrypt(fh, _Discard(), identities)  # type: ignore[arg-type]
            return AgeDigests(d.payload_sha256, d.plaintext_size, d.plaintext_sha256)
        read_header(fh)
        h = hashlib.sha256()
        n = 0
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
        return AgeDigests(h.hexdigest(), plaintext_size(n - NONCE_SIZE), None)


def audited_payload(db: SyncDatabase, recording_id: int) -> tuple[int, str] | None:
    """(audit entry id, payload sha256) of the newest ``recording.encrypted`` entry of a recording:
    what binds the payload of one encrypted after its record was signed."""
    import json

    found = None
    for entry in db.audit.for_subject(f"recording:{recording_id}"):
        if entry["action"] == "recording.encrypted" and entry.get("details"):
            details = json.loads(entry["details"]) if isinstance(entry["details"], str) else entry["details"]
            if isinstance(details.get("payload_sha256"), str):
                found = (entry["id"], details["payload_sha256"])
    return found


def judge_encrypted(checked: Checked, age: AgeDigests, row: dict[str, Any],
                    audited: tuple[int, str] | None) -> tuple[str, str]:
    """(result, detail) for an encrypted recording (see :func:`judge`)."""
    if checked.status in ("untrusted_key", "bad_signature"):
        return "forged", f"evidence record does not verify: {checked.detail}"
    record = (checked.record or {}).get("recording") or {}
    if checked.signed:
        expected = signed_payload_sha256(checked)
        via = "its signed evidence record"
        if expected is None and audited is not None:
            expected, via = audited[1], f"the recording.encrypted audit entry {audited[0]} (encrypted after signing)"
        if expected is None:
            return "unsigned", "UNSIGNED: nothing signed or audited binds this age file's payload"
        if age.payload_sha256 != expected:
            return "mismatch", f"age payload hashes to {age.payload_sha256}, {via} says {expected}"
        if age.plaintext_size != record.get("size_bytes"):
            return "mismatch", (f"age payload holds {age.plaintext_size} bytes of plaintext, the signed record says "
                                f"{record.get('size_bytes')}")
        if age.plaintext_sha256 is not None and age.plaintext_sha256 != signed_sha256(checked):
            return "mismatch", (f"decrypted, it hashes to {age.plaintext_sha256}, its signed evidence record says "
                                f"{signed_sha256(checked)}")
        detail = "decrypted: plaintext matches" if age.plaintext_sha256 is not None else "payload matches"
        if expected != signed_payload_sha256(checked):
            detail += f" ({via})"
        return "ok", detail
    if age.payload_sha256 != row.get("payload_sha256"):
        return "mismatch", f"age payload hashes to {age.payload_sha256} (UNSIGNED: {checked.detail})"
    if age.plaintext_sha256 is not None and age.plaintext_sha256 != row.get("sha256"):
        return "mismatch", f"decrypted, it hashes to {age.plaintext_sha256} (UNSIGNED: {checked.detail})"
    return "unsigned", f"UNSIGNED ({checked.detail}): matches only the editable recordings columns"


def verify_recordings(db: SyncDatabase, root: Path, protocol: str | None = None,
                      batch: int = 500, trusted: TrustedKeys | None = None,
                      identities: list[Any] | None = None, *, store: Path | None = None,
                      node: str | None = None) -> Iterator[dict[str, Any]]:
    """One result per finalised or empty recording (see :data:`RESULTS`), in id order, in bounded
    batches.  Files are opened without following symlinks, under the recordings root only (or
    the shared ``store``, for a recording moved there: migration 0018).  ``identities`` (the
    private keyring's): encrypted recordings are decrypted too.  ``node``: this node's name; a
    recording still local to another node is 'elsewhere' (verified on its node)."""
    db = SyncDatabase.wrap(db)
    trusted = trusted or TrustedKeys()
    local_tree = SafeTree(root)
    store_tree = SafeTree(store) if store is not None and os.path.isdir(store) else None
    try:
        last = 0
        while True:
            rows = db.evidence.finalised_batch(after_id=last, protocol=protocol, limit=batch)
            if not rows:
                return
            last = rows[-1]["id"]
            for row in rows:
                rid = row["id"]
                encrypted = row.get("encryption") == "encrypted"
                path = row["age_path"] if encrypted else row["path"]
                tree: SafeTree | None = local_tree
                if row.get("store_path"):
                    tree = store_tree
                    path = os.path.join(os.fspath(store), row["store_path"]) if store is not None else path
                age, actual = None, ""
                item = {"id": rid, "protocol": row["protocol"], "path": path, "sha256": row["sha256"]}
                if row.get("state") == "empty":
                    yield {**item, "result": "empty",
                           "detail": f"no audio ({row['size_bytes']} bytes, 0 ms): not a recording of the call"}
                    continue
                if not row.get("store_path") and node and row.get("node") not in (None, node):
                    yield {**item, "result": "elsewhere",
                           "detail": f"still on node {row['node']} (not yet in the shared store): verify it there"}
                    continue
                if tree is None:
                    yield {**item, "result": "unreadable", "detail": "in the shared recordings store, which "
                           "[recording] store does not name (or is not mounted) here"}
                    continue
                try:
                    parts = tree.parts(path)
                    pfd = tree._parent_fd(parts[:-1])
                    fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                    try:
                        if encrypted:
                            age = age_digests(fd, identities)
                        else:
                            actual = sha256_file(fd)
                    finally:
                        os.close(fd)
                except FileNotFoundError:
                    yield {**item, "result": "missing"}
                    continue
                except (UnsafePath, OSError, AgeError) as exc:
                    yield {**item, "result": "unreadable", "detail": str(exc)}
                    continue
                checked = check(row["record"], row["signature"], row["key_fingerprint"], trusted, recording_id=rid)
                if age is not None:
                    bound = None if signed_payload_sha256(checked) else audited_payload(db, rid)
                    result, detail = judge_encrypted(checked, age, row, bound)
                else:
                    result, detail = judge(checked, actual, row["sha256"])
                yield {**item, "result": result, "detail": detail, "signed": checked.signed,
                       "encrypted": encrypted}
    finally:
        local_tree.close()
        if store_tree is not None:
            store_tree.close()


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
