"""The age payload: a 16-byte nonce, then ChaCha20-Poly1305 STREAM chunks of 64 KiB.

Each chunk is sealed with the payload key (HKDF of the file key and the nonce)
and a 12-byte nonce: an 88-bit big-endian chunk counter and a final-chunk flag.
So a file is processed one chunk at a time (a 3-hour recording never sits in
memory), any chunk can be opened on its own (``AgeReader.seek``: HTTP Range
playback), and a truncated or extended file fails authentication.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import PayloadError
from .header import Header, build_header, hkdf, new_file_key, read_header
from .keys import Identity, Recipient

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16
COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Digests:
    """Sizes and sha256 (hex) of what went through: the plaintext, the whole age file,
    and its payload (everything after the header: unchanged when ``rewrap`` gives the
    file new recipients)."""

    plaintext_size: int
    plaintext_sha256: str
    ciphertext_size: int
    ciphertext_sha256: str
    payload_sha256: str


def _chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _payload_key(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))


def _read_full(f: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of ``f`` (pipes return short reads)."""
    data = f.read(size)
    if not data or len(data) == size:
        return data or b""
    parts = [data]
    got = len(data)
    while got < size:
        more = f.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class _Counter:
    """Writes to ``dst`` while hashing the whole file and the payload."""

    def __init__(self, dst: BinaryIO, header: bytes) -> None:
        self.dst = dst
        self.whole = hashlib.sha256(header)
        self.payload = hashlib.sha256()
        self.size = len(header)
        dst.write(header)

    def write(self, data: bytes) -> None:
        self.dst.write(data)
        self.whole.update(data)
        self.payload.update(data)
        self.size += len(data)


def encrypt(src: BinaryIO, dst: BinaryIO, recipients: Sequence[Recipient]) -> Digests:
    """Encrypt ``src`` (read to its end) to ``recipients``, writing the age file to ``dst``."""
    file_key = new_file_key()
    out = _Counter(dst, build_header(file_key, recipients))
    nonce = os.urandom(NONCE_SIZE)
    aead = _payload_key(file_key, nonce)
    out.write(nonce)
    plain = hashlib.sha256()
    size = 0
    index = 0
    chunk = _read_full(src, CHUNK_SIZE)
    while True:
        following = _read_full(src, CHUNK_SIZE) if len(chunk) == CHUNK_SIZE else b""
        last = not following
        plain.update(chunk)
        size += len(chunk)
        out.write(aead.encrypt(_chunk_nonce(index, last), chunk, None))
        if last:
            break
        chunk = following
        index += 1
    return Digests(size, plain.hexdigest(), out.size, out.whole.hexdigest(), out.payload.hexdigest())


