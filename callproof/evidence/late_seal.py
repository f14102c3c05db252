"""``callproof evidence seal``: a signed evidence record, after the fact, for recordings
finalised while no signing key was configured (docs/evidence.md#sealing-late).

The sha256 that gets signed is the one the call's ``recording.finalised`` audit entry holds,
written when the recording was finalised and protected by the audit chain (and its signed
checkpoints), never the editable ``recordings.sha256`` column nor the unsigned record. The
file must still hash to it: otherwise nothing is signed and ``recording.integrity_failed``
is audited. The record says plainly that it was sealed late: when, and from which audit
entry its hash comes. Each recording is sealed in a transaction of its own with its
``evidence.sealed_late`` audit entry, so an interrupted run resumes where it stopped and a
second run finds nothing to do.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callproof.retention import SafeTree, UnsafePath
from callproof.storage import SyncDatabase

from .checkpoints import read_lines, verify
from .keys import Signer, TrustedKeys
from .records import build_record, encode

if TYPE_CHECKING:
    from callproof.config import Config

#: Results of :func:`seal_late`, one per recording that had no signed record.
RESULTS = ("sealed", "mismatch", "no_audit_entry", "ambiguous", "missing", "unreadable")


class ChainNotTrusted(Exception):
    """The audit chain does not verify: its entries cannot vouch for any hash."""


@dataclass(frozen=True)
class Anchor:
    """How far the audit chain is proven by signed checkpoints (0: not anchored)."""
    proven_id: int
    proven_at: str | None


def chain_anchor(db: SyncDatabase, config: Config, trusted: TrustedKeys) -> Anchor:
    """The chain checked on its own and against the checkpoints; ChainNotTrusted when broken."""
    path = config.audit.checkpoint_file
    lines: list = []
    if path is not None:
        try:
            lines = read_lines(path)
        except FileNotFoundError:
            lines = []
    report = verify(db, lines, trusted, config.audit.tsa_ca_file)
    if not report.intact:
        raise ChainNotTrusted("; ".join(report.problems))
    return Anchor(report.proven_id, report.proven_at)


def _finalised_entry(db: SyncDatabase, path: str) -> tuple[str, dict[str, Any] | None]:
    """('ok', entry with parsed details) or (result, None) when the audit chain holds no single answer."""
    entries = db.evidence.finalised_entries(path)
    digests = set()
    for e in entries:
        details = json.loads(e["details"] or "{}")
        e["facts"] = details
        digests.add(details.get("sha256"))
    if not entries or digests == {None}:
        return "no_audit_entry", None
    if len(digests) != 1:
        return "ambiguous", None
    return "ok", entries[0]


def _hash_file(tree: SafeTree, path: str) -> str:
    parts = tree.parts(path)
    pfd = tree._parent_fd(parts[:-1])
    fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def late_record(facts: dict[str, Any], entry: dict[str, Any], anchor: Anchor, signed_at: str,
                fingerprint: str) -> dict[str, Any]:
    """The record of a recording sealed late: its facts, with the recording's sha256, size and
    duration taken from its ``recording.finalised`` audit entry, and ``sealed_late`` saying so."""
    facts = copy.deepcopy(facts)
    rec = facts["recording"]
    for name in ("sha256", "size_bytes", "duration_ms"):
        if entry["facts"].get(name) is not None:
            rec[name] = entry["facts"][name]
    record = build_record(facts, signed_at, fingerprint)
    record["sealed_late"] = {
        "at": signed_at,
        "sha256_from": "audit_log",
        "audit_entry_id": entry["id"], "audit_entry_at": entry["at"], "audit_entry_hash": entry["hash"],
        "anchored_by_checkpoint_of": anchor.proven_at if entry["id"] <= anchor.proven_id else None,
    }
    return record


def seal_late(db: SyncDatabase, config: Config, signer: Signer, trusted: TrustedKeys, *, actor: str,
              now: str, batch: int = 200) -> Iterator[dict[str, Any]]:
    """Seal every finalised recording without a signed record, in id order; one result each
    (see :data:`RESULTS`). ChainNotTrusted (nothing sealed) when the audit chain is broken."""
    from callproof.store.location import Elsewhere, locate

    anchor = chain_anchor(db, config, trusted)
    tree = SafeTree(config.recording.root)
    store = config.recording.store
    shared = SafeTree(store) if store is not None and os.path.isdir(store) else None
    try:
        last = 0
        while rows := db.evidence.unsigned_batch(after_id=last, limit=batch):
            last = rows[-1]["id"]
            for rec in rows:
                try:  # the plaintext under this node's root, or in the shared store once moved there
                    _, path = locate(rec, config, encrypted=False)
                except Elsewhere as exc:
                    yield {"id": rec["id"], "protocol": rec["protocol"], "result": "unreadable", "detail": str(exc)}
                    continue
                if rec.get("store_path") and rec.get("encryption") == "encrypted":
                    yield {"id": rec["id"], "protocol": rec["protocol"], "result": "missing"}  # no plaintext there
                    continue
                here = shared if rec.get("store_path") else tree
                if here is None:
                    yield {"id": rec["id"], "protocol": rec["protocol"], "result": "unreadable",
                           "detail": "the shared recordings store is not mounted here"}
                    continue
                yield _seal_one(db, here, rec, anchor, signer, actor, now, path)
    finally:
        tree.close()
        if shared is not None:
            shared.close()


def _seal_one(db: SyncDatabase, tree: SafeTree, rec: dict[str, Any], anchor: Anchor, signer: Signer, actor: str,
              now: str, path: str | None = None) -> dict[str, Any]:
    item = {"id": rec["id"], "protocol": rec["protocol"]}
    found, entry = _finalised_entry(db, rec["path"])
    if entry is None:
        return {**item, "result": found}
    expected = entry["facts"]["sha256"]
    try:
        actual = _hash_file(tree, path or rec["path"])
    except FileNotFoundError:
        return {**item, "result": "missing"}
    except (UnsafePath, OSError) as exc:
        return {**item, "result": "unreadable", "detail": str(exc)}
    if actual != expected:
        db.audit.append("recording.integrity_failed", actor, now, protocol=rec["protocol"],
                        subject=f"recording:{rec['id']}",
                        details={"why": "evidence seal: the file is not the one finalised",
                                 "expected_sha256": expected, "audit_entry_id": entry["id"],
                                 "actual_sha256": actual})
        return {**item, "result": "mismatch",
                "detail": f"file hashes to {actual}, its recording.finalised audit entry {entry['id']} says {expected}"}
    facts = db.evidence.facts(rec["id"])
    assert facts is not None
    data = encode(late_record(facts, entry, anchor, now, signer.fingerprint))
    signature = base64.b64encode(signer.sign(data)).decode("ascii")
    digest = hashlib.sha256(data).hexdigest()
    written = db.evidence.insert_sealed_late(
        rec["id"], rec["protocol"], data.decode("utf-8"), digest, signature, signer.fingerprint, now, actor,
        {"recording_id": rec["id"], "record_sha256": digest, "key": signer.fingerprint,
         "sha256": expected, "audit_entry_id": entry["id"]})
    return {**item, "result": "sealed" if written else "already", "audit_entry_id": entry["id"]}


def summary(results: Counter[str]) -> str:
    return ", ".join(f"{name} {results.get(name, 0)}" for name in RESULTS)


def sealed_late(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record's ``sealed_late`` facts, or None for a record signed at finalisation."""
    value = (record or {}).get("sealed_late")
    return value if isinstance(value, dict) else None


def describe(record: dict[str, Any] | None) -> str:
    """'' for a record signed at finalisation; otherwise the plain statement a verifier shows."""
    late = sealed_late(record)
    if late is None:
        return ""
    anchored = (f", that entry anchored by the checkpoint of {late['anchored_by_checkpoint_of']}"
                if late.get("anchored_by_checkpoint_of") else ", that entry not anchored by a checkpoint")
    return (f"SEALED LATE on {late.get('at')}: signed after the fact, its sha256 taken from the audit chain "
            f"(recording.finalised entry {late.get('audit_entry_id')} of {late.get('audit_entry_at')}{anchored})")
