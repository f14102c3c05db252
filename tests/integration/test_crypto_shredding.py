"""Crypto-shredding end to end (docs/keys.md): real files, a real SQLite file, the real
``callproof`` CLI as processes and Debian's ``age`` as the independent decryptor.

Recordings of two periods whose months are over are encrypted to their period keys and
copied aside ("the backup"); one is put under a legal hold.  ``callproof retention sweep``
deletes the expired ones and then destroys the two period keys, having re-wrapped the held
recording to the hold key.  Then no backup copy opens with any private key callproof still
holds (each tried with ``age -d -i``), the held recording still opens (``age -d`` and
callproof), a recording of a period not over is untouched, and the audit log records it all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callproof.config import load_config
from callproof.encryption import decrypt, encrypt
from callproof.encryption.keyring import PrivateKeyring, PublicKeyring, month_of
from callproof.encryption.keystore import create_key, export_public
from callproof.storage import connect_sync
from callproof.storage import recordings as recordings_store
from callproof.storage.audit import verify_chain_sync
from callproof.storage.holds import place_hold_sync
from tests.retention_helpers import Builder

from .age_tool import age_binaries

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("CALLPROOF_CONFIG", None)
NOW = datetime.now(UTC)
CLS = "consumer_service"


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(cfg), *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _encrypted(b: Builder, conn, public: PublicKeyring, until: datetime, content: bytes) -> dict:
    """A finalised recording encrypted to its period key as finalisation leaves it."""
    rec = b.add(until - timedelta(days=90), until=until, cls=CLS, content=content)
    key_id = f"{CLS}-{month_of(until)}"
    plain, sealed = Path(rec["path"]), Path(rec["path"] + ".age")
    with plain.open("rb") as src, sealed.open("wb") as dst:
        digests = encrypt(src, dst, [public.recipient(key_id)])
    sealed.chmod(0o640)
    plain.unlink()
    recordings_store.mark_encrypted_sync(conn, rec["id"], age_path=str(sealed),
                                         ciphertext_sha256=digests.ciphertext_sha256,
                                         ciphertext_size=digests.ciphertext_size,
                                         payload_sha256=digests.payload_sha256, key_ids=(key_id,))
    conn.commit()
    return {**rec, "age_path": sealed, "key_id": key_id, "plaintext_sha256": _sha(content)}


def _age_opens(age: str, key_file: Path, sealed: Path) -> str | None:
    result = subprocess.run([age, "-d", "-i", str(key_file), str(sealed)], capture_output=True, timeout=120)
    return _sha(result.stdout) if result.returncode == 0 else None


def test_backups_of_shredded_periods_open_with_nothing_callproof_holds(tmp_path: Path) -> None:
    age, _ = age_binaries()
    root, db = tmp_path / "rec", tmp_path / "cp.db"
    root.mkdir()
    private_dir, public_dir = tmp_path / "keys" / "private", tmp_path / "pbx" / "public"
    cfg = tmp_path / "callproof.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n[recording]\nroot = "{root}"\n'
                   f'[retention]\nlock_file = "{tmp_path / "sweep.lock"}"\n'
                   f'[encryption]\nenabled = true\npublic_keys_dir = "{public_dir}"\n'
                   f'private_keys_dir = "{private_dir}"\nmonths_ahead = 3\ndestroy_margin_days = 7\n')
    cfg.chmod(0o600)
    init = _cli(cfg, "keys", "init", "--by", "ops")
    assert init.returncode == 0, init.stderr

    # Two periods whose months ended more than the 7-day margin ago, their keys made back then.
    until_old, until_older = NOW - timedelta(days=40), NOW - timedelta(days=75)
    periods = sorted({f"{CLS}-{month_of(until_old)}", f"{CLS}-{month_of(until_older)}"})
    assert len(periods) == 2
    made = {k: create_key(private_dir, k) for k in periods}
    export_public(private_dir, public_dir)
    public = PublicKeyring.from_dir(public_dir)  # the PBX side: public keys only

    conn = connect_sync(db)
    b = Builder(conn, root)
    recs = [_encrypted(b, conn, public, until, os.urandom(200_000) + bytes([i]))
            for i, until in enumerate([until_old, until_old, until_older, until_older])]
    held = recs[0]
    live = _encrypted(b, conn, public, NOW + timedelta(days=90), os.urandom(50_000))
    place_hold_sync(conn, "protocol", protocol=held["protocol"], reason="lawsuit 2026/123", placed_by="legal",
                    at=NOW)
    conn.close()

    backup = tmp_path / "backup"
    backup.mkdir()
    copies = []
    for r in recs:
        copy = backup / r["age_path"].name
        shutil.copy2(r["age_path"], copy)
        copies.append(copy)
        # before the sweep, the backup copy opens with its period key: the test can tell
        assert _age_opens(age, private_dir / f"{r['key_id']}.key", copy) == r["plaintext_sha256"]

    sweep = _cli(cfg, "retention", "sweep")
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    for key_id in periods:
        assert f"  key {key_id}: destroyed" in sweep.stdout
    again = _cli(cfg, "keys", "destroy-expired", "--by", "ops")
    assert again.returncode == 0 and "no key is due" in again.stdout, again.stdout + again.stderr

    # the expired recordings are gone, their period keys too
    assert [r["age_path"].exists() for r in recs] == [True, False, False, False]
    remaining = sorted(private_dir.glob("*.key"))
    assert remaining and not any((private_dir / f"{k}.key").exists() for k in periods)
    assert not any((public_dir / f"{k}.pub").exists() for k in periods)

    # every backup copy fails age -d with every private key callproof still holds
    for copy in copies:
        for key_file in remaining:
            assert _age_opens(age, key_file, copy) is None, f"{copy.name} opened with {key_file.name}"

    # the held recording still opens: with the hold key, by age and by callproof
    assert _age_opens(age, private_dir / "hold-1.key", held["age_path"]) == held["plaintext_sha256"]
    keyring = PrivateKeyring.load(load_config(cfg, env={}, require_asterisk_apis=False))
    with held["age_path"].open("rb") as src:
        assert decrypt(src, io.BytesIO(), keyring.identities()).plaintext_sha256 == held["plaintext_sha256"]
    # a recording of a period not over is untouched
    assert _age_opens(age, private_dir / f"{live['key_id']}.key", live["age_path"]) == live["plaintext_sha256"]

    listing = _cli(cfg, "keys", "list")
    for key_id in periods:
        line = next(x for x in listing.stdout.splitlines() if x.startswith(key_id + " "))
        assert "destroyed" in line and made[key_id].recipient.fingerprint in line

    conn = connect_sync(db)
    try:
        assert verify_chain_sync(conn) is None
        destroyed = {json.loads(d)["key_id"]: (json.loads(d), actor) for d, actor in conn.execute(
            "SELECT details, actor FROM audit_log WHERE action = 'keys.destroyed'")}
        assert sorted(destroyed) == periods
        for key_id in periods:
            details, actor = destroyed[key_id]
            assert details["fingerprint"] == made[key_id].recipient.fingerprint and actor == "retention"
        assert destroyed[held["key_id"]][0]["rewrapped"] == 1
        [(subject, details)] = conn.execute(
            "SELECT subject, details FROM audit_log WHERE action = 'recording.rewrapped'").fetchall()
        assert subject == f"recording:{held['id']}" and json.loads(details)["to_keys"] == "hold-1"
        row = conn.execute("SELECT key_ids, state FROM recordings WHERE id = ?", (held["id"],)).fetchone()
        assert tuple(row) == ("hold-1", "finalised")
        secrets = [p.read_text() for p in remaining]
        log = "\n".join(str(r) for r in conn.execute("SELECT details FROM audit_log"))
        assert not any(s.strip().splitlines()[-1] in log for s in secrets)
    finally:
        conn.close()
