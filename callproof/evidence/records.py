"""Each call's signed evidence record (docs/evidence.md#the-evidence-record).

Written when a recording is finalised, by the process that finalised it (``callproof run``,
the classic AGI hangup handler, ``callproof fastagi``): the protocol, the call's and the
consent's times, the consent prompt's sha256 and outcome, the recording's size, duration and
sha256, as canonical JSON (sorted keys, no spaces, UTF-8), signed with Ed25519 by the key of
``[evidence] signing_key``. Verification (``recording verify``, exports, evidence packages)
compares the file with the signed sha256, never with the editable ``recordings.sha256``.

The record holds no caller number, name or CPF (it is append-only and outlives the
anonymisation of the call row); the recording's path appears as its sha256 only (a path
holds the caller's digits).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callproof.logs import event
from callproof.storage import Database
from callproof.storage.audit import canonical_json

if TYPE_CHECKING:  # cryptography is imported only where a key is used: the classic AGI script
    from .keys import Signer, TrustedKeys  # may run on a Python without it (a chrooted Asterisk)

log = logging.getLogger("callproof.evidence")

RECORD_TYPE = "callproof.evidence_record"
RECORD_VERSION = 1

_active: Signer | None = None
#: the key of each database this process writes (its configuration's ``storage.target``: the file, or the
#: ``[storage] url``, as the database handle names it):
#: one process may hold several configurations (the test suite does), each with its own key
_by_database: dict[str, Signer | None] = {}


def use_signer(signer: Signer | None, database: str | os.PathLike[str] | None = None) -> None:
    """The key records are signed with (None: written unsigned): for ``database``'s records,
    or, without one, for every database no configuration named."""
    global _active
    if database is None:
        _active = signer
    else:
        _by_database[os.fspath(database)] = signer


def signer_for(database: str | os.PathLike[str]) -> Signer | None:
    return _by_database.get(os.fspath(database), _active)


def configure(config: Any, *, strict: bool = True) -> Signer | None:
    """Load ``[evidence] signing_key`` for this process.  ``strict`` (the long-running
    processes): a bad key file raises KeyFileError, naming it, before any call is taken.
    Not strict (the classic AGI script, where a call must go on): it is logged and the
    records of this process are unsigned."""
    signer = None
    if config.evidence.signing_key is not None:
        try:
            from .keys import KeyFileError, signer_from_config
        except ImportError as exc:  # no cryptography on this Python
            if strict:
                raise
            event(log, "evidence.key_unusable", logging.ERROR, error=f"cannot sign here: {exc}")
        else:
            try:
                signer = signer_from_config(config)
            except KeyFileError as exc:
                if strict:
                    raise
                event(log, "evidence.key_unusable", logging.ERROR, error=str(exc))
    if signer is None and config.evidence.signing_key is None:
        event(log, "evidence.unsigned", logging.WARNING,
              detail="no [evidence] signing_key: evidence records are not signed and prove nothing")
    use_signer(signer, config.storage.target)
    return signer


def path_digest(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def build_record(facts: dict[str, Any], signed_at: str, fingerprint: str | None) -> dict[str, Any]:
    """The record of one finalised recording from its row and its call's facts."""
    rec, call = facts["recording"], facts["call"] or {}
    record = {
        "type": RECORD_TYPE, "version": RECORD_VERSION,
        "protocol": rec["protocol"] or call.get("protocol"),
        "call": {
            "started_at": call.get("started_at"), "language": call.get("language"),
            "served_by": call.get("served_by"),
            "protocol_allocated_at": facts.get("protocol_allocated_at"),
            "protocol_read_count": call.get("protocol_read_count"),
            "protocol_read_finished_at": call.get("protocol_read_finished_at"),
            "handed_off_at": call.get("handed_off_at"),
        },
        "consent": {
            "prompt": call.get("consent_prompt"), "language": call.get("consent_language"),
            "sha256": call.get("consent_sha256"), "started_at": call.get("consent_started_at"),
            "finished_at": call.get("consent_finished_at"), "outcome": call.get("consent_outcome"),
        },
        "recording": {
            "id": rec["id"], "path_sha256": path_digest(rec["path"]), "started_at": rec["started_at"],
            "finalised_at": rec["finalised_at"], "size_bytes": rec["size_bytes"],
            "duration_ms": rec["duration_ms"], "sha256": rec["sha256"],
        },
        "key": fingerprint,
        "signed_at": signed_at,
    }
    if rec.get("encryption") == "encrypted":
        record["encryption"] = encryption_facts(rec)
    return record


