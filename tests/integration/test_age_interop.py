"""callproof's age files against Debian's ``age``, both ways, at chunk boundaries and for a
multi-megabyte file: what one encrypts, the other decrypts to the same sha256."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from callproof.encryption import CHUNK_SIZE, AgeReader, Identity, decrypt, encrypt, parse_identity_file

from .age_tool import age_binaries

SIZES = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * 1024 * 1024 + 3]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def keygen_identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Identity]:
    """A key made by ``age-keygen``, read by callproof."""
    _, keygen = age_binaries()
    path = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run([keygen, "-o", str(path)], check=True, capture_output=True)
    [identity] = parse_identity_file(path.read_text(), source=str(path))
    public = subprocess.run([keygen, "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    assert str(identity.recipient) == public
    return path, identity


@pytest.mark.parametrize("size", SIZES)
def test_callproof_encrypts_and_age_decrypts_the_same_plaintext(
    tmp_path: Path, keygen_identity: tuple[Path, Identity], size: int
) -> None:
    age, _ = age_binaries()
    key_file, identity = keygen_identity
    data = os.urandom(size)
    sealed = tmp_path / "rec.wav.age"
    with sealed.open("wb") as out:
        digests = encrypt(io.BytesIO(data), out, [identity.recipient])
    result = subprocess.run([age, "-d", "-i", str(key_file), str(sealed)], capture_output=True, check=True)
    assert _sha(result.stdout) == _sha(data) == digests.plaintext_sha256
    assert digests.ciphertext_sha256 == _sha(sealed.read_bytes())


@pytest.mark.parametrize("size", SIZES)
def test_age_encrypts_and_callproof_decrypts_and_seeks(
    tmp_path: Path, keygen_identity: tuple[Path, Identity], size: int
) -> None:
    age, _ = age_binaries()
    _, identity = keygen_identity
    data = os.urandom(size)
    sealed = tmp_path / "from-age.age"
    subprocess.run([age, "-r", str(identity.recipient), "-o", str(sealed)], input=data, check=True)
    out = io.BytesIO()
    digests = decrypt(sealed.open("rb"), out, [identity])
    assert _sha(out.getvalue()) == _sha(data) == digests.plaintext_sha256
    assert digests.ciphertext_sha256 == _sha(sealed.read_bytes())
    with AgeReader(sealed.open("rb"), [identity]) as reader:
        middle = size // 2
        reader.seek(middle)
        assert reader.read(1000) == data[middle:middle + 1000]


def test_a_file_for_two_recipients_opens_with_either_key_in_age(tmp_path: Path) -> None:
    age, keygen = age_binaries()
    keys = []
    for name in ("period", "hold"):
        path = tmp_path / f"{name}.txt"
        subprocess.run([keygen, "-o", str(path)], check=True, capture_output=True)
        keys.append((path, parse_identity_file(path.read_text())[0]))
    sealed = tmp_path / "two.age"
    with sealed.open("wb") as out:
        encrypt(io.BytesIO(b"x" * 70000), out, [k.recipient for _, k in keys])
    for path, _ in keys:
        result = subprocess.run([age, "-d", "-i", str(path), str(sealed)], capture_output=True, check=True)
        assert result.stdout == b"x" * 70000
    stranger = tmp_path / "stranger.txt"
    subprocess.run([keygen, "-o", str(stranger)], check=True, capture_output=True)
    refused = subprocess.run([age, "-d", "-i", str(stranger), str(sealed)], capture_output=True)
    assert refused.returncode != 0 and b"no identity matched" in refused.stderr
