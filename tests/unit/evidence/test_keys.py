"""The evidence signing key: file mode, refusals that name the file, fingerprints, rotation."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from callproof.cli import main
from callproof.config import ConfigError, load_config
from callproof.evidence.keys import KeyFileError, Signer, TrustedKeys, generate_key_file, load_public_pem


def test_keygen_writes_a_0600_pkcs8_ed25519_key_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        fp = generate_key_file(tmp_path / "k.pem")
    finally:
        os.umask(old)
    st = os.stat(tmp_path / "k.pem")
    assert stat.S_IMODE(st.st_mode) == 0o600
    text = (tmp_path / "k.pem").read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS8
    signer = Signer.load(tmp_path / "k.pem")
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert fp == signer.fingerprint == hashlib.sha256(raw).hexdigest()


def test_keygen_never_overwrites_nor_follows_a_symlink(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "k.pem")
    before = (tmp_path / "k.pem").read_bytes()
    with pytest.raises(KeyFileError, match="exists already"):
        generate_key_file(tmp_path / "k.pem")
    assert (tmp_path / "k.pem").read_bytes() == before
    (tmp_path / "link.pem").symlink_to(tmp_path / "elsewhere.pem")
    with pytest.raises(KeyFileError):
        generate_key_file(tmp_path / "link.pem")
    assert not (tmp_path / "elsewhere.pem").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_readable_by_group_or_others_is_refused_naming_the_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "signing.pem"
    generate_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as exc:
        Signer.load(path)
    assert str(path) in str(exc.value) and f"{mode:04o}" in str(exc.value)


def test_missing_symlinked_and_garbage_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        Signer.load(tmp_path / "none.pem")
    generate_key_file(tmp_path / "real.pem")
    (tmp_path / "link.pem").symlink_to(tmp_path / "real.pem")
    with pytest.raises(KeyFileError, match=r"link\.pem"):
        Signer.load(tmp_path / "link.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match=r"bad\.pem"):
        Signer.load(bad)


def test_signatures_verify_only_with_the_signing_key(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "a.pem")
    a = Signer.load(tmp_path / "a.pem")
    b_fp = generate_key_file(tmp_path / "b.pem")
    trusted = TrustedKeys()
    trusted.add(a.public_key)
    sig = a.sign(b"record")
    assert trusted.verify(a.fingerprint, sig, b"record")
    assert not trusted.verify(a.fingerprint, sig, b"recorD")
    assert not trusted.verify(b_fp, sig, b"record")  # unknown key


def test_rotation_keeps_the_old_public_key_trusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, folder = tmp_path / "signing.pem", tmp_path / "trusted"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[evidence]\nsigning_key = "{key}"\ntrusted_keys = "{folder}"\n')
    assert main(["--config", str(cfg), "evidence", "keygen"]) == 0
    old = Signer.load(key)
    old_sig = old.sign(b"call 1")
    assert main(["--config", str(cfg), "evidence", "rotate"]) == 0
    new = Signer.load(key)
    assert new.fingerprint != old.fingerprint
    from callproof.evidence.keys import trusted_from_config
    trusted = trusted_from_config(load_config(cfg, env={}, require_asterisk_apis=False))
    assert set(trusted.fingerprints()) == {old.fingerprint, new.fingerprint}
    assert trusted.verify(old.fingerprint, old_sig, b"call 1")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_public_key_command_prints_pem_and_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fp = generate_key_file(tmp_path / "k.pem")
    capsys.readouterr()
    assert main(["evidence", "public-key", "--key", str(tmp_path / "k.pem")]) == 0
    out = capsys.readouterr().out
    pem = out[: out.index("-----END PUBLIC KEY-----") + len("-----END PUBLIC KEY-----\n")]
    from callproof.evidence.keys import fingerprint
    assert fingerprint(load_public_pem(pem.encode(), "stdout")) == fp
    assert f"fingerprint {fp}" in out
    assert "PRIVATE" not in out


def test_public_key_command_refuses_a_readable_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_key_file(tmp_path / "k.pem")
    os.chmod(tmp_path / "k.pem", 0o644)
    assert main(["evidence", "public-key", "--key", str(tmp_path / "k.pem")]) == 1
    assert "k.pem" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "key"), [
    ('[evidence]\nsigning_key = "relative.pem"', "evidence.signing_key"),
    ('[evidence]\ntrusted_keys = "keys"', "evidence.trusted_keys"),
    ('[audit]\ncheckpoint_interval_seconds = nan', "audit.checkpoint_interval_seconds"),
    ('[audit]\ncheckpoint_interval_seconds = 0', "audit.checkpoint_interval_seconds"),
    ('[audit]\ncheckpoint_file = "/var/log/cp.jsonl"', "audit.checkpoint_file"),
    ('[evidence]\nsigning_key = "/k.pem"\n[audit]\ntsa_url = "ftp://tsa"', "audit.tsa_url"),
    ('[evidence]\nsigning_key = "/k.pem"\n[audit]\ntsa_url = "http://tsa.example/"', "audit.tsa_ca_file"),
    ('[evidence]\nnope = 1', "evidence.nope"),
])
def test_bad_evidence_and_audit_keys_are_named(tmp_path: Path, text: str, key: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p, env={}, require_asterisk_apis=False)
    assert key in str(exc.value)
