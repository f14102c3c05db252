"""The age v1 header: recipient stanzas wrapping the file key, and the header MAC.

    age-encryption.org/v1
    -> X25519 <ephemeral share, base64>
    <the wrapped file key, base64>
    --- <HMAC-SHA-256 of everything up to and including "---", base64>

Only X25519 stanzas are opened; other stanza types (another tool's recipients,
grease) are kept and skipped, as the format requires.  Base64 is the standard
alphabet without padding, in canonical form only; stanza bodies are wrapped at
64 columns with a final short (possibly empty) line.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import HeaderError, NoIdentityError
from .keys import Identity, Recipient

VERSION_LINE = b"age-encryption.org/v1\n"
X25519_TYPE = "X25519"
X25519_INFO = b"age-encryption.org/v1/X25519"
FILE_KEY_SIZE = 16
COLUMNS = 64
# A stanza line longer than this is not a header (guards reading a wrong file).
MAX_LINE = 4096
MAX_STANZAS = 1000
_ARG = re.compile(rb"[\x21-\x7e]+")
_ZERO_NONCE = bytes(12)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes, what: str) -> bytes:
    raw = text.encode("ascii") if isinstance(text, str) else text
    if b"=" in raw or b"\r" in raw or b"\n" in raw:
        raise HeaderError(f"{what}: base64 must be unpadded, on one line")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except ValueError:
        raise HeaderError(f"{what}: not valid base64") from None
    if b64encode(data).encode("ascii") != raw:
        raise HeaderError(f"{what}: base64 not in canonical form")
    return data


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        line = " ".join(("->", self.type, *self.args)).encode("ascii") + b"\n"
        text = b64encode(self.body)
        lines = [text[i:i + COLUMNS] for i in range(0, len(text), COLUMNS)]
        if not lines or len(lines[-1]) == COLUMNS:
            lines.append("")
        return line + "".join(part + "\n" for part in lines).encode("ascii")


@dataclass(frozen=True)
class Header:
    """A parsed header: its stanzas, its MAC, and its length in the file (bytes)."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    raw: bytes  # the header's bytes as read, MAC line included

    @property
    def length(self) -> int:
        return len(self.raw)

    def mac_input(self) -> bytes:
        return self.raw[: self.raw.rindex(b"\n---") + 4]

    def file_key(self, identities: Sequence[Identity]) -> bytes:
        """The file key, unwrapped by the first identity that opens a stanza; the MAC is checked."""
        if any(s.type == "scrypt" for s in self.stanzas):
            raise NoIdentityError("the file is encrypted with a passphrase (scrypt), not to a key")
        x25519 = [s for s in self.stanzas if s.type == X25519_TYPE]
        if not x25519:
            raise NoIdentityError("the file has no X25519 recipient stanza")
        for identity in identities:
            for stanza in x25519:
                key = _unwrap_x25519(stanza, identity)
                if key is not None:
                    if not hmac.compare_digest(header_mac(key, self.mac_input()), self.mac):
                        raise HeaderError("header MAC does not match: the header was altered")
                    return key
        raise NoIdentityError(
            f"none of the {len(identities)} identities given opens this file "
            f"({len(x25519)} X25519 recipients): it was encrypted to other keys"
        )


def header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    return hmac.new(hkdf(file_key, b"", b"header"), mac_input, "sha256").digest()


def wrap_x25519(file_key: bytes, recipient: Recipient) -> Stanza:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(recipient.key)
    wrap_key = hkdf(shared, share + recipient.public_bytes, X25519_INFO)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza(X25519_TYPE, (b64encode(share),), body)


def _unwrap_x25519(stanza: Stanza, identity: Identity) -> bytes | None:
    if len(stanza.args) != 1:
        raise HeaderError("X25519 stanza: expected one argument")
    share = b64decode(stanza.args[0], "X25519 stanza share")
    if len(share) != 32 or len(stanza.body) != FILE_KEY_SIZE + 16:
        raise HeaderError("X25519 stanza: wrong share or body size")
    shared = identity.exchange(share)
    if shared == bytes(32):
        raise HeaderError("X25519 stanza: low-order share")
    wrap_key = hkdf(shared, share + identity.recipient.public_bytes, X25519_INFO)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        return None


def build_header(file_key: bytes, recipients: Sequence[Recipient]) -> bytes:
    """A header wrapping ``file_key`` to each recipient, MAC included (the bytes to write)."""
    if not recipients:
        raise ValueError("at least one recipient is needed")
    stanzas = tuple(wrap_x25519(file_key, r) for r in recipients)
    mac_input = VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
    return mac_input + b" " + b64encode(header_mac(file_key, mac_input)).encode("ascii") + b"\n"


def new_file_key() -> bytes:
    return os.urandom(FILE_KEY_SIZE)


def _line(f: BinaryIO) -> bytes:
    line = f.readline(MAX_LINE + 1)
    if not line.endswith(b"\n"):
        raise HeaderError("not an age file: the header ends early or a line is too long")
    return line[:-1]


def read_header(f: BinaryIO) -> Header:
    """Parse the header at the current position of ``f``; leaves ``f`` at the payload."""
    first = f.readline(len(VERSION_LINE))
    if first != VERSION_LINE:
        raise HeaderError("not an age v1 file: it does not start with 'age-encryption.org/v1'")
    raw = [first]
    stanzas: list[Stanza] = []
    while True:
        line = _line(f)
        raw.append(line + b"\n")
        if line.startswith(b"--- "):
            mac = b64decode(line[4:], "header MAC")
            if len(mac) != 32:
                raise HeaderError("header MAC: wrong size")
            return Header(tuple(stanzas), mac, b"".join(raw))
        if not line.startswith(b"-> "):
            raise HeaderError("malformed header: expected a stanza ('-> ') or the MAC line ('--- ')")
        if len(stanzas) >= MAX_STANZAS:
            raise HeaderError("malformed header: too many stanzas")
        parts = line[3:].split(b" ")
        if not parts or not all(_ARG.fullmatch(p) for p in parts):
            raise HeaderError("malformed stanza line")
        body_lines = []
        while True:
            body_line = _line(f)
            raw.append(body_line + b"\n")
            if len(body_line) > COLUMNS:
                raise HeaderError("malformed stanza body: a line longer than 64 columns")
            body_lines.append(body_line)
            if len(body_line) < COLUMNS:
                break
        body = b64decode(b"".join(body_lines), "stanza body")
        stanzas.append(Stanza(parts[0].decode("ascii"), tuple(p.decode("ascii") for p in parts[1:]), body))
