"""Crypto-shredding: destroying the private key of a period that is over (docs/keys.md).

For each period key (retention class x expiry month) whose month ended at least
``[encryption] destroy_margin_days`` ago:

1. every recording still wrapped to it that is under a legal hold or an open customer
   request is re-wrapped to the hold key (:func:`rewrap_file`: a new header, same payload,
   written to a temporary file, fsynced, renamed over the old one; the row and an audit
   entry in one transaction);
2. if a recording wrapped to it is still there and not held (retention has not deleted it
   yet), the key is kept and the refusal names the recordings;
3. otherwise the private key is destroyed (:func:`.keystore.destroy_private_key`) and an
   audit entry names its id and fingerprint.

A hold key older than the current one (``keys rotate --hold`` made a new one) is retired on
demand (``keys retire-hold``, :func:`retire_hold_key`): every recording still wrapped to it
is re-wrapped to the current hold key, then it is destroyed, so copies made while a
recording was held die with it.  Exports and history documents are stored encrypted to the
hold key too (callproof/rights/): while one of them still opens with the old hold key, the
retirement is refused, naming the files.

From then on every copy of the period's recordings, wherever it is (a backup, a stray
copy), holds a file key wrapped only to a private key that no longer exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from callproof.store.location import Elsewhere, locate

from .errors import NoIdentityError
from .header import read_header
from .keyring import PrivateKeyring, is_hold_key, parse_period
from .keys import Identity, Recipient
from .keystore import destroy_private_key, fsync_dir, period_over
from .stream import rewrap

if TYPE_CHECKING:
    from callproof.config import Config
    from callproof.storage.sync import SyncDatabase

log = logging.getLogger("callproof.keys")
HASH_BLOCK = 1 << 20


class ShredError(Exception):
    """A recording that could not be re-wrapped; the message names it and why."""


@dataclass
class PeriodOutcome:
    key_id: str
    result: str  # 'destroyed' | 'refused' | 'would-destroy' | 'failed'
    fingerprint: str = ""
    rewrapped: list[int] = field(default_factory=list)  # recording ids moved to the hold key
    blocking: list[dict] = field(default_factory=list)  # {id, protocol, retention_until}
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.result == "destroyed":
            return (f"{self.key_id}: destroyed (fingerprint {self.fingerprint}); "
                    f"{len(self.rewrapped)} held recording(s) re-wrapped to the hold key first")
        if self.result == "would-destroy":
            return f"{self.key_id}: would be destroyed (dry run)"
        if self.result == "refused":
            sample = ", ".join(f"recording {b['id']} (protocol {b['protocol']}, kept until {b['retention_until']})"
                               for b in self.blocking[:5])
            more = f" and {len(self.blocking) - 5} more" if len(self.blocking) > 5 else ""
            return (f"{self.key_id}: NOT destroyed: {len(self.blocking)} recording(s) not held still depend on "
                    f"it: {sample}{more}; run 'callproof retention sweep' first")
        return f"{self.key_id}: NOT destroyed: " + "; ".join(self.errors)


def _digests(path: Path, header_length: int) -> tuple[str, str, int]:
    """(sha256 of the file, sha256 of its payload, size)."""
    whole, payload = hashlib.sha256(), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        head = f.read(header_length)
        whole.update(head)
        size = len(head)
        while block := f.read(HASH_BLOCK):
            whole.update(block)
            payload.update(block)
            size += len(block)
    return whole.hexdigest(), payload.hexdigest(), size


def _checked_path(raw: str, root: Path) -> Path:
    path = Path(raw)
    real_root = os.path.realpath(root)
    if not path.is_absolute() or os.path.normpath(raw) != raw or not raw.startswith(real_root + "/"):
        raise ShredError(f"{raw}: not a normalised path under the recordings root {real_root}")
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ShredError(f"{raw}: not a regular file (a symbolic link is refused)")
    return path


def rewrap_file(path: Path, identities: list[Identity], recipients: list[Recipient], *,
                payload_sha256: str | None, already: list[Identity]) -> tuple[str, int]:
    """Re-wrap the age file at ``path`` to ``recipients``, crash-safe; returns its new
    (ciphertext sha256, size).  ``already``: identities that mean the re-wrap was done before
    (a crash after the rename, before the row was written): then the file is only measured.
    The payload's sha256 is checked against ``payload_sha256`` before the file is replaced."""
    with open(path, "rb") as src:
        header = read_header(src)
        try:
            header.file_key(identities)
        except NoIdentityError:
            header.file_key(already)  # NoIdentityError again: neither; the caller reports it
            sha, payload, size = _digests(path, header.length)
            if payload_sha256 and payload != payload_sha256.lower():
                raise ShredError(f"{path}: its payload sha256 {payload} is not the recorded {payload_sha256}") from None
            return sha, size
        src.seek(0)
        st = os.fstat(src.fileno())
        tmp = path.with_name(f".{path.name}.rewrap")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a crash: the original is intact
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     stat.S_IMODE(st.st_mode))
        try:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
            with os.fdopen(fd, "wb", closefd=False) as dst:
                rewrap(src, dst, identities, recipients)
                dst.flush()
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        os.close(fd)
    with open(tmp, "rb") as f:
        new_header = read_header(f)
    sha, payload, size = _digests(tmp, new_header.length)
    if payload_sha256 and payload != payload_sha256.lower():
        tmp.unlink()
        raise ShredError(f"{path}: the re-wrapped payload sha256 {payload} is not the recorded {payload_sha256}")
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return sha, size


