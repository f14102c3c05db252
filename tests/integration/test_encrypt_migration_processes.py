"""``callproof recording encrypt`` as real processes on real files and a real SQLite file (no
Asterisk needed): SIGKILL at random points (after a random number of recordings, plus a random moment) over
many runs, then a clean run.  After every
kill each recording still has a readable file (its plaintext, or its age file once the row
says encrypted) and no row says encrypted without its audit entry; the clean run leaves
every recording encrypted, no plaintext and no stray age file behind, each file decrypting
to the sha256 it was finalised with, and the audit chain intact."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callproof.config import load_config
from callproof.encryption import decrypt
from callproof.encryption.keyring import PrivateKeyring
from callproof.storage import connect_sync
from callproof.storage.audit import append_sync, verify_chain_sync
from tests.retention_helpers import Builder

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("CALLPROOF_CONFIG", None)
NOW = datetime.now(UTC)


def setup(tmp: Path, n: int) -> tuple[Path, Path, dict[int, str]]:
    root, db = tmp / "rec", tmp / "cp.db"
    root.mkdir()
    cfg = tmp / "callproof.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n[recording]\nroot = "{root}"\n'
                   f'[encryption]\nenabled = true\npublic_keys_dir = "{tmp / "keys" / "public"}"\n'
                   f'private_keys_dir = "{tmp / "keys" / "private"}"\nmonths_ahead = 6\n')
    cfg.chmod(0o600)
    done = _run(cfg, "keys", "init", "--by", "ops")
    assert done.returncode == 0, done.stderr
    return cfg, db, add(db, root, n)


def add(db: Path, root: Path, n: int, rng: random.Random | None = None) -> dict[int, str]:
    """n plaintext recordings (finalised before encryption was on: unsigned, their sha256 in
    the recording.finalised audit entry as finalisation writes it)."""
    rng = rng or random.Random(n)
    conn = connect_sync(db)
    b = Builder(conn, root)
    made = {}
    for i in range(n):
        content = b"RIFF" + rng.randbytes(rng.randint(20_000, 300_000))
        r = b.add(NOW - timedelta(days=10, minutes=i), content=content)
        append_sync(conn, "recording.finalised", "callproof", NOW, protocol=r["protocol"], subject=r["path"],
                    details={"sha256": r["sha256"], "size_bytes": len(content)})
        made[r["id"]] = r["sha256"]
    conn.close()
    return made


def _run(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(cfg), *args], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=300)


def _start(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "callproof.cli", "--config", str(cfg), "recording", "encrypt",
                             "--json"], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def check_readable(db: Path) -> dict[str, int]:
    """Every recording has its file; no row says encrypted without its audit entry."""
    conn = connect_sync(db)
    try:
        rows = conn.execute("SELECT id, path, encryption, age_path FROM recordings").fetchall()
        audited = [s for (s,) in conn.execute("SELECT subject FROM audit_log WHERE action = 'recording.encrypted'")]
        assert len(audited) == len(set(audited)), "a recording's encryption was audited twice"
        counts = {"encrypted": 0, "plaintext": 0}
        for rid, path, encryption, age_path in rows:
            if encryption == "encrypted":
                assert os.path.exists(age_path), (rid, "row says encrypted, no age file")
                assert f"recording:{rid}" in audited, (rid, "encrypted without its audit entry")
                counts["encrypted"] += 1
            else:
                assert os.path.exists(path), (rid, "plaintext gone before the row said encrypted")
                counts["plaintext"] += 1
        assert verify_chain_sync(conn) is None
        return counts
    finally:
        conn.close()


def test_sigkill_at_random_points_then_clean_run(tmp_path):
    cfg, db, made = setup(tmp_path, 300)
    rng = random.Random(int(os.environ.get("ENCRYPT_KILL_SEED", "13")))
    kills = 0
    for round_ in range(20):
        p = _start(cfg)
        # killed after a random number of recordings (their JSON lines come as each is done),
        # then a random moment more: between two recordings, or inside one (encrypting, fsyncing,
        # in the transaction, unlinking)
        for _ in range(rng.randint(0, 60)):
            if not p.stdout.readline():
                break
        time.sleep(rng.uniform(0, 0.03))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
            p.communicate(timeout=60)
        else:
            _out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
        check_readable(db)
        made.update(add(db, tmp_path / "rec", 40, random.Random(1000 + round_)))  # work for the next kill
    assert kills >= 15, "the runs finished before the kills landed"
    # a killed run may leave an age file no row names; a clean run removes it once it is old enough
    from callproof.encryption import migration
    past = time.time() - migration.STRAY_AGE_SECONDS - 60
    for stray in (tmp_path / "rec").rglob("*.age"):
        os.utime(stray, (past, past))
    p = _start(cfg)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["type"] == "summary" and summary["mismatch"] == summary["error"] == 0
    counts = check_readable(db)
    assert counts == {"encrypted": len(made), "plaintext": 0}
    assert not list((tmp_path / "rec").rglob("*.wav")), "plaintext left behind"
    config = load_config(cfg, env={}, require_asterisk_apis=False)
    identities = PrivateKeyring.load(config).identities()
    conn = connect_sync(db)
    try:
        for rid, age_path in conn.execute("SELECT id, age_path FROM recordings"):
            out_buf = io.BytesIO()
            with open(age_path, "rb") as fh:
                digests = decrypt(fh, out_buf, identities)
            assert digests.plaintext_sha256 == made[rid] == hashlib.sha256(out_buf.getvalue()).hexdigest()
        ages = {str(p) for p in (tmp_path / "rec").rglob("*.age")}
        assert ages == {a for (a,) in conn.execute("SELECT age_path FROM recordings")}, "stray age files"
    finally:
        conn.close()
    done = _run(cfg, "recording", "verify", "--allow-unsigned")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"recordings verified: {len(made)}" in done.stdout and "MISMATCH 0" in done.stdout
