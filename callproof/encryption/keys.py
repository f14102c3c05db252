"""X25519 identities (private keys) and recipients (public keys) as age writes them.

A recipient is ``age1`` + Bech32 of the 32-byte public key, an identity
``AGE-SECRET-KEY-1`` + Bech32 (upper case) of the 32-byte private key: the
strings ``age-keygen`` prints, so keys move between callproof and Debian's
``age`` both ways.  Bech32 comes from the ``bech32`` package, BIP 173's
reference implementation (the encoding age uses; not Bech32m).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import bech32
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .errors import AgeError

RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


def _encode(hrp: str, raw: bytes) -> str:
    data = bech32.convertbits(raw, 8, 5, True)
    if data is None:  # pragma: no cover - 8-to-5 bit conversion with padding cannot fail
        raise AgeError("cannot encode key")
    return bech32.bech32_encode(hrp, data)


def _decode(text: str, hrp: str, what: str) -> bytes:
    found_hrp, data = bech32.bech32_decode(text)
    if found_hrp is None or data is None:
        raise AgeError(f"not a valid {what}: bad Bech32 encoding or checksum")
    if found_hrp != hrp:
        raise AgeError(f"not a valid {what}: it starts {found_hrp!r}, expected {hrp!r}")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != 32:
        raise AgeError(f"not a valid {what}: it does not hold a 32-byte key")
    return bytes(raw)


@dataclass(frozen=True)
class Recipient:
    """An X25519 public key files are encrypted to."""

    public_bytes: bytes

    @classmethod
    def parse(cls, text: str) -> Recipient:
        text = text.strip()
        if text != text.lower():
            raise AgeError("not a valid age recipient: recipients are written in lower case (age1…)")
        raw = _decode(text, RECIPIENT_HRP, "age recipient (age1…)")
        return cls(raw)

    def __str__(self) -> str:
        return _encode(RECIPIENT_HRP, self.public_bytes)

    @property
    def key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.public_bytes)

    @property
    def fingerprint(self) -> str:
        """sha256 of the raw public key, hex: short, stable, safe to log."""
        return hashlib.sha256(self.public_bytes).hexdigest()


class Identity:
    """An X25519 private key; ``recipient`` is its public half."""

    __slots__ = ("_key", "recipient")

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key = key
        self.recipient = Recipient(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @classmethod
    def generate(cls) -> Identity:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Identity:
        text = text.strip()
        if text != text.upper():
            raise AgeError("not a valid age identity: identities are written in upper case (AGE-SECRET-KEY-1…)")
        raw = _decode(text, IDENTITY_HRP, "age identity (AGE-SECRET-KEY-1…)")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def exchange(self, peer: bytes) -> bytes:
        return self._key.exchange(X25519PublicKey.from_public_bytes(peer))

    def secret_string(self) -> str:
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _encode(IDENTITY_HRP, raw).upper()

    def __repr__(self) -> str:  # never the secret
        return f"Identity(recipient={self.recipient})"


def format_identity_file(identity: Identity, created: datetime | None = None) -> str:
    """The text ``age-keygen`` writes: two comment lines and the secret key."""
    when = (created or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return (
        f"# created: {when.isoformat().replace('+00:00', 'Z')}\n"
        f"# public key: {identity.recipient}\n"
        f"{identity.secret_string()}\n"
    )


def parse_identity_file(text: str, source: str = "identity file") -> list[Identity]:
    """Every identity in an ``age-keygen``-style file (comments and blank lines skipped)."""
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(Identity.parse(line))
        except AgeError as exc:
            raise AgeError(f"{source}, line {number}: {exc}") from None
    if not identities:
        raise AgeError(f"{source}: holds no AGE-SECRET-KEY-1… line")
    return identities


def parse_recipients(lines: Iterable[str], source: str = "recipients") -> list[Recipient]:
    """Recipients from ``age1…`` strings or a recipients file's lines (comments skipped)."""
    recipients = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            recipients.append(Recipient.parse(line))
        except AgeError as exc:
            raise AgeError(f"{source}, line {number}: {exc}") from None
    return recipients