def _key_ids(row: dict) -> tuple[str, ...]:
    return tuple(k for k in (row.get("key_ids") or "").split(",") if k)


def shred_period(config: Config, db: SyncDatabase, keyring: PrivateKeyring, key_id: str, *,
                 now: datetime, actor: str, dry_run: bool = False, move_all: bool = False) -> PeriodOutcome:
    """Re-wrap what must outlive ``key_id`` to the current hold key, then destroy it.  ``move_all``
    (a retired hold key): every recording still wrapped to it is moved, none blocks."""
    outcome = PeriodOutcome(key_id, "refused")
    period_identity = keyring.identity(key_id)
    hold = keyring.hold_recipients()
    hold_identity = keyring.identity(hold.key_ids[0])
    grace_cutoff = now - timedelta(days=config.retention.request_grace_days)
    for row in db.recordings.with_key(key_id):
        if not move_all and not db.keys.held(row["id"], grace_cutoff=grace_cutoff):
            outcome.blocking.append({"id": row["id"], "protocol": row["protocol"],
                                     "retention_until": row.get("retention_until")})
            continue
        if dry_run:
            outcome.rewrapped.append(row["id"])
            continue
        try:
            root, stored = locate(row, config)  # this node's root, or the shared store once moved
            path = _checked_path(stored, root)
            sha, size = rewrap_file(path, [period_identity], list(hold.recipients),
                                    payload_sha256=row.get("payload_sha256"), already=[hold_identity])
        except (OSError, ShredError, NoIdentityError, ValueError, Elsewhere) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            outcome.errors.append(f"recording {row['id']} could not be re-wrapped to the hold key: {reason}")
            continue
        new_ids = tuple(dict.fromkeys([*(k for k in _key_ids(row) if k != key_id), *hold.key_ids]))
        db.keys.record_rewrap(row["id"], from_key=key_id, key_ids=new_ids, ciphertext_sha256=sha,
                              ciphertext_size=size, actor=actor, at=now,
                              fingerprints={hold.key_ids[0]: hold_identity.recipient.fingerprint})
        outcome.rewrapped.append(row["id"])
    fingerprint = period_identity.recipient.fingerprint
    outcome.fingerprint = fingerprint
    if outcome.errors:
        outcome.result = "failed"
    elif outcome.blocking:
        outcome.result = "refused"
    elif dry_run:
        outcome.result = "would-destroy"
    else:
        destroy_private_key(keyring.directory, key_id, at=now,
                            reason="hold key retired" if move_all else "period over")
        outcome.result = "destroyed"
    if not dry_run:
        details = {"key_id": key_id, "fingerprint": fingerprint, "result": outcome.result,
                   "rewrapped": len(outcome.rewrapped)}
        if outcome.blocking:
            details["blocking_recordings"] = [b["id"] for b in outcome.blocking[:50]]
            details["blocking_count"] = len(outcome.blocking)
        if outcome.errors:
            details["errors"] = outcome.errors[:10]
        action = "keys.destroyed" if outcome.result == "destroyed" else "keys.destroy_refused"
        db.keys.audit(action, actor, now, key_id=key_id, details=details)
    return outcome


