"""``callproof recording encrypt``: the plaintext recordings encrypted where they lie.

Recordings finalised before ``[encryption]`` was enabled, and those whose encryption is
``pending`` (no period key then, a full disk, a call finalised from the journal), are
encrypted one by one, oldest first.  For each:

1. the sha256 its file must have: the signed evidence record's (a record that does not
   verify stops it: ``forged``), or, for an unsigned recording, the ``recording.finalised``
   audit entry's (in the hash chain); neither: ``unverifiable``, left as it is;
2. the file is encrypted, in the pass that hashes it, to its period key (the hold key for a
   recording kept for ever) into ``<name>.age`` (O_EXCL, 0640, fsynced with its directory);
   a plaintext that does not hash to (1) is ``mismatch``: audited, the age file removed,
   the plaintext left for an investigation;
3. the row and its ``recording.encrypted`` audit entry are written in one transaction;
4. the plaintext is removed (and the directory fsynced).

Killed at any point (SIGKILL-tested), a run leaves one of: the plaintext alone (redone next
run), the plaintext and an age file no row names (removed and redone, once it is older
than :data:`STRAY_AGE_SECONDS`: a younger one may be a call being finalised right now), or
the row saying encrypted with the plaintext still there (removed once the age file's
payload is checked against the row).  So a run after a crash finishes the work, and no
recording is ever without a readable file.  One run at a time (a lock file beside the
database).  Needs only the public keys; the private keys are never read here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callproof.single_run import AlreadyRunning, single_run_lock
from callproof.storage import SyncDatabase
from callproof.storage.timefmt import parse_db_time, to_db_time

from .atrest import AGE_SUFFIX, encrypt_beside, hold_recipients, remove_plaintext
from .errors import AgeError
from .header import read_header
from .keyring import KeyringError, PublicKeyring, RecipientSet

#: An age file no row names, younger than this, may belong to a finalisation under way.
STRAY_AGE_SECONDS = 300
BATCH = 200
OUTCOMES = ("encrypted", "finished", "mismatch", "forged", "unverifiable", "no_key", "missing", "busy", "error",
            "elsewhere")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class MigrationLocked(AlreadyRunning):
    """Another ``recording encrypt`` holds the lock."""


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    @property
    def problems(self) -> int:
        return sum(self.counts[k] for k in ("mismatch", "forged", "error"))


def migration_lock(path: Path) -> AbstractContextManager[None]:
    return single_run_lock(path, "'recording encrypt'", MigrationLocked)


def lock_path(config: Any) -> Path:
    return Path(f"{config.storage.database}.encrypt.lock")


def count_todo(db: SyncDatabase) -> int:
    n, last = 0, 0
    while rows := db.recordings.plaintext_batch(after_id=last, limit=1000):
        n += len(rows)
        last = rows[-1]["id"]
    return n


def expected_plaintext(db: SyncDatabase, trusted: Any, row: dict[str, Any]) -> tuple[str | None, str]:
    """(the sha256 the plaintext must have, what says so) or (None, outcome: forged / unverifiable)."""
    from callproof.evidence.records import check, signed_sha256

    ev = db.evidence.for_recording(row["id"])
    checked = check(ev["record"] if ev else None, ev["signature"] if ev else None,
                    ev["key_fingerprint"] if ev else None, trusted, recording_id=row["id"])
    if checked.signed:
        return signed_sha256(checked), "signed evidence record"
    if checked.status in ("untrusted_key", "bad_signature"):
        return None, "forged"
    for entry in reversed(db.audit.for_protocol(row["protocol"]) if row["protocol"] else []):
        if entry["action"] == "recording.finalised" and entry.get("subject") in (row["path"], f"recording:{row['id']}"):
            details = entry["details"]
            details = json.loads(details) if isinstance(details, str) else details or {}
            if isinstance(details.get("sha256"), str):
                return details["sha256"], f"recording.finalised audit entry {entry['id']}"
    return None, "unverifiable"


def _target(config: Any, keyring: PublicKeyring, row: dict[str, Any]) -> RecipientSet:
    if not row.get("retention_until"):  # kept for ever: no period ends, so the hold key
        return hold_recipients(config)
    return keyring.recipients_for(row["retention_class"] or "", parse_db_time(row["retention_until"]))


class OutsideRoot(Exception):
    """A row's path is not under ``[recording] root`` (an edited database): never touched."""


