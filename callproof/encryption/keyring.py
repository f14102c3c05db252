"""The age keys recordings are encrypted to: per-period keys and the hold key (docs/keys.md).

A recording is encrypted to the **period key** of its retention class and expiry month
(``consumer_service-2027-03``: the recording's ``expires_at`` in UTC).  When that month is
over, the period key's private half is destroyed (:mod:`.shredding`), and every copy of
every recording encrypted to it (backups, stray copies) becomes unreadable for good.  A
recording that must outlive its period (a legal hold, an open customer request) is first
re-wrapped to the **hold key** (``hold-1``; a new one after a compromise: ``hold-2``).

Two directories, one file per key, named by its key id:

* ``[encryption] public_keys_dir``: ``<key id>.pub``, the ``age1…`` recipient.  All the
  PBX side (``callproof run``, AGI, FastAGI) reads: :class:`PublicKeyring`.  A public key
  file must not be writable by group or others (whoever could replace it would receive
  the next recordings).
* ``[encryption] private_keys_dir`` (mode 0700): ``<key id>.key``, the
  ``AGE-SECRET-KEY-1…`` identity in ``age-keygen``'s format (mode 0600), readable by
  Debian's ``age -d -i``; ``<key id>.pub`` beside it; ``<key id>.destroyed`` once the
  private key has been destroyed (what, when, its fingerprint: no key material).  The web,
  export, evidence package, ``verify --plaintext`` and the migration read it:
  :class:`PrivateKeyring`.  With ``private_keys_credential`` set and
  ``$CREDENTIALS_DIRECTORY`` in the environment (systemd ``LoadCredential=``), a
  read-only process takes the ``.key`` files from there instead.

Nothing here writes keys; :mod:`.keystore` does.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AgeError
from .keys import Identity, Recipient, parse_identity_file, parse_recipients

if TYPE_CHECKING:
    from callproof.config import Config

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
DESTROYED_SUFFIX = ".destroyed"
HOLD_PREFIX = "hold-"
#: ``<retention class>-<YYYY-MM>[.<n>]``; retention class names are letters, digits, ``_ - + .``;
#: ``.<n>`` (n >= 2): the replacement of a lost or compromised period key (``keys rotate --replace``)
PERIOD_KEY_ID = re.compile(r"(?P<retention_class>[A-Za-z0-9_+.-]+)-(?P<month>[0-9]{4}-(?:0[1-9]|1[0-2]))"
                           r"(?:\.(?P<generation>[2-9]|[1-9][0-9]{1,3}))?")
HOLD_KEY_ID = re.compile(r"hold-(?P<number>[1-9][0-9]{0,5})")
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class KeyringError(Exception):
    """A key or key directory that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class RecipientSet:
    """What one recording is encrypted to, and the key ids stored on its row."""
    recipients: tuple[Recipient, ...]
    key_ids: tuple[str, ...]


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` of an aware datetime, in UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expiry must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m")


def period_key_id(retention_class: str, expires_at: datetime) -> str:
    """The period key of a recording of ``retention_class`` expiring at ``expires_at``."""
    key_id = f"{retention_class}-{month_of(expires_at)}"
    if not PERIOD_KEY_ID.fullmatch(key_id):
        raise KeyringError(f"retention class {retention_class!r} cannot name a period key "
                           "(letters, digits, _ - + . only)")
    return key_id


def hold_key_id(number: int) -> str:
    return f"{HOLD_PREFIX}{number}"


def is_hold_key(key_id: str) -> bool:
    return HOLD_KEY_ID.fullmatch(key_id) is not None


def parse_period(key_id: str) -> tuple[str, str] | None:
    """(retention class, ``YYYY-MM``) of a period key id; None for a hold key or anything else."""
    if is_hold_key(key_id):
        return None
    m = PERIOD_KEY_ID.fullmatch(key_id)
    return None if m is None else (m["retention_class"], m["month"])


def generation(key_id: str) -> int:
    """1 for a first key, n for its n-th replacement (``….n`` / ``hold-n``)."""
    m = HOLD_KEY_ID.fullmatch(key_id)
    if m:
        return int(m["number"])
    m = PERIOD_KEY_ID.fullmatch(key_id)
    return int(m["generation"]) if m and m["generation"] else 1


def period_base(key_id: str) -> str:
    """A period key id without its generation: the period it belongs to."""
    m = PERIOD_KEY_ID.fullmatch(key_id)
    return key_id if m is None else f"{m['retention_class']}-{m['month']}"


def next_generation(key_id: str) -> str:
    """The id of the key that replaces ``key_id``."""
    if is_hold_key(key_id):
        return hold_key_id(generation(key_id) + 1)
    return f"{period_base(key_id)}.{generation(key_id) + 1}"


def newest(key_ids: Iterable[str], base: str) -> str | None:
    """The newest generation of period ``base`` among ``key_ids``."""
    found = [k for k in key_ids if k == base or (k.startswith(base + ".") and period_base(k) == base)]
    return max(found, key=generation) if found else None


def valid_key_id(key_id: str) -> bool:
    return is_hold_key(key_id) or parse_period(key_id) is not None


def _open_checked(path: Path, *, private: bool) -> str:
    """A key file's text; refused (naming the file) when it is a link, not a regular file,
    or readable (private) / writable (public) by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyringError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyringError(f"{path}: cannot open the key file ({exc.strerror}); "
                           "a key file is never a symbolic link") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyringError(f"{path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if private and mode & 0o077:
            raise KeyringError(f"{path}: mode {mode:04o} lets group or others read a private key; "
                               "refused (chmod 600 it)")
        if not private and mode & 0o022:
            raise KeyringError(f"{path}: mode {mode:04o} lets group or others replace a public key; "
                               "refused (chmod 644 it)")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("ascii")
    except UnicodeDecodeError:
        raise KeyringError(f"{path}: not a text key file") from None


def check_private_dir(directory: Path) -> None:
    """The private keys directory exists, is a directory and only its owner may enter it."""
    try:
        st = os.stat(directory, follow_symlinks=False)
    except FileNotFoundError:
        raise KeyringError(f"{directory}: the private keys directory does not exist (create the keys "
                           "with 'callproof keys init', or copy them here from the key host)") from None
    except OSError as exc:
        raise KeyringError(f"{directory}: cannot read the private keys directory ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise KeyringError(f"{directory}: not a directory (a symbolic link is refused)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyringError(f"{directory}: mode {mode:04o} lets group or others into the private keys "
                           "directory; refused (chmod 700 it)")


def _names(directory: Path, suffix: str, what: str) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        raise KeyringError(f"{directory}: the {what} directory does not exist") from None
    except OSError as exc:
        raise KeyringError(f"{directory}: cannot list the {what} directory ({exc.strerror})") from None
    return [p for p in entries if p.name.endswith(suffix) and not p.name.startswith(".")]


def _key_id(path: Path, suffix: str) -> str:
    key_id = path.name[: -len(suffix)]
    if not valid_key_id(key_id):
        raise KeyringError(f"{path}: {key_id!r} is not a key id (<retention class>-<YYYY-MM> or hold-<n>); "
                           "move the file out of the keys directory")
    return key_id


def read_public_key(path: Path) -> Recipient:
    text = _open_checked(path, private=False)
    try:
        recipients = parse_recipients(text.splitlines(), str(path))
    except AgeError as exc:
        raise KeyringError(str(exc)) from None
    if len(recipients) != 1:
        raise KeyringError(f"{path}: holds {len(recipients)} age1… recipients, expected exactly one")
    return recipients[0]


def read_private_key(path: Path) -> Identity:
    text = _open_checked(path, private=True)
    try:
        identities = parse_identity_file(text, str(path))
    except AgeError as exc:
        raise KeyringError(str(exc)) from None
    if len(identities) != 1:
        raise KeyringError(f"{path}: holds {len(identities)} AGE-SECRET-KEY-1… lines, expected exactly one")
    return identities[0]


def read_public_dir(directory: Path) -> dict[str, Recipient]:
    return {_key_id(p, PUBLIC_SUFFIX): read_public_key(p) for p in _names(directory, PUBLIC_SUFFIX, "public keys")}


def read_destroyed(directory: Path) -> dict[str, dict]:
    """The tombstones of destroyed private keys: key id -> what was recorded at destruction."""
    found: dict[str, dict] = {}
    for p in _names(directory, DESTROYED_SUFFIX, "private keys"):
        key_id = _key_id(p, DESTROYED_SUFFIX)
        try:
            found[key_id] = json.loads(p.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyringError(f"{p}: unreadable destruction record ({exc})") from None
    return found


class PublicKeyring:
    """The public keys of the PBX side: a recording's period key by class and expiry.

    A key missing from memory is looked for again on disk (``keys rotate`` adds keys while
    ``callproof run`` runs), so a long-running process never needs a restart for new keys."""

    def __init__(self, directory: Path, keys: Mapping[str, Recipient]) -> None:
        self.directory = directory
        self._keys = dict(keys)

    @classmethod
    def load(cls, config: Config) -> PublicKeyring | None:
        """None when ``[encryption] enabled`` is false; KeyringError naming the directory or file."""
        if not config.encryption.enabled:
            return None
        return cls.from_dir(config.encryption.public_keys_dir)

    @classmethod
    def from_dir(cls, directory: Path) -> PublicKeyring:
        try:
            mode = stat.S_IMODE(os.stat(directory).st_mode)
        except FileNotFoundError:
            raise KeyringError(f"{directory}: the public keys directory does not exist (write it with 'callproof "
                               "keys export-public' on the key host)") from None
        except OSError as exc:
            raise KeyringError(f"{directory}: cannot read the public keys directory ({exc.strerror})") from None
        if mode & 0o022:  # whoever adds a newer key generation there receives the next recordings
            raise KeyringError(f"{directory}: mode {mode:04o} lets group or others add public keys; refused "
                               "(chmod 755 it)")
        return cls(directory, read_public_dir(directory))

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def recipient(self, key_id: str) -> Recipient:
        found = self._keys.get(key_id)
        if found is None:
            path = self.directory / f"{key_id}{PUBLIC_SUFFIX}"
            try:
                found = read_public_key(path)
            except KeyringError as exc:
                if not path.exists():
                    raise KeyringError(f"{path}: no public key {key_id}; run 'callproof keys rotate' on the key "
                                       "host (it creates period keys ahead) and 'callproof keys export-public' "
                                       "to this directory") from None
                raise exc
            self._keys[key_id] = found
        return found

    def _listed(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            raise KeyringError(f"{self.directory}: cannot list the public keys directory ({exc.strerror})") from None
        return [n[: -len(PUBLIC_SUFFIX)] for n in names if n.endswith(PUBLIC_SUFFIX)]

    def recipients_for(self, retention_class: str, expires_at: datetime) -> RecipientSet:
        """The period key (retention class x expiry month; its newest generation, when it
        was replaced); KeyringError if it does not exist, or if the recording has expired
        already (its period key may be destroyed any time: a file encrypted to it could
        never be read)."""
        base = period_key_id(retention_class, expires_at)
        if expires_at <= datetime.now(UTC):
            raise KeyringError(f"the recording expired at {expires_at.isoformat()}: its period key {base} is "
                               "due for destruction; left plaintext for retention to delete")
        key_id = newest(self._listed(), base) or base  # one listing: a replacement is seen at once
        return RecipientSet((self.recipient(key_id),), (key_id,))


class PrivateKeyring:
    """Every private key not destroyed (period keys and hold keys), by key id."""

    def __init__(self, directory: Path, identities: Mapping[str, Identity]) -> None:
        self.directory = directory
        self._identities = dict(identities)
        holds = sorted((int(k[len(HOLD_PREFIX):]), k) for k in self._identities if is_hold_key(k))
        if not holds:
            raise KeyringError(f"{directory}: no hold key (hold-1.key); create the keys with 'callproof keys "
                               "init', or copy the hold key here from the key host")
        self.hold_key_id = holds[-1][1]

    @classmethod
    def load(cls, config: Config, env: Mapping[str, str] | None = None) -> PrivateKeyring:
        """KeyringError saying what is missing (the directory, a key file, the hold key) or wrong
        (a mode, a file).  ``private_keys_credential`` + ``$CREDENTIALS_DIRECTORY``: the keys
        systemd passed to this service."""
        env = os.environ if env is None else env
        name = config.encryption.private_keys_credential
        cred_dir = env.get(CREDENTIALS_ENV)
        if name and cred_dir:
            return cls.from_credentials(Path(cred_dir), name)
        return cls.from_dir(config.encryption.private_keys_dir)

    @classmethod
    def from_dir(cls, directory: Path) -> PrivateKeyring:
        check_private_dir(directory)
        identities = {_key_id(p, PRIVATE_SUFFIX): read_private_key(p)
                      for p in _names(directory, PRIVATE_SUFFIX, "private keys")}
        return cls(directory, identities)

    @classmethod
    def from_credentials(cls, directory: Path, name: str) -> PrivateKeyring:
        """systemd's ``LoadCredential=NAME:/dir`` passes each file of /dir as ``NAME_<file>``."""
        prefix = f"{name}_"
        identities: dict[str, Identity] = {}
        for p in _names(directory, PRIVATE_SUFFIX, "systemd credentials"):
            if p.name.startswith(prefix):
                key_id = p.name[len(prefix): -len(PRIVATE_SUFFIX)]
                if not valid_key_id(key_id):
                    raise KeyringError(f"{p}: {key_id!r} is not a key id")
                identities[key_id] = read_private_key(p)
        if not identities:
            raise KeyringError(f"{directory}: no credential {prefix}*.key; set LoadCredential={name}:<private keys "
                               "directory> in the service's unit (docs/keys.md)")
        return cls(directory, identities)

    def key_ids(self) -> list[str]:
        return sorted(self._identities)

    def identity(self, key_id: str) -> Identity:
        try:
            return self._identities[key_id]
        except KeyError:
            raise KeyringError(f"{self.directory}: no private key {key_id} (destroyed, or never copied here)") from None

    def identities(self) -> list[Identity]:
        """Every private key not destroyed (period keys + hold keys)."""
        return [self._identities[k] for k in sorted(self._identities)]

    def identities_for(self, key_ids: Iterable[str]) -> list[Identity]:
        """The identities of the given key ids that are still held (a row's ``key_ids``)."""
        return [self._identities[k] for k in key_ids if k in self._identities]

    def hold_recipients(self) -> RecipientSet:
        hold = self._identities[self.hold_key_id]
        return RecipientSet((hold.recipient,), (self.hold_key_id,))