def due_period_keys(keyring: PrivateKeyring, now: datetime, margin_days: int) -> list[str]:
    """Period keys whose month is over by the margin (hold keys are retired only on demand:
    :func:`retire_hold_key`)."""
    due = []
    for key_id in keyring.key_ids():
        period = parse_period(key_id)
        if period is not None and period_over(period[1], now, margin_days):
            due.append(key_id)
    return due


def destroy_expired(config: Config, db: SyncDatabase, *, now: datetime, actor: str,
                    dry_run: bool = False, keyring: PrivateKeyring | None = None) -> list[PeriodOutcome]:
    """Shred every period key that is due (see the module's docstring); KeyringError if the
    private keyring cannot be read."""
    keyring = keyring or PrivateKeyring.from_dir(config.encryption.private_keys_dir)
    outcomes = []
    for key_id in due_period_keys(keyring, now, config.encryption.destroy_margin_days):
        outcome = shred_period(config, db, keyring, key_id, now=now, actor=actor, dry_run=dry_run)
        outcomes.append(outcome)
        from callproof.logs import event
        event(log, "keys.shred", logging.INFO if outcome.result in ("destroyed", "would-destroy")
              else logging.WARNING, key_id=key_id, result=outcome.result, rewrapped=len(outcome.rewrapped),
              blocking=len(outcome.blocking), errors=len(outcome.errors))
    return outcomes


def files_wrapped_to(directories: list[Path], identity: Identity) -> list[Path]:
    """The ``*.age`` files under ``directories`` whose header opens with ``identity`` (the
    header only is read: one X25519 exchange per stanza)."""
    found = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.age")):
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with path.open("rb") as f:
                    read_header(f).file_key([identity])
            except (OSError, ValueError):  # AgeError is a ValueError: not wrapped to it, or not age
                continue
            found.append(path)
    return found


def retire_hold_key(config: Config, db: SyncDatabase, key_id: str, *, now: datetime, actor: str,
                    dry_run: bool = False) -> PeriodOutcome:
    """Move every recording off an old hold key to the current one, then destroy it.  Refused
    (KeyringError) for the current hold key, or while an export or history document under
    ``[rights] export_dir`` / ``history_dir`` still opens with it."""
    from .keyring import KeyringError

    keyring = PrivateKeyring.from_dir(config.encryption.private_keys_dir)
    if not is_hold_key(key_id):
        raise KeyringError(f"{key_id} is not a hold key (hold-<n>); period keys go with 'keys destroy-expired'")
    if key_id == keyring.hold_key_id:
        raise KeyringError(f"{key_id} is the current hold key: make a new one first ('callproof keys rotate --hold')")
    dependants = files_wrapped_to([config.rights.export_dir, config.rights.history_dir], keyring.identity(key_id))
    if dependants:
        names = ", ".join(str(p) for p in dependants[:5])
        more = f" and {len(dependants) - 5} more" if len(dependants) > 5 else ""
        raise KeyringError(f"{key_id}: {len(dependants)} export(s) or history document(s) are still encrypted to it "
                           f"({names}{more}); retire it once retention has deleted them")
    return shred_period(config, db, keyring, key_id, now=now, actor=actor, dry_run=dry_run, move_all=True)
