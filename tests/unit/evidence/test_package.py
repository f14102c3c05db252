"""The evidence package: exported with the CLI, verified offline in a fresh process with no
configuration and no database; any changed member, or another key, fails it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from callproof.config import AuditConfig
from callproof.evidence.checkpoints import anchor_once
from callproof.evidence.keys import Signer, generate_key_file
from callproof.storage import connect_sync
from tests.peers.tsa import LocalTsa

from .test_checkpoints import cli
from .world import finalised_call, signed_config


def offline_verify(package: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``callproof evidence verify`` as a recipient runs it: its own process, no config, no
    database, another folder, no callproof environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPROOF")}
    env["HOME"] = str(cwd)
    return subprocess.run([sys.executable, "-m", "callproof.cli", "evidence", "verify", str(package), *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False)


def rewrite_member(package: Path, name: str, change) -> Path:
    out = package.with_name("changed-" + package.name)
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, change(data) if info.filename == name else data)
    return out


@pytest.fixture
def package(tmp_path: Path):
    with LocalTsa() as tsa:
        config = signed_config(tmp_path, checkpoints=True)
        config = dataclasses.replace(config, audit=AuditConfig(
            checkpoint_file=config.audit.checkpoint_file, tsa_url=tsa.url, tsa_ca_file=tsa.ca_file))
        rec = finalised_call(config)
        assert anchor_once(config)
        out = tmp_path / "evidence.zip"
        assert cli(config, tmp_path, "evidence", "export", rec["protocol"], "--out", str(out), "--chain") == 0
        yield config, rec, out


def test_a_package_verifies_offline_with_the_published_fingerprint(package, tmp_path: Path) -> None:
    config, rec, out = package
    fp = Signer.load(config.evidence.signing_key).fingerprint
    names = set(zipfile.ZipFile(out).namelist())
    assert {"recording.wav", "record.json", "record.sig", f"keys/{fp}.pem", "audit.json", "checkpoint.json",
            "tsa-ca.pem", "chain.json", "manifest.json", "README.txt"} <= names
    elsewhere = tmp_path / "recipient"
    elsewhere.mkdir()
    done = offline_verify(out, "--key", fp, cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout and f"recording of protocol {rec['protocol']}" in done.stdout
    assert "timestamped" in done.stdout and "in the chain up to the checkpoint" in done.stdout
    conn = connect_sync(config.storage.database)
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'evidence.exported'").fetchone()[0] == 1


@pytest.mark.parametrize("member", ["recording.wav", "record.json", "audit.json", "checkpoint.json"])
def test_a_changed_member_fails(package, tmp_path: Path, member: str) -> None:
    _, _, out = package

    def flip(data: bytes) -> bytes:
        i = len(data) // 2
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]

    done = offline_verify(rewrite_member(out, member, flip), cwd=tmp_path)
    assert done.returncode == 1 and "DOES NOT VERIFY" in done.stdout and member in done.stdout


def test_verifying_streams_the_recording_member_instead_of_reading_it_whole(package, monkeypatch) -> None:
    """A 3-hour recording is ~170 MB in the package: the verifier hashes it as it streams
    out of the zip; only the small documents are read whole."""
    from callproof.evidence.package import verify_package
    config, rec, out = package
    whole = zipfile.ZipFile.read

    def read(self, name, pwd=None):
        assert not str(name).startswith("recording."), f"{name} read whole"
        return whole(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", read)
    ok, notes = verify_package(out, Signer.load(config.evidence.signing_key).fingerprint)
    assert ok, notes
    assert any(f"recording of protocol {rec['protocol']}" in n for n in notes)


def test_another_key_than_the_published_one_fails(package, tmp_path: Path) -> None:
    _, _, out = package
    generate_key_file(tmp_path / "o.pem")
    other = Signer.load(tmp_path / "o.pem")
    done = offline_verify(out, "--key", other.fingerprint, cwd=tmp_path)
    assert done.returncode == 1 and "not the expected" in done.stdout


def test_a_forged_recording_is_never_packaged(package, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, rec, _ = package
    data = bytearray(rec["path"].read_bytes())
    data[-1] ^= 0xFF
    rec["path"].write_bytes(bytes(data))
    capsys.readouterr()
    assert cli(config, tmp_path, "evidence", "export", rec["protocol"], "--out", str(tmp_path / "x.zip")) == 1
    assert "does not match its signed record" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def _rewrite_with_manifest(package: Path, name: str, change) -> Path:
    """Change a member and recompute the (unsigned) manifest, as a forger would."""
    import hashlib
    import json

    out = package.with_name("forged-" + package.name)
    with zipfile.ZipFile(package) as src:
        members = {n: src.read(n) for n in src.namelist()}
    members[name] = change(members[name])
    manifest = json.loads(members["manifest.json"])
    manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items() if n != "manifest.json"}
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w") as dst:
        for n, d in members.items():
            dst.writestr(n, d)
    return out


@pytest.fixture
def default_package(tmp_path: Path):
    """Two calls, one checkpoint after both, the first call's package exported WITHOUT --chain."""
    config = signed_config(tmp_path, checkpoints=True)
    first = finalised_call(config, channel="ch-1")
    second = finalised_call(config, channel="ch-2")
    assert anchor_once(config)
    out = tmp_path / "evidence.zip"
    assert cli(config, tmp_path, "evidence", "export", first["protocol"], "--out", str(out)) == 0
    return config, first, second, out


def test_a_default_package_proves_the_chain_without_other_calls_entries(default_package, tmp_path: Path) -> None:
    _, _, second, out = default_package
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        everything = b"".join(zf.read(n) for n in names)
    assert "chain_proof.json" in names and "chain.json" not in names
    assert second["protocol"].encode() not in everything  # nothing of the other customer's call
    assert str(second["path"].name).encode() not in everything
    done = offline_verify(out, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "are in the chain the checkpoint signed (Merkle proof" in done.stdout


def test_a_rewritten_entry_with_its_hash_and_the_manifest_recomputed_fails(default_package, tmp_path: Path) -> None:
    """What the entries' own hashes cannot catch (the hash is public): the Merkle proof against
    the signed root does."""
    import json

    from callproof.storage.audit import entry_hash

    _, _, _, out = default_package

    def rewrite(data: bytes) -> bytes:
        entries = json.loads(data)
        e = next(e for e in entries if e["action"] == "recording.finalised")
        assert '"duration_ms":1000' in e["details"]
        e["details"] = e["details"].replace('"duration_ms":1000', '"duration_ms":9000')
        e["hash"] = entry_hash(e["prev_hash"], e)
        return json.dumps(entries).encode()

    done = offline_verify(_rewrite_with_manifest(out, "audit.json", rewrite), cwd=tmp_path)
    assert done.returncode == 1 and "not in the chain the checkpoint signed" in done.stdout, done.stdout


def test_a_package_without_a_chain_proof_still_verifies_and_says_so(default_package, tmp_path: Path) -> None:
    """Packages made before checkpoints carried a Merkle root have none: still verifiable."""
    _, _, _, out = default_package
    import json

    with zipfile.ZipFile(out) as src:
        members = {n: src.read(n) for n in src.namelist() if n != "chain_proof.json"}
    manifest = json.loads(members["manifest.json"])
    del manifest["files"]["chain_proof.json"]
    members["manifest.json"] = json.dumps(manifest).encode()
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as dst:
        for n, d in members.items():
            dst.writestr(n, d)
    done = offline_verify(old, cwd=tmp_path)
    assert done.returncode == 0 and "note: no chain proof" in done.stdout, done.stdout