def decrypt(src: BinaryIO, dst: BinaryIO, identities: Sequence[Identity]) -> Digests:
    """Decrypt the age file ``src`` (read to its end) into ``dst``; every chunk is authenticated.

    Raises ``PayloadError`` at the first chunk that fails (plaintext before it has
    been written: write to a temporary file and keep it only on success)."""
    whole = hashlib.sha256()
    header = read_header(src)
    file_key = header.file_key(identities)
    whole.update(header.raw)
    payload = hashlib.sha256()
    nonce = _read_full(src, NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise PayloadError("the file ends inside the payload nonce: truncated")
    whole.update(nonce)
    payload.update(nonce)
    aead = _payload_key(file_key, nonce)
    plain = hashlib.sha256()
    size = 0
    index = 0
    sealed = _read_full(src, SEALED_CHUNK)
    while True:
        following = _read_full(src, SEALED_CHUNK) if len(sealed) == SEALED_CHUNK else b""
        last = not following
        if len(sealed) < TAG_SIZE or (last and index > 0 and len(sealed) == TAG_SIZE):
            raise PayloadError(f"chunk {index}: too short: the file was truncated or altered")
        try:
            chunk = aead.decrypt(_chunk_nonce(index, last), sealed, None)
        except InvalidTag:
            raise PayloadError(
                f"chunk {index} fails authentication: the file was altered"
                + (" or truncated" if last else "")
            ) from None
        whole.update(sealed)
        payload.update(sealed)
        dst.write(chunk)
        plain.update(chunk)
        size += len(chunk)
        if last:
            break
        sealed = following
        index += 1
    ciphertext_size = header.length + NONCE_SIZE + payload_length(size)
    return Digests(size, plain.hexdigest(), ciphertext_size, whole.hexdigest(), payload.hexdigest())


def payload_length(plaintext: int) -> int:
    """Bytes of sealed chunks for ``plaintext`` bytes (at least one chunk, maybe empty)."""
    chunks = max(1, -(-plaintext // CHUNK_SIZE))
    return plaintext + chunks * TAG_SIZE


def plaintext_size(sealed_length: int) -> int:
    """Plaintext bytes held by ``sealed_length`` bytes of chunks (after the nonce)."""
    if sealed_length < TAG_SIZE:
        raise PayloadError("the payload is shorter than one chunk: truncated")
    chunks = -(-sealed_length // SEALED_CHUNK)
    last = sealed_length - (chunks - 1) * SEALED_CHUNK
    if last < TAG_SIZE or (chunks > 1 and last == TAG_SIZE):
        raise PayloadError("the payload ends inside a chunk tag: truncated or extended")
    return sealed_length - chunks * TAG_SIZE


def rewrap(src: BinaryIO, dst: BinaryIO, identities: Sequence[Identity],
           recipients: Sequence[Recipient]) -> Header:
    """Copy the age file ``src`` to ``dst`` with a new header for ``recipients``.

    The file key and the payload stay as they are (so a copy made before keeps
    only its old recipients); the header MAC is recomputed.  Returns the old
    header."""
    header = read_header(src)
    file_key = header.file_key(identities)
    dst.write(build_header(file_key, recipients))
    while block := src.read(COPY_BLOCK):
        dst.write(block)
    return header


class AgeReader(io.RawIOBase):
    """A seekable, read-only view of the plaintext of an age file.

    Opening reads the header, unwraps the file key and authenticates the final
    chunk (so a truncated file is refused at once); reads then open only the
    chunks they touch, one at a time.  ``size`` is the plaintext size."""

    def __init__(self, f: BinaryIO, identities: Sequence[Identity]) -> None:
        super().__init__()
        self._f = f
        f.seek(0)
        self.header = read_header(f)
        file_key = self.header.file_key(identities)
        nonce = _read_full(f, NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise PayloadError("the file ends inside the payload nonce: truncated")
        self._aead = _payload_key(file_key, nonce)
        self._start = self.header.length + NONCE_SIZE
        total = f.seek(0, os.SEEK_END)
        self.size = plaintext_size(total - self._start)
        self._chunks = max(1, -(-self.size // CHUNK_SIZE))
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None
        self._chunk(self._chunks - 1)  # authenticates the end: truncation is caught here

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        self._f.seek(self._start + index * SEALED_CHUNK)
        sealed = _read_full(self._f, SEALED_CHUNK)
        last = index == self._chunks - 1
        try:
            chunk = self._aead.decrypt(_chunk_nonce(index, last), sealed, None)
        except InvalidTag:
            raise PayloadError(
                f"chunk {index} fails authentication: the file was altered" + (" or truncated" if last else "")
            ) from None
        self._cached = (index, chunk)
        return chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` (across chunks) up to the end of the plaintext."""
        done = 0
        while done < len(buffer) and self._pos < self.size:
            index, within = divmod(self._pos, CHUNK_SIZE)
            chunk = self._chunk(index)
            n = min(len(buffer) - done, len(chunk) - within)
            buffer[done:done + n] = chunk[within:within + n]
            self._pos += n
            done += n
        return done

    def close(self) -> None:
        self._cached = None
        self._f.close()
        super().close()
