"""Writing the keys of :mod:`.keyring`: creating period and hold keys, exporting the public
keys for the PBX host, destroying a private key.

Every write is crash-safe: a key file is created with ``O_EXCL | O_NOFOLLOW`` (never over an
existing file or through a link), mode 0600 whatever the umask, fsynced, then its directory
fsynced; a public file is written to a temporary name and renamed.  A private key is never
overwritten: a key id names one key for ever.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .keyring import (
    DESTROYED_SUFFIX,
    HOLD_KEY_ID,
    PRIVATE_SUFFIX,
    PUBLIC_SUFFIX,
    KeyringError,
    check_private_dir,
    hold_key_id,
    is_hold_key,
    newest,
    next_generation,
    parse_period,
    period_base,
    read_destroyed,
    read_private_key,
    read_public_dir,
    valid_key_id,
)
from .keys import Identity, Recipient, format_identity_file

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
PUBLIC_DIR_MODE = 0o755


@dataclass(frozen=True)
class KeyInfo:
    """One key as ``keys list`` shows it: never key material, only its fingerprint."""
    key_id: str
    kind: str  # 'period' | 'hold'
    fingerprint: str
    state: str  # 'active' | 'destroyed' | 'LOST' (private dir: public half only) | 'public-only' (public dir)
    destroyed_at: str | None = None


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(directory: Path) -> None:
    """Create the private keys directory 0700 (parents 0755), or check the existing one."""
    if not directory.exists():
        directory.parent.mkdir(mode=PUBLIC_DIR_MODE, parents=True, exist_ok=True)
        directory.mkdir(mode=PRIVATE_DIR_MODE)
        os.chmod(directory, PRIVATE_DIR_MODE)  # whatever the umask
    check_private_dir(directory)


def ensure_public_dir(directory: Path) -> None:
    directory.mkdir(mode=PUBLIC_DIR_MODE, parents=True, exist_ok=True)


def _write_new(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise KeyringError(f"{path}: exists already; a key file is never overwritten") from None
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_replacing(path: Path, text: str, mode: int = PUBLIC_MODE) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (fsynced both)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    _write_new(tmp, text, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def public_text(key_id: str, recipient: Recipient) -> str:
    return f"# callproof key {key_id}\n{recipient}\n"


def create_key(directory: Path, key_id: str, *, now: datetime | None = None) -> Identity:
    """A new private key ``<key id>.key`` (0600) and its ``<key id>.pub`` in the private dir."""
    if not valid_key_id(key_id):
        raise KeyringError(f"{key_id!r} is not a key id (<retention class>-<YYYY-MM> or hold-<n>)")
    if (directory / f"{key_id}{DESTROYED_SUFFIX}").exists():
        raise KeyringError(f"{directory / (key_id + DESTROYED_SUFFIX)}: key {key_id} was destroyed; "
                           "a key id is never reused")
    identity = Identity.generate()
    _write_new(directory / f"{key_id}{PRIVATE_SUFFIX}", format_identity_file(identity, now), PRIVATE_MODE)
    write_replacing(directory / f"{key_id}{PUBLIC_SUFFIX}", public_text(key_id, identity.recipient))
    fsync_dir(directory)
    return identity


def add_months(month: str, n: int) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    index = year * 12 + (mon - 1) + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_end(month: str) -> datetime:
    """The first instant after ``YYYY-MM`` (UTC)."""
    nxt = add_months(month, 1)
    return datetime(int(nxt[:4]), int(nxt[5:7]), 1, tzinfo=UTC)


def period_over(month: str, now: datetime, margin_days: int) -> bool:
    """The month is over by at least the safety margin: its private key may be destroyed."""
    return now >= month_end(month) + timedelta(days=margin_days)


def wanted_period_ids(classes: Mapping[str, int], now: datetime, months_ahead: int) -> list[str]:
    """Per retention class, the expiry months of recordings made from a month ago to
    ``months_ahead`` months from now: a call today expires ``days`` later, a call the journal
    replays late somewhat earlier."""
    ids: list[str] = []
    for cls, days in classes.items():
        first = (now + timedelta(days=days)).astimezone(UTC).strftime("%Y-%m")
        first = add_months(first, -1)
        ids.extend(f"{cls}-{add_months(first, i)}" for i in range(months_ahead + 2))
    return ids


def _ids(directory: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in directory.iterdir()
                  if p.name.endswith(suffix) and valid_key_id(p.name[: -len(suffix)]))


def private_key_ids(directory: Path) -> list[str]:
    return _ids(directory, PRIVATE_SUFFIX)


def known_key_ids(directory: Path) -> set[str]:
    """Every id the private dir has ever held: its keys, the public halves kept beside them
    (a key whose private file was lost keeps its id) and the destroyed keys' records.  An id
    is never given to a second key."""
    return set(_ids(directory, PRIVATE_SUFFIX)) | set(_ids(directory, PUBLIC_SUFFIX)) | set(read_destroyed(directory))


def top_up(directory: Path, classes: Mapping[str, int], now: datetime, months_ahead: int,
           margin_days: int) -> list[tuple[str, Identity]]:
    """Create the period keys (and the first hold key) that do not exist yet: ``keys init``,
    ``keys rotate`` and the retention run.  Never recreates a destroyed key, nor a key for a
    period already over."""
    ensure_private_dir(directory)
    have = known_key_ids(directory)
    created = []
    if not any(is_hold_key(k) for k in private_key_ids(directory)):
        holds = [int(m["number"]) for k in have if (m := HOLD_KEY_ID.fullmatch(k))]
        key_id = hold_key_id(max(holds, default=0) + 1)
        created.append((key_id, create_key(directory, key_id, now=now)))
    for key_id in wanted_period_ids(classes, now, months_ahead):
        period = parse_period(key_id)
        if newest(have, key_id) is not None or period is None or period_over(period[1], now, margin_days):
            continue
        created.append((key_id, create_key(directory, key_id, now=now)))
        have.add(key_id)
    return created


def replace_key(directory: Path, key_id: str, now: datetime) -> tuple[str, Identity]:
    """A new key for the period (or hold role) of ``key_id``, lost or compromised: the next
    generation (``consumer_service-2027-03.2``, ``hold-2``), which the PBX takes for new
    recordings as soon as it is exported.  The old key stays until destroyed as usual."""
    ensure_private_dir(directory)
    known = known_key_ids(directory)
    if key_id not in known:
        raise KeyringError(f"{directory}: no key {key_id} ('callproof keys list' shows the keys)")
    current = (hold_key_id(max(int(m["number"]) for k in known if (m := HOLD_KEY_ID.fullmatch(k))))
               if is_hold_key(key_id) else newest(known, period_base(key_id)))
    if current != key_id:
        raise KeyringError(f"{key_id} was replaced already, by {current}; replace {current} if it is the one affected")
    new_id = next_generation(key_id)
    return new_id, create_key(directory, new_id, now=now)


def new_hold_key(directory: Path, now: datetime) -> tuple[str, Identity]:
    """A new hold key (after a compromise of the current one): ``hold-<n+1>``."""
    ensure_private_dir(directory)
    known = known_key_ids(directory)
    numbers = [int(m["number"]) for k in known if (m := HOLD_KEY_ID.fullmatch(k))]
    key_id = hold_key_id(max(numbers, default=0) + 1)
    return key_id, create_key(directory, key_id, now=now)


def export_public(private_dir: Path, public_dir: Path) -> tuple[list[str], list[str]]:
    """Write every held key's ``.pub`` to ``public_dir`` and remove there the ``.pub`` of
    every key whose private half is gone, destroyed or lost (the PBX must never encrypt to
    it).  Returns (written, removed) key ids."""
    check_private_dir(private_dir)
    ensure_public_dir(public_dir)
    written = []
    for key_id in private_key_ids(private_dir):
        identity = read_private_key(private_dir / f"{key_id}{PRIVATE_SUFFIX}")
        target = public_dir / f"{key_id}{PUBLIC_SUFFIX}"
        text = public_text(key_id, identity.recipient)
        try:
            same = target.read_text("ascii") == text
        except (FileNotFoundError, UnicodeDecodeError):
            same = False
        if not same:
            write_replacing(target, text)
            written.append(key_id)
    removed = []
    held = set(private_key_ids(private_dir))
    for key_id in _ids(public_dir, PUBLIC_SUFFIX):
        if key_id not in held:
            (public_dir / f"{key_id}{PUBLIC_SUFFIX}").unlink()
            removed.append(key_id)
    if removed:
        fsync_dir(public_dir)
    return written, removed


def _overwrite(path: Path) -> None:
    """Overwrite a file's bytes in place with random bytes and fsync (before the unlink: on a
    file system that writes in place, the key's blocks do not keep it; see docs/keys.md for
    copy-on-write file systems and SSDs)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        os.pwrite(fd, os.urandom(max(size, 1)), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def destroy_private_key(directory: Path, key_id: str, *, at: datetime, reason: str) -> str:
    """Destroy ``<key id>.key``: a tombstone first (what, when, fingerprint), then overwrite,
    fsync, unlink, fsync the directory.  Returns the key's fingerprint.  A crash after the
    tombstone and before the unlink leaves a tombstoned key file, which the next call finishes."""
    path = directory / f"{key_id}{PRIVATE_SUFFIX}"
    identity = read_private_key(path)
    fingerprint = identity.recipient.fingerprint
    tombstone = directory / f"{key_id}{DESTROYED_SUFFIX}"
    if not tombstone.exists():
        record = {"key_id": key_id, "fingerprint": fingerprint, "recipient": str(identity.recipient),
                  "destroyed_at": at.astimezone(UTC).isoformat(), "reason": reason}
        write_replacing(tombstone, json.dumps(record, sort_keys=True) + "\n", PRIVATE_MODE)
    _overwrite(path)
    path.unlink()
    fsync_dir(directory)
    return fingerprint


def list_keys(private_dir: Path | None, public_dir: Path | None) -> list[KeyInfo]:
    """Every key known to either directory (fingerprints only)."""
    infos: dict[str, KeyInfo] = {}
    if public_dir is not None and public_dir.exists():
        for key_id, rec in read_public_dir(public_dir).items():
            infos[key_id] = KeyInfo(key_id, "hold" if is_hold_key(key_id) else "period", rec.fingerprint,
                                    "public-only")
    if private_dir is not None and private_dir.exists():
        check_private_dir(private_dir)
        for key_id in private_key_ids(private_dir):
            ident = read_private_key(private_dir / f"{key_id}{PRIVATE_SUFFIX}")
            infos[key_id] = KeyInfo(key_id, "hold" if is_hold_key(key_id) else "period",
                                    ident.recipient.fingerprint, "active")
        for key_id, rec in read_public_dir(private_dir).items():
            if key_id not in infos or infos[key_id].state == "public-only":
                infos[key_id] = KeyInfo(key_id, "hold" if is_hold_key(key_id) else "period", rec.fingerprint, "LOST")
        for key_id, record in read_destroyed(private_dir).items():
            if key_id in infos and infos[key_id].state == "active":
                continue  # a destruction interrupted before the unlink: still active until finished
            infos[key_id] = KeyInfo(key_id, "hold" if is_hold_key(key_id) else "period",
                                    str(record.get("fingerprint", "")), "destroyed",
                                    str(record.get("destroyed_at", "")))
    return [infos[k] for k in sorted(infos)]


def fingerprints(items: Iterable[tuple[str, Identity]]) -> dict[str, str]:
    return {key_id: ident.recipient.fingerprint for key_id, ident in items}