def encryption_facts(rec: dict[str, Any]) -> dict[str, Any]:
    """What a record binds of an encrypted recording: the age payload's sha256 (everything after
    the header: a re-wrap to other keys, for a legal hold, leaves it as it is) and the key ids
    the header was made for (the header itself is not bound: re-wraps change it)."""
    return {"format": "age-v1", "payload_sha256": rec["payload_sha256"],
            "key_ids": [k for k in (rec.get("key_ids") or "").split(",") if k]}


def signed_payload_sha256(checked: Checked) -> str | None:
    """The age payload sha256 a signed record binds (None: the record predates the encryption)."""
    enc = (checked.record or {}).get("encryption") or {}
    value = enc.get("payload_sha256") if isinstance(enc, dict) else None
    return value if isinstance(value, str) else None


def encode(record: dict[str, Any]) -> bytes:
    return canonical_json(record).encode("utf-8")


@dataclass(frozen=True)
class Sealed:
    record: str
    record_sha256: str
    signature: str | None
    key_fingerprint: str | None


def seal_facts(facts: dict[str, Any], signed_at: str, signer: Signer | None) -> Sealed:
    fp = signer.fingerprint if signer else None
    data = encode(build_record(facts, signed_at, fp))
    sig = base64.b64encode(signer.sign(data)).decode("ascii") if signer else None
    return Sealed(data.decode("utf-8"), hashlib.sha256(data).hexdigest(), sig, fp)


def sealer_for(database: str | os.PathLike[str]) -> Callable[[dict[str, Any], str], Sealed]:
    """How storage seals what it finalises for ``database`` (a live call's finalisation, the
    journal's replay): with that database's key, looked up when sealing."""
    def sealer(facts: dict[str, Any], signed_at: str) -> Sealed:
        return seal_facts(facts, signed_at, signer_for(database))
    return sealer


async def seal(db: Database, recording_id: int, signed_at: str) -> Sealed | None:
    """Sign and store the evidence record of a just-finalised recording, with its
    ``recording.finalised`` audit entry (None if its row is gone)."""
    sealed = await db.evidence.seal_finalised(recording_id, sealer_for(db.path), signed_at)
    return sealed if isinstance(sealed, Sealed) else None


# -- verification ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Checked:
    """What a stored (or packaged) record proves: ``status`` is ``signed`` (a trusted key's valid
    signature), ``unsigned`` (no record, or one written without a key), ``untrusted_key`` or
    ``bad_signature``; ``record`` the parsed record when there is one."""
    status: str
    record: dict[str, Any] | None
    detail: str = ""

    @property
    def signed(self) -> bool:
        return self.status == "signed"


def check(record: str | None, signature: str | None, fingerprint: str | None, trusted: TrustedKeys,
          *, recording_id: int | None = None) -> Checked:
    if not record:
        return Checked("unsigned", None, "no evidence record")
    try:
        parsed = json.loads(record)
    except ValueError:
        return Checked("bad_signature", None, "the record is not JSON")
    if not isinstance(parsed, dict) or parsed.get("type") != RECORD_TYPE:
        return Checked("bad_signature", None, "not an evidence record")
    if signature is None or fingerprint is None:
        return Checked("unsigned", parsed, "record written without a signing key")
    if fingerprint not in trusted:
        return Checked("untrusted_key", parsed, f"signed by key {fingerprint[:16]}..., not a trusted key")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return Checked("bad_signature", parsed, "signature is not base64")
    if parsed.get("key") != fingerprint or not trusted.verify(fingerprint, raw, record.encode("utf-8")):
        return Checked("bad_signature", parsed, "the signature does not match the record")
    if recording_id is not None and (parsed.get("recording") or {}).get("id") != recording_id:
        return Checked("bad_signature", parsed, "the record is another recording's")
    return Checked("signed", parsed)


def signed_sha256(checked: Checked) -> str | None:
    rec = (checked.record or {}).get("recording") or {}
    value = rec.get("sha256")
    return value if isinstance(value, str) else None