def _plaintext_at(config: Any, row: dict[str, Any]) -> tuple[Path, str, str | None]:
    """(the folder it must be under, the plaintext's path, its store path once encrypted) of a
    recording: under this node's root, or in the shared store for one moved there (migration
    0018); :class:`callproof.store.location.Elsewhere` when it is another node's local file."""
    from callproof.store.location import locate

    root, path = locate(row, config, encrypted=False)
    store_path = row.get("store_path")
    if not store_path:
        return root, path, None
    plain_rel = store_path[:-len(AGE_SUFFIX)] if store_path.endswith(AGE_SUFFIX) else store_path
    return root, os.path.join(os.fspath(root), plain_rel), plain_rel + AGE_SUFFIX


class _Dir:
    """The recording's directory, opened without following a link, and its name in it; only
    under the recordings root."""

    def __init__(self, path: str, root: Path) -> None:
        self.path = path
        folder, self.name = os.path.split(path)
        real_root = os.path.realpath(root)
        if not self.name or os.path.commonpath([real_root, os.path.realpath(folder)]) != real_root:
            raise OutsideRoot("its path is not under [recording] root; not touched")
        self.fd = os.open(folder, _DIR_FLAGS)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        os.close(self.fd)


def payload_sha256_of(dir_fd: int, name: str) -> str:
    """The sha256 of an age file's payload (everything after its header): no key needed."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with open(fd, "rb", buffering=1 << 20) as fh:
        read_header(fh)
        h = hashlib.sha256()
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def encrypt_one(config: Any, db: SyncDatabase, keyring: PublicKeyring, trusted: Any, row: dict[str, Any], *,
                actor: str, now: Callable[[], datetime]) -> tuple[str, str]:
    """Encrypt one plaintext recording (see the module doc); (outcome, detail)."""
    expected, source = expected_plaintext(db, trusted, row)
    if expected is None:
        return source, "no signed record or audit entry holds its sha256; left as it is"
    try:
        target = _target(config, keyring, row)
    except KeyringError as exc:
        return "no_key", str(exc)
    root, plain, store_path = _plaintext_at(config, row)
    try:
        d = _Dir(plain, root)
    except FileNotFoundError:
        return "missing", "its folder is gone"
    except OutsideRoot as exc:
        return "error", str(exc)
    try:
        age_name = d.name + AGE_SUFFIX
        if d.exists(age_name):  # a crash's leftover, or a finalisation under way right now
            st = os.stat(age_name, dir_fd=d.fd, follow_symlinks=False)
            if time.time() - st.st_mtime < STRAY_AGE_SECONDS:
                return "busy", "an age file was written here moments ago; left for the next run"
            os.unlink(age_name, dir_fd=d.fd)
        try:
            fd = os.open(d.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d.fd)
        except FileNotFoundError:
            return "missing", "the plaintext file is not there"
        with open(fd, "rb", buffering=0) as fh:
            digests = encrypt_beside(fh, d.fd, d.name, target.recipients)
        at = to_db_time(now())
        if digests.plaintext_sha256 != expected:
            os.unlink(age_name, dir_fd=d.fd)
            db.audit.append("recording.integrity_failed", actor, at, protocol=row["protocol"],
                            subject=f"recording:{row['id']}",
                            details={"why": "encryption: the plaintext does not match", "expected_sha256": expected,
                                     "actual_sha256": digests.plaintext_sha256, "source": source})
            return "mismatch", f"the file hashes to {digests.plaintext_sha256}, its {source} says {expected}"
        db.recordings.record_encrypted(row["id"], age_path=row["path"] + AGE_SUFFIX,
                                       ciphertext_sha256=digests.ciphertext_sha256,
                                       ciphertext_size=digests.ciphertext_size, payload_sha256=digests.payload_sha256,
                                       key_ids=target.key_ids, actor=actor, at=at,
                                       details={"sha256": expected, "checked_against": source, "via": "migration"},
                                       store_path=store_path)
        remove_plaintext(d.fd, d.name)
        return "encrypted", ",".join(target.key_ids)
    finally:
        d.close()


def finish_one(config: Any, db: SyncDatabase, row: dict[str, Any]) -> tuple[str, str] | None:
    """An encrypted row whose plaintext is still there (a crash after the row was written):
    the plaintext is removed once the age file's payload matches the row; None: nothing to do."""
    root, plain, _ = _plaintext_at(config, row)
    try:
        d = _Dir(plain, root)
    except FileNotFoundError:
        return None
    except OutsideRoot as exc:
        return "error", str(exc)
    try:
        if not d.exists(d.name):
            return None
        try:
            payload = payload_sha256_of(d.fd, d.name + AGE_SUFFIX)
        except (OSError, AgeError) as exc:  # an unreadable age file: keep the plaintext
            return "error", f"the age file cannot be read ({exc}); the plaintext is kept"
        if payload != row["payload_sha256"]:
            return "error", "the age file's payload is not the one its row records; the plaintext is kept"
        remove_plaintext(d.fd, d.name)
        return "finished", "plaintext left by an interrupted run removed"
    finally:
        d.close()


