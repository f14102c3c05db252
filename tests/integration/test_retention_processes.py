"""The sweeper as real processes on real files and a real SQLite file (no
Asterisk needed): SIGKILL at random points over many runs then a clean run,
two sweepers at once, a stale lock, and the CLI's verify commands."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callproof.storage import connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.holds import open_request_sync, place_hold_sync
from tests.retention_helpers import Builder

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "CALLPROOF_ARI_PASSWORD": "integration-ari-secret",
       "CALLPROOF_AMI_PASSWORD": "integration-ami-secret", "PYTHONPATH": str(REPO)}
ENV.pop("CALLPROOF_CONFIG", None)
NOW = datetime.now(UTC)


def setup_tree(tmp: Path, n: int, batch: int = 7) -> tuple[Path, Path, dict]:
    root, db = tmp / "rec", tmp / "cp.db"
    root.mkdir()
    cfg = tmp / "callproof.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n[recording]\nroot = "{root}"\n'
                   f'[retention]\nbatch_size = {batch}\nlock_file = "{tmp / "sweep.lock"}"\n')
    groups: dict = {"held": [], "live": []}
    add_recordings(db, root, n, groups)
    return cfg, db, groups


def add_recordings(db: Path, root: Path, n: int, groups: dict) -> None:
    """n more recordings: one in ten not expired, about one in seventeen held
    (half by a legal hold, half by an open customer request)."""
    conn = connect_sync(db)
    b = Builder(conn, root)
    held = []
    conn.execute("BEGIN")
    for i in range(n):
        age = 100 if i % 10 else 30
        r = b.add(NOW - timedelta(days=age, minutes=i), content=b"audio-%d" % i)
        if i % 10 == 0:
            groups["live"].append(r)
        elif i % 17 == 0:
            held.append(r)
    conn.execute("COMMIT")
    for k, r in enumerate(held):
        if k % 2:
            place_hold_sync(conn, "protocol", protocol=r["protocol"], reason="court", placed_by="t", at=NOW)
        else:
            open_request_sync(conn, r["protocol"], at=NOW, reference="req")
    groups["held"] += held
    conn.close()


def cli(cfg: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "callproof.cli", "--config", str(cfg), *args],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def check_consistent(db: Path, groups: dict) -> dict:
    conn = connect_sync(db)
    try:
        rows = conn.execute("SELECT id, path, state, sweep_mark FROM recordings").fetchall()
        for rid, path, state, mark in rows:
            exists = os.path.lexists(path)
            assert (state == "deleted") == (not exists), (rid, state, exists)
            assert state in ("finalised", "deleted"), (rid, state)
            assert mark is None or state == "deleted", (rid, mark)
        for r in groups["held"] + groups["live"]:
            assert os.path.exists(r["path"])
        deleted = {f"recording:{rid}" for rid, _, state, _ in rows if state == "deleted"}
        subjects = [s for (s,) in conn.execute(
            "SELECT subject FROM audit_log WHERE action = 'recording.deleted'")]
        assert len(subjects) == len(set(subjects)), "a deletion was audited twice"
        assert set(subjects) == deleted, "row/audit disagreement"
        assert verify_chain_sync(conn) is None
        return {"deleted": len(deleted), "rows": len(rows)}
    finally:
        conn.close()


def test_sigkill_at_random_points_then_clean_run(tmp_path):
    cfg, db, groups = setup_tree(tmp_path, 600)
    rng = random.Random(int(os.environ.get("RETENTION_KILL_SEED", "4")))
    kills = 0
    for _ in range(25):
        p = cli(cfg, "retention", "sweep", "--json")
        time.sleep(rng.uniform(0.1, 0.8))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
            p.communicate(timeout=60)
        else:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
        conn = connect_sync(db)
        marked = conn.execute("SELECT count(*) FROM recordings WHERE sweep_mark IS NOT NULL"
                              " AND state <> 'deleted'").fetchone()[0]
        conn.close()
        assert marked <= 14  # at most two batches in flight: the next run owns them
        add_recordings(db, tmp_path / "rec", 60, groups)  # every run has work to be killed in
    assert kills >= 5, "the sweeps finished too fast for the kills to land; add recordings"
    p = cli(cfg, "retention", "sweep", "--json")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["type"] == "summary" and summary["errors"] == 0
    result = check_consistent(db, groups)
    assert result["deleted"] == result["rows"] - len(groups["live"]) - len(groups["held"])


def test_two_sweepers_and_stale_lock(tmp_path):
    cfg, db, groups = setup_tree(tmp_path, 300)
    lock = tmp_path / "sweep.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from callproof.retention import sweep_lock\n"
         "with sweep_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(60)\n",
         str(lock)], cwd=REPO, env=ENV, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        p = cli(cfg, "retention", "sweep")
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 75
        assert b"another retention sweep is running" in err and f"pid {holder.pid}".encode() in err
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: a stale lock file remains
        holder.wait()
    assert lock.exists()
    # two started together: both finish, neither corrupts the other's work
    a, b = cli(cfg, "retention", "sweep", "--json"), cli(cfg, "retention", "sweep", "--json")
    (_, ea), (_, eb) = a.communicate(timeout=120), b.communicate(timeout=120)
    ra, rb = a.returncode, b.returncode
    assert sorted((ra, rb)) in ([0, 0], [0, 75]), (ea, eb)
    if 75 in (ra, rb):
        assert b"another retention sweep is running" in (ea if ra == 75 else eb)
    check_consistent(db, groups)


def test_cli_dry_run_hold_and_verify(tmp_path):
    cfg, db, groups = setup_tree(tmp_path, 40, batch=5)
    p = cli(cfg, "retention", "sweep", "--dry-run")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.count(b"would_delete") == 40 - len(groups["live"]) - len(groups["held"])
    assert b"(dry run)" in out
    conn = connect_sync(db)
    victim = conn.execute("SELECT protocol, path FROM recordings WHERE state = 'finalised'"
                          " ORDER BY id LIMIT 1").fetchone()
    conn.close()
    p = cli(cfg, "hold", "place", "--protocol", victim[0], "--reason", "case 42", "--by", "ana")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and b"hold" in out, err
    p = cli(cfg, "hold", "list", "--json")
    holds = json.loads(p.communicate(timeout=60)[0])
    assert any(h["protocol"] == victim[0] and h["placed_by"] == "ana" for h in holds)
    p = cli(cfg, "hold", "place", "--caller", "not a number", "--reason", "x")
    assert p.wait(timeout=60) == 2 and b"not a valid phone number" in p.stderr.read()

    p = cli(cfg, "recording", "verify")  # these rows have no signed record (tests/unit/evidence has them)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1 and b"MISMATCH 0" in out and b"UNSIGNED" in out
    p = cli(cfg, "recording", "verify", "--allow-unsigned")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and b"MISMATCH 0" in out
    with open(victim[1], "ab") as fh:
        fh.write(b"tampered")
    p = cli(cfg, "recording", "verify", victim[0], "--allow-unsigned")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1 and b"MISMATCH  recording" in out and b"MISMATCH 1" in out

    p = cli(cfg, "audit", "verify")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and b"intact" in out
    conn = connect_sync(db)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET details = '{}' WHERE id = 1")
    conn.close()
    p = cli(cfg, "audit", "verify")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1 and b"entry 1: its link or hash does not match" in out
