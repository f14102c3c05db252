"""The evidence signing key: Ed25519, one PEM (PKCS8) file of mode 0600 outside the database.

The fingerprint of a key is the sha256 of its raw 32-byte public key, in hex: records and
checkpoints name the key that signed them by it, and a verifier picks the public key by it,
so records signed before a key rotation still verify with the old public key (kept in
``[evidence] trusted_keys``, a folder of ``*.pem`` public keys).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from callproof.config import Config

KEY_MODE = 0o600


class KeyFileError(Exception):
    """A key file that cannot be used; the message names the file and what is wrong."""


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def generate_key_file(path: Path) -> str:
    """Create a new private key at ``path`` (mode 0600, never over an existing file or a
    symlink); returns its fingerprint."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, KEY_MODE)
    except FileExistsError:
        raise KeyFileError(f"{path}: exists already; a signing key is never overwritten "
                        "(move it to keep its public key, see docs/evidence.md#rotation)") from None
    try:
        os.fchmod(fd, KEY_MODE)  # whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return fingerprint(key.public_key())


def _read_private(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file (create one with 'callproof evidence keygen')") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open the key file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets group or others read the "
                            "signing key; refused (chmod 600 it)")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Signer:
    """The private key of this host's signing process, loaded from its file."""
    key: Ed25519PrivateKey
    path: Path
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", fingerprint(self.key.public_key()))

    @classmethod
    def load(cls, path: Path) -> Signer:
        data = _read_private(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 key")
        return cls(key, path)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def load_public_pem(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source}: not an Ed25519 public key")
    return key


class TrustedKeys:
    """Public keys by fingerprint: the current signing key's and those of earlier keys."""

    def __init__(self, keys: dict[str, Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = dict(keys or {})

    def add(self, key: Ed25519PublicKey) -> str:
        fp = fingerprint(key)
        self._keys[fp] = key
        return fp

    def add_folder(self, folder: Path) -> None:
        """Every ``*.pem`` public key in ``folder`` (an unreadable or bad file is an error naming it)."""
        try:
            names = sorted(p for p in folder.iterdir() if p.suffix == ".pem")
        except FileNotFoundError:  # no rotation yet
            return
        except OSError as exc:
            raise KeyFileError(f"{folder}: cannot list the trusted keys folder: {exc.strerror}") from None
        for p in names:
            self.add(load_public_pem(p.read_bytes(), str(p)))

    def __contains__(self, fp: object) -> bool:
        return fp in self._keys

    def public_key(self, fp: str) -> Ed25519PublicKey:
        return self._keys[fp]

    def fingerprints(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, fp: str, signature: bytes, data: bytes) -> bool:
        """True when ``fp`` is a trusted key and ``signature`` is its signature of ``data``."""
        key = self._keys.get(fp)
        if key is None:
            return False
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def signer_from_config(config: Config) -> Signer | None:
    """The configured signing key (KeyFileError naming the file), or None when none is set."""
    path = config.evidence.signing_key
    return None if path is None else Signer.load(path)


def trusted_from_config(config: Config, signer: Signer | None = None) -> TrustedKeys:
    """The current key's public key (when a key is configured) and ``[evidence] trusted_keys``."""
    trusted = TrustedKeys()
    if signer is None and config.evidence.signing_key is not None:
        signer = Signer.load(config.evidence.signing_key)
    if signer is not None:
        trusted.add(signer.public_key)
    if config.evidence.trusted_keys is not None:
        trusted.add_folder(config.evidence.trusted_keys)
    return trusted