def settle_recordings(config: Any, db: SyncDatabase, ids: Iterable[int], *, actor: str,
                      now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> dict[int, tuple[str, str]]:
    """The recordings a journal replay finalised with encryption facts, settled by the steps a
    run takes (:func:`finish_one`, :func:`encrypt_one`): an encrypted one loses its plaintext
    once its age file's payload matches the row; a pending one is encrypted now if a key
    fits.  {id: (outcome, detail)}; nothing to do is left out."""
    db = SyncDatabase.wrap(db)
    out: dict[int, tuple[str, str]] = {}
    keyring, trusted = None, None
    for rid in sorted(ids):
        row = db.recordings.get(rid)
        if row is None or row["state"] != "finalised":
            continue
        try:
            if row.get("encryption") == "encrypted":
                done = finish_one(config, db, row)
            elif row.get("encryption") == "pending":
                if keyring is None:
                    from callproof.evidence.keys import trusted_from_config
                    keyring = PublicKeyring.from_dir(config.encryption.public_keys_dir)
                    trusted = trusted_from_config(config)
                done = encrypt_one(config, db, keyring, trusted, row, actor=actor, now=now)
            else:
                done = None
        except (OSError, KeyringError) as exc:
            done = "error", f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
        if done is not None:
            out[rid] = done
    return out


def run_migration(config: Any, db: SyncDatabase, *, actor: str, report: Callable[[dict], None] | None = None,
                  progress: Callable[[int], object] | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Summary:
    """Encrypt every plaintext recording (see the module doc); one result per recording to ``report``."""
    from callproof.evidence.keys import trusted_from_config

    db = SyncDatabase.wrap(db)
    keyring = PublicKeyring.from_dir(config.encryption.public_keys_dir)
    trusted = trusted_from_config(config)
    summary = Summary()

    def note(row: dict[str, Any], outcome: str, detail: str) -> None:
        summary.add(outcome)
        if report is not None:
            report({"id": row["id"], "protocol": row["protocol"], "result": outcome, "detail": detail})

    from callproof.store.location import is_here

    last = 0
    while rows := db.recordings.encrypted_batch(after_id=last, limit=BATCH):
        last = rows[-1]["id"]
        for row in rows:
            if not is_here(row, config):  # another node's local file: its own run finishes it
                continue
            done = finish_one(config, db, row)
            if done is not None:
                note(row, *done)
    last = 0
    while rows := db.recordings.plaintext_batch(after_id=last, limit=BATCH):
        last = rows[-1]["id"]
        for row in rows:
            if not is_here(row, config):
                note(row, "elsewhere", f"still on node {row.get('node')}: encrypted by the run there")
                if progress is not None:
                    progress(1)
                continue
            try:
                outcome, detail = encrypt_one(config, db, keyring, trusted, row, actor=actor, now=now)
            except OSError as exc:
                outcome, detail = "error", f"{type(exc).__name__}: {exc.strerror or exc}"
            note(row, outcome, detail)
            if progress is not None:
                progress(1)
    return summary
