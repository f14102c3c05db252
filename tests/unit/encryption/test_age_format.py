"""The age v1 format written and read by callproof.encryption: round trips at chunk
boundaries, seeking, and every kind of alteration refused with an error that says what."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from callproof.encryption import (
    CHUNK_SIZE,
    AgeError,
    AgeReader,
    HeaderError,
    Identity,
    NoIdentityError,
    PayloadError,
    decrypt,
    encrypt,
    format_identity_file,
    parse_identity_file,
    parse_recipients,
    read_header,
    rewrap,
)
from callproof.encryption.stream import NONCE_SIZE, SEALED_CHUNK, payload_length, plaintext_size

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17]


def _encrypted(data: bytes, *identities: Identity) -> bytes:
    out = io.BytesIO()
    encrypt(io.BytesIO(data), out, [i.recipient for i in identities])
    return out.getvalue()


@pytest.fixture(scope="module")
def key() -> Identity:
    return Identity.generate()


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_chunk_boundaries_with_digests_of_what_was_written(key: Identity, size: int) -> None:
    data = os.urandom(size)
    out = io.BytesIO()
    sealed = encrypt(io.BytesIO(data), out, [key.recipient])
    blob = out.getvalue()
    assert sealed.plaintext_size == size
    assert sealed.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert sealed.ciphertext_size == len(blob)
    assert sealed.ciphertext_sha256 == hashlib.sha256(blob).hexdigest()
    header = read_header(io.BytesIO(blob))
    assert sealed.payload_sha256 == hashlib.sha256(blob[header.length:]).hexdigest()
    assert len(blob) == header.length + NONCE_SIZE + payload_length(size)
    assert plaintext_size(len(blob) - header.length - NONCE_SIZE) == size

    back = io.BytesIO()
    opened = decrypt(io.BytesIO(blob), back, [key])
    assert back.getvalue() == data
    assert opened == sealed


@pytest.mark.parametrize("size", SIZES)
def test_the_reader_seeks_anywhere_and_reads_the_same_bytes(key: Identity, size: int) -> None:
    data = os.urandom(size)
    reader = AgeReader(io.BytesIO(_encrypted(data, key)), [key])
    assert reader.size == size
    for start in {0, size // 3, max(0, size - 5), CHUNK_SIZE - 2, CHUNK_SIZE}:
        reader.seek(start)
        assert reader.read(9) == data[start:start + 9]
    if size >= 3:
        reader.seek(-3, os.SEEK_END)
        assert reader.read() == data[-3:]
    reader.seek(0)
    assert io.BufferedReader(reader).read() == data


def test_a_pipe_that_returns_short_reads_still_gives_full_chunks(key: Identity) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 5)

    class Trickle(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._src = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
            chunk = self._src.read(min(len(b), 1000))
            b[: len(chunk)] = chunk
            return len(chunk)

    out = io.BytesIO()
    encrypt(Trickle(data), out, [key.recipient])  # type: ignore[arg-type]
    assert out.getvalue() == out.getvalue()
    back = io.BytesIO()
    decrypt(Trickle(out.getvalue()), back, [key])  # type: ignore[arg-type]
    assert back.getvalue() == data


def test_any_of_several_recipients_opens_it_and_a_stranger_does_not(key: Identity) -> None:
    other, stranger = Identity.generate(), Identity.generate()
    blob = _encrypted(b"hello", key, other)
    for who in (key, other):
        out = io.BytesIO()
        decrypt(io.BytesIO(blob), out, [who])
        assert out.getvalue() == b"hello"
    with pytest.raises(NoIdentityError, match="encrypted to other keys"):
        decrypt(io.BytesIO(blob), io.BytesIO(), [stranger])


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda b: b[:-1], PayloadError, "truncated"),
        (lambda b: b[:-SEALED_CHUNK], PayloadError, "truncated"),
        (lambda b: b + b"x", PayloadError, "chunk"),
        (lambda b: b + os.urandom(SEALED_CHUNK), PayloadError, "chunk"),
        (lambda b: b[:-20] + bytes([b[-20] ^ 1]) + b[-19:], PayloadError, "altered"),
        (lambda b: b.replace(b"age-encryption.org/v1", b"age-encryption.org/v2"), HeaderError, "age v1"),
        (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], AgeError, "."),
    ],
    ids=["last-byte-cut", "last-chunk-cut", "byte-added", "chunk-added", "bit-flipped", "version", "stanza"],
)
def test_alterations_are_refused(key: Identity, damage, error: type[Exception], message: str) -> None:  # type: ignore[no-untyped-def]
    blob = damage(_encrypted(os.urandom(2 * CHUNK_SIZE + 100), key))
    with pytest.raises(error, match=message):
        decrypt(io.BytesIO(blob), io.BytesIO(), [key])
    with pytest.raises(error, match=message):
        reader = AgeReader(io.BytesIO(blob), [key])
        io.BufferedReader(reader).read()


def test_swapping_two_chunks_is_refused(key: Identity) -> None:
    blob = _encrypted(os.urandom(3 * CHUNK_SIZE), key)
    start = read_header(io.BytesIO(blob)).length + NONCE_SIZE
    a = blob[start:start + SEALED_CHUNK]
    b = blob[start + SEALED_CHUNK:start + 2 * SEALED_CHUNK]
    swapped = blob[:start] + b + a + blob[start + 2 * SEALED_CHUNK:]
    with pytest.raises(PayloadError, match="chunk 0"):
        decrypt(io.BytesIO(swapped), io.BytesIO(), [key])


def test_an_altered_header_fails_its_mac(key: Identity) -> None:
    blob = _encrypted(b"data", key, Identity.generate())
    header = read_header(io.BytesIO(blob))
    # drop the second stanza: the file key still unwraps, the MAC no longer matches
    second = header.stanzas[1].encode()
    with pytest.raises(HeaderError, match="MAC"):
        decrypt(io.BytesIO(blob.replace(second, b"")), io.BytesIO(), [key])


def test_non_canonical_base64_and_foreign_stanzas(key: Identity) -> None:
    blob = _encrypted(b"data", key)
    mac_line = blob[: read_header(io.BytesIO(blob)).length].rsplit(b"\n", 2)[-2]
    with pytest.raises(HeaderError, match="base64"):
        read_header(io.BytesIO(blob.replace(mac_line, mac_line + b"=")))
    # another tool's stanza is skipped, but then the MAC (over the header as read) fails
    foreign = blob.replace(b"-> X25519", b"-> grease-x a b\nAAAA\n-> X25519", 1)
    assert [s.type for s in read_header(io.BytesIO(foreign)).stanzas] == ["grease-x", "X25519"]
    with pytest.raises(HeaderError, match="MAC"):
        decrypt(io.BytesIO(foreign), io.BytesIO(), [key])
    with pytest.raises(HeaderError, match="not an age v1 file"):
        read_header(io.BytesIO(b"RIFF....WAVEfmt "))


def test_rewrap_keeps_the_payload_and_locks_out_the_old_key(key: Identity) -> None:
    data = os.urandom(CHUNK_SIZE + 3)
    blob = _encrypted(data, key)
    hold = Identity.generate()
    out = io.BytesIO()
    old = rewrap(io.BytesIO(blob), out, [key], [hold.recipient])
    new = out.getvalue()
    assert new[read_header(io.BytesIO(new)).length:] == blob[old.length:]  # payload untouched
    back = io.BytesIO()
    decrypt(io.BytesIO(new), back, [hold])
    assert back.getvalue() == data
    with pytest.raises(NoIdentityError):
        decrypt(io.BytesIO(new), io.BytesIO(), [key])


def test_keys_round_trip_through_their_strings_and_files() -> None:
    identity = Identity.generate()
    assert str(identity.recipient).startswith("age1")
    assert identity.secret_string().startswith("AGE-SECRET-KEY-1")
    assert "AGE-SECRET" not in repr(identity)
    text = format_identity_file(identity)
    assert text.splitlines()[1] == f"# public key: {identity.recipient}"
    [again] = parse_identity_file(text)
    assert again.recipient == identity.recipient
    assert parse_recipients(["# comment", str(identity.recipient), ""]) == [identity.recipient]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("age1qqqq", "Bech32"),
        ("AGE1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS3290GQ", "lower case"),
        ("age1" + "q" * 58, "checksum"),
    ],
)
def test_bad_recipients_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(AgeError, match=r"recipients\.txt, line 1: .*" + message):
        parse_recipients([text], source="recipients.txt")


def test_an_identity_must_be_upper_case() -> None:
    with pytest.raises(AgeError, match="upper case"):
        Identity.parse(Identity.generate().secret_string().lower())


def test_a_bad_identity_file_names_file_and_line() -> None:
    with pytest.raises(AgeError, match=r"keys/2027-01\.key, line 2"):
        parse_identity_file("# ok\nAGE-SECRET-KEY-1NOPE\n", source="keys/2027-01.key")
    with pytest.raises(AgeError, match="no AGE-SECRET-KEY"):
        parse_identity_file("# only comments\n", source="k")
