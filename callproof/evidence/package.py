"""The evidence package: one file a company hands to a consumer, Procon or a court, checked
offline with ``callproof evidence verify FILE [--key FINGERPRINT]`` (docs/evidence.md).

A zip (stored, not compressed: the recording is already audio) holding:

``recording.<ext>``        the call's recording, byte for byte (an encrypted one decrypted
                           into it, streaming, with the private keyring: the package is what
                           the company hands over, so it holds the plaintext)
``record.json``            the signed evidence record, the exact signed bytes
``record.sig``             its Ed25519 signature (base64)
``keys/<fingerprint>.pem`` the public keys that signed the record and the checkpoint
``audit.json``             the call's audit entries with their chain fields
``checkpoint.json``        the first signed checkpoint that covers them, with its RFC 3161 token
``tsa-ca.pem``             the time-stamping authority's CA certificate (when configured)
``chain_proof.json``       each of the call's entries' Merkle proof against the checkpoint's
                           ``entries_root`` (sibling hashes only: no other entry's content)
``chain.json``             (``--chain``) every entry from the call's first to the checkpoint's head
``manifest.json``          the sha256 of every other member
``README.txt``             what this is and how to check it

No database and no configuration is needed to verify it, only callproof (or any Ed25519 and
sha256 tool, following README.txt).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.storage import SyncDatabase
from callproof.storage.audit import GENESIS, entry_hash

from . import merkle
from .checkpoints import _valid, body_bytes, read_lines
from .keys import KeyFileError, TrustedKeys, load_public_pem, public_pem, trusted_from_config
from .late_seal import describe as describe_late
from .records import check, signed_sha256
from .tsa import TsaError, verify_token

if TYPE_CHECKING:
    from callproof.config import Config

_MEMBER_CHUNK = 1 << 20

README = """callproof evidence package: protocol {protocol}

This file proves that recording.{ext} is the recording callproof finalised for the call of
protocol {protocol}, and when, as signed then by the company's evidence key
{fingerprint}.

Check it with callproof (no database or configuration needed):

    callproof evidence verify THIS_FILE --key {fingerprint}

