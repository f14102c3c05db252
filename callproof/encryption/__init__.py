"""Recordings encrypted at rest in the age v1 format (C2SP age, X25519 recipients).

``keys``: X25519 identities and recipients, their ``age1…`` / ``AGE-SECRET-KEY-1…``
strings and identity files as ``age-keygen`` writes them.  ``header``: the age
header (recipient stanzas, the header MAC).  ``stream``: the ChaCha20-Poly1305
STREAM payload, encrypted and decrypted chunk by chunk, never a whole file in
memory; ``AgeReader`` is a seekable plaintext view of an encrypted file (HTTP
Range playback), ``rewrap`` gives a file new recipients without touching its
payload (legal holds, crypto-shredding).

Built on ``cryptography``'s primitives (X25519, HKDF-SHA-256, HMAC-SHA-256,
ChaCha20-Poly1305): see docs/keys.md for why not a binding to another age
implementation.  Files written here decrypt with Debian's ``age -d`` and files
``age -r`` writes are read here; tests/integration prove both ways.
"""

from __future__ import annotations

from .errors import AgeError, HeaderError, NoIdentityError, PayloadError
from .header import Header, read_header
from .keys import Identity, Recipient, format_identity_file, parse_identity_file, parse_recipients
from .stream import (
    CHUNK_SIZE,
    AgeReader,
    Digests,
    decrypt,
    encrypt,
    plaintext_size,
    rewrap,
)

__all__ = [
    "CHUNK_SIZE",
    "AgeError",
    "AgeReader",
    "Digests",
    "Header",
    "HeaderError",
    "Identity",
    "NoIdentityError",
    "PayloadError",
    "Recipient",
    "decrypt",
    "encrypt",
    "format_identity_file",
    "parse_identity_file",
    "parse_recipients",
    "plaintext_size",
    "read_header",
    "rewrap",
]