or by hand: sha256(recording.{ext}) must equal record.json's recording.sha256; record.sig is the
Ed25519 signature (base64) of the exact bytes of record.json by the public key in
keys/{fingerprint}.pem (fingerprint: sha256 of the key's 32 raw bytes). audit.json holds the
call's audit entries; each entry's hash is sha256(prev_hash + canonical JSON of id, at, actor,
action, protocol, subject, details). checkpoint.json is a signed checkpoint of the audit chain
taken after them{tsa_note}; its entries_root is a Merkle tree (RFC 6962, SHA-256) of every
entry's hash up to its head, and chain_proof.json gives each of the call's entries' leaf
index and sibling hashes, so the entries are proven to be in the chain it signed without
disclosing any other entry.{late_note} Ask the company for the public key's fingerprint through another
channel (its website, a letter): --key then proves the package was signed by that key.
"""


class PackageError(Exception):
    """The package cannot be made (no finalised recording, no signed record, ...)."""


def _member_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _streamed_member_sha(zf: zipfile.ZipFile, name: str) -> str:
    h = hashlib.sha256()
    with zf.open(name) as src:
        while block := src.read(_MEMBER_CHUNK):
            h.update(block)
    return h.hexdigest()


def build_package(db: SyncDatabase, config: Config, protocol: str, out: Path, *, chain: bool = False) -> dict:
    """Write the package of ``protocol`` to ``out`` (never over an existing file); a summary."""
    rec = db.recordings.latest_for_protocol(protocol)
    if rec is None or rec["state"] != "finalised":
        raise PackageError(f"no finalised recording for protocol {protocol}")
    row = db.evidence.for_recording(rec["id"])
    trusted = trusted_from_config(config)
    checked = check(row["record"] if row else None, row["signature"] if row else None,
                    row["key_fingerprint"] if row else None, trusted, recording_id=rec["id"])
    if not checked.signed or row is None:
        raise PackageError(f"recording {rec['id']} has no valid signed evidence record ({checked.detail})")
    signed = signed_sha256(checked)
    assert signed is not None  # a signed record holds its sha256
    identities = _identities_for(config, rec)
    entries = db.audit.for_protocol(protocol)
    members: dict[str, bytes] = {}
    ext = Path(rec["path"]).suffix.lstrip(".").lower() or "wav"
    recording_name = f"recording.{ext}"
    members["record.json"] = row["record"].encode("utf-8")
    members["record.sig"] = row["signature"].encode("ascii")
    members["audit.json"] = json.dumps(entries, indent=1, sort_keys=True).encode("utf-8")
    keys = {row["key_fingerprint"]}
    checkpoint = _covering_checkpoint(config, trusted, max((e["id"] for e in entries), default=0))
    tsa_note = ""
    if checkpoint is not None:
        members["checkpoint.json"] = json.dumps(checkpoint, sort_keys=True).encode("utf-8")
        keys.add(checkpoint["checkpoint"]["key"])
        if checkpoint.get("tsa_token") and config.audit.tsa_ca_file is not None:
            members["tsa-ca.pem"] = config.audit.tsa_ca_file.read_bytes()
            tsa_note = ", and timestamped by an RFC 3161 authority (tsa-ca.pem is its CA)"
        proof = _chain_proof(db, checkpoint["checkpoint"], entries)
        if proof is not None:
            members["chain_proof.json"] = json.dumps(proof, indent=1, sort_keys=True).encode("utf-8")
        if chain and entries:
            segment = db.audit.range(entries[0]["id"], checkpoint["checkpoint"]["head_id"])
            members["chain.json"] = json.dumps(segment, indent=1, sort_keys=True).encode("utf-8")
    for fp in sorted(keys):
        members[f"keys/{fp}.pem"] = public_pem(trusted.public_key(fp)).encode("ascii")
    late = describe_late(checked.record)
    late_note = f"\n\nThis record was {late}." if late else ""
    members["README.txt"] = README.format(protocol=protocol, ext=ext, fingerprint=row["key_fingerprint"],
                                          tsa_note=tsa_note, late_note=late_note).encode("utf-8")
    files = {n: _member_sha(d) for n, d in members.items()}
    files[recording_name] = signed  # checked below, as the recording is copied in
    members["manifest.json"] = json.dumps({"protocol": protocol, "files": dict(sorted(files.items()))},
                                          indent=1, sort_keys=True).encode("utf-8")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            with zf.open(zipfile.ZipInfo(recording_name, date_time=(2000, 1, 1, 0, 0, 0)), "w",
                         force_zip64=True) as dst:
                actual = _copy_recording(config, rec, dst, identities)
            if actual != signed:
                raise PackageError(f"recording {rec['id']}: the file does not match its signed record; not packaged")
            for name, data in members.items():
                zf.writestr(zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0)), data)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return {"protocol": protocol, "recording_id": rec["id"], "entries": len(entries),
            "checkpoint": checkpoint is not None, "key": row["key_fingerprint"], "sealed_late": bool(late)}


def _chain_proof(db: SyncDatabase, body: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Each of the call's entries' place in the checkpoint's Merkle tree of entry hashes: its
    leaf index and sibling hashes (other entries' contents never enter the package). None
    for a checkpoint made before checkpoints carried a root."""
    if not isinstance(body.get("entries_root"), str) or not entries:
        return None
    ids_hashes = db.audit.hashes_upto(body["head_id"])
    tree = merkle.levels([h for _, h in ids_hashes])
    index = {entry_id: n for n, (entry_id, _) in enumerate(ids_hashes)}
    return {"tree": merkle.TREE, "size": len(ids_hashes), "root": body["entries_root"],
            "entries": {str(e["id"]): {"index": index[e["id"]], "path": merkle.audit_path(tree, index[e["id"]])}
                        for e in entries if e["id"] in index}}


def _identities_for(config: Config, rec: dict[str, Any]) -> list[Any] | None:
    """The private keyring's identities for an encrypted recording (PackageError naming what is
    missing); None for a plaintext one."""
    if rec.get("encryption") != "encrypted":
        return None
    from callproof.encryption.keyring import KeyringError, PrivateKeyring
    try:
        return PrivateKeyring.load(config).identities()
    except KeyringError as exc:
        raise PackageError(f"recording {rec['id']} is encrypted: the evidence package needs the private keyring "
                           f"([encryption] private_keys_dir): {exc}") from None


def _copy_recording(config: Config, rec: dict[str, Any], dst: Any, identities: list[Any] | None) -> str:
    """Copy the recording's plaintext into ``dst``, streaming (decrypting an encrypted one, every
    chunk authenticated); its sha256.  The file is this node's, or the shared store's once moved."""
    from callproof.store.location import Elsewhere, locate

    try:
        _, path = locate(rec, config, encrypted=identities is not None)
    except Elsewhere as exc:
        raise PackageError(f"recording {rec['id']}: {exc}") from None
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        if identities is not None:
            from callproof.encryption import AgeError, decrypt
            try:
                return decrypt(src, dst, identities).plaintext_sha256
            except AgeError as exc:
                raise PackageError(f"recording {rec['id']} cannot be decrypted: {exc}; not packaged") from None
        h = hashlib.sha256()
        while block := src.read(_MEMBER_CHUNK):
            h.update(block)
            dst.write(block)
        return h.hexdigest()


def _covering_checkpoint(config: Config, trusted: TrustedKeys, last_id: int) -> dict[str, Any] | None:
    """The first valid checkpoint whose head is at or after ``last_id`` (a timestamped one first)."""
    path = config.audit.checkpoint_file
    if path is None or last_id == 0:
        return None
    try:
        lines = read_lines(path)
    except FileNotFoundError:
        return None
    covering = [ln for ln in lines if ln and _valid(ln, trusted) and ln["checkpoint"]["head_id"] >= last_id]
    # the first that is timestamped and carries a Merkle root, else the best of the others
    ranked = sorted(covering, key=lambda ln: (not ln.get("tsa_token") or "entries_root" not in ln["checkpoint"],
                                              "entries_root" not in ln["checkpoint"], not ln.get("tsa_token")))
    return ranked[0] if ranked else None


# -- offline verification ------------------------------------------------------------------

def verify_package(path: Path, key: str | None = None) -> tuple[bool, list[str]]:
    """(ok, lines of findings) for a package file, offline."""
    notes: list[str] = []
    ok = True

    def bad(text: str) -> None:
        nonlocal ok
        ok = False
        notes.append("FAIL: " + text)

    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return False, [f"FAIL: not an evidence package: {exc}"]
    with zf:
        names = set(zf.namelist())
        try:
            manifest = json.loads(zf.read("manifest.json"))
            files: dict[str, str] = manifest["files"]
        except (KeyError, ValueError) as exc:
            return False, [f"FAIL: no readable manifest.json ({exc})"]
        # the recording is hashed as it streams out of the zip (a 3-hour call is never in
        # memory); the other members are small documents, read whole
        data = {n: zf.read(n) for n in names if n != "manifest.json" and not n.startswith("recording.")}
        digests = {n: _streamed_member_sha(zf, n) if n not in data else _member_sha(data[n])
                   for n in names if n != "manifest.json"}
    for name, digest in files.items():
        if digests.get(name) != digest:
            bad(f"{name}: missing or changed since the package was made")
    extra = set(digests) - set(files)
    if extra:
        bad(f"members not in the manifest: {sorted(extra)}")
    trusted = TrustedKeys()
    for name, blob in data.items():
        if name.startswith("keys/") and name.endswith(".pem"):
            try:
                key_fp = trusted.add(load_public_pem(blob, name))
            except KeyFileError as exc:
                bad(str(exc))
                continue
            if name != f"keys/{key_fp}.pem":
                bad(f"{name}: named after another key ({key_fp})")
    record = data.get("record.json", b"").decode("utf-8", "replace")
    signature = data.get("record.sig", b"").decode("ascii", "replace").strip()
    try:
        parsed = json.loads(record) if record.startswith("{") else {}
    except ValueError:
        parsed = {}
    fp_value = parsed.get("key") if isinstance(parsed, dict) else None
    fp = fp_value if isinstance(fp_value, str) else None
    checked = check(record or None, signature or None, fp, trusted)
    if not checked.signed:
        bad(f"the evidence record does not verify: {checked.detail}")
    else:
        notes.append(f"ok: record signed by key {fp}")
        if late := describe_late(checked.record):
            notes.append(f"note: {late}")
    if key is not None and fp != key.lower():
        bad(f"signed by key {fp}, not the expected {key}")
    audio = [n for n in digests if n.startswith("recording.")]
    if len(audio) != 1:
        bad("no recording in the package")
    elif checked.signed:
        actual = digests[audio[0]]
        if actual != signed_sha256(checked):
            bad(f"{audio[0]} hashes to {actual}; the signed record says {signed_sha256(checked)}")
        else:
            rec = checked.record["recording"] if checked.record else {}
            notes.append(f"ok: {audio[0]} is the recording of protocol {parsed.get('protocol')} "
                         f"({rec.get('size_bytes')} bytes, {rec.get('duration_ms')} ms, "
                         f"finalised {rec.get('finalised_at')})")
    _verify_audit(data, trusted, notes, bad)
    return ok, notes


def _verify_chain_proof(data: dict[str, bytes], body: dict[str, Any], entries: list[dict[str, Any]],
                        notes: list[str], bad: Any) -> bool:
    """chain_proof.json: every one of the call's entries is a leaf of the checkpoint's signed
    Merkle root. True when that is proven."""
    if "chain_proof.json" not in data:
        return False
    try:
        proof = json.loads(data["chain_proof.json"])
        size, root, leaves = proof["size"], body["entries_root"], proof["entries"]
    except (ValueError, KeyError, TypeError) as exc:
        bad(f"chain_proof.json is not a chain proof of this checkpoint ({exc})")
        return False
    if size != body.get("entries_in_root") or proof.get("root") != root:
        bad("chain_proof.json is not for this checkpoint's tree")
        return False
    for e in entries:
        leaf = leaves.get(str(e.get("id")))
        if leaf is None or merkle.root_from_path(e["hash"], leaf["index"], size, leaf["path"]) != root:
            bad(f"audit entry {e.get('id')}: not in the chain the checkpoint signed (its Merkle proof fails)")
            return False
    notes.append(f"ok: the call's {len(entries)} audit entries are in the chain the checkpoint signed "
                 f"(Merkle proof against its root of {size} entries; no other entry disclosed)")
    return True


def _verify_audit(data: dict[str, bytes], trusted: TrustedKeys, notes: list[str], bad: Any) -> None:
    try:
        entries = json.loads(data.get("audit.json", b"[]"))
    except ValueError:
        bad("audit.json is not JSON")
        return
    for e in entries:
        if entry_hash(e.get("prev_hash", GENESIS), e) != e.get("hash"):
            bad(f"audit entry {e.get('id')}: its hash does not match its content")
    notes.append(f"ok: {len(entries)} audit entries of the call, each consistent with its hash")
    if "checkpoint.json" not in data:
        notes.append("note: no checkpoint covers these entries yet (the audit chain is not anchored in this package)")
        return
    line = json.loads(data["checkpoint.json"])
    body = _valid(line, trusted)
    if body is None:
        bad("checkpoint.json is not signed by a key in the package")
        return
    last = max((e["id"] for e in entries), default=0)
    if body["head_id"] < last:
        bad(f"the checkpoint (head {body['head_id']}) does not cover entry {last}")
    notes.append(f"ok: checkpoint of {body['at']} signed by key {body['key']} (chain head {body['head_id']})")
    token = line.get("tsa_token")
    if token and "tsa-ca.pem" in data:
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".pem") as ca:
            ca.write(data["tsa-ca.pem"])
            ca.flush()
            try:
                when = verify_token(body_bytes(body), base64.b64decode(token), Path(ca.name))
                notes.append(f"ok: the checkpoint was timestamped {when} (RFC 3161, tsa-ca.pem)")
            except (TsaError, ValueError) as exc:
                bad(f"the checkpoint's timestamp token does not verify: {exc}")
    proven = _verify_chain_proof(data, body, entries, notes, bad)
    if "chain.json" not in data:
        if not proven:
            notes.append("note: no chain proof: the entries' place in the chain up to the checkpoint is not proven "
                         "offline (the checkpoint predates Merkle roots; export with --chain to include the chain)")
    else:
        chain = json.loads(data["chain.json"])
        prev = chain[0]["prev_hash"] if chain else GENESIS
        for e in chain:
            if e["prev_hash"] != prev or entry_hash(prev, e) != e["hash"]:
                bad(f"chain.json: entry {e['id']} does not link")
                break
            prev = e["hash"]
        else:
            ids = {e["id"]: e["hash"] for e in chain}
            if ids.get(body["head_id"]) != body["head_hash"] or any(ids.get(e["id"]) != e["hash"] for e in entries):
                bad("chain.json does not lead from the call's entries to the checkpoint's head")
            else:
                notes.append(f"ok: the call's entries are in the chain up to the checkpoint ({len(chain)} entries)")
