"""The sweeper on real files and a real database, SQLite and PostgreSQL (no Asterisk): expiry
boundaries, holds by each selector, open requests + grace, missing files,
orphans, symlinks, '..', permission errors, call-record anonymisation,
dry run, and the verify commands' tamper detection."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callproof.integrity import verify_recordings
from callproof.retention import SafeTree, Sweeper, SweepLocked, UnsafePath, sweep_lock
from callproof.retention.policy import retention_until
from callproof.storage import connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.holds import (
    close_request_sync,
    list_holds_sync,
    open_request_sync,
    place_hold_sync,
    release_hold_sync,
)
from tests.engines import drop_trigger
from tests.retention_helpers import Builder, audit_actions, states

SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path, target):
    """A recordings folder and the database, SQLite or PostgreSQL (tests/conftest.py)."""
    root = tmp_path / "rec"
    root.mkdir()
    conn = connect_sync(target)
    b = Builder(conn, root)
    yield conn, b, root
    conn.close()


def sweeper(conn, root, now=NOW, **kw):
    items = []
    sw = Sweeper(conn, root=root, tz=SP, now=lambda: now, report=items.append, batch_size=3, **kw)
    sw.items = items
    return sw


def test_boundaries_89_90_91_and_mobile_179_180_181(env):
    conn, b, root = env
    recs = {}
    for cls, days in (("consumer_service", 90), ("mobile_telecom", 180)):
        for age in (days - 1, days, days + 1):
            start = NOW - timedelta(days=age)
            recs[(cls, age)] = b.add(start, cls=cls, until=retention_until(start, days, SP))
    s = sweeper(conn, root).sweep()
    st = states(conn)
    for (cls, age), r in recs.items():
        days = 90 if cls == "consumer_service" else 180
        gone = age >= days  # the last day of retention ends exactly at retention_until
        assert st[r["id"]] == ("deleted" if gone else "finalised"), (cls, age)
        assert os.path.exists(r["path"]) is not gone
    assert s.deleted == 4 and s.errors == 0 and s.bytes_freed == 4 * len(b"RIFF-test-audio")
    entries = audit_actions(conn, "recording.deleted")
    assert len(entries) == 4
    details = json.loads(entries[0][2])
    assert {"path", "sha256", "reason", "policy", "retention_until"} <= set(details)
    assert verify_chain_sync(conn) is None
    # a second run does nothing
    s2 = sweeper(conn, root).sweep()
    assert s2.deleted == 0 and len(audit_actions(conn, "recording.deleted")) == 4


def test_holds_by_each_selector(env):
    conn, b, root = env
    old = NOW - timedelta(days=200)
    by_protocol = b.add(old)
    by_caller = b.add(old, caller="+5521998887777")
    by_range = b.add(datetime(2026, 1, 15, 12, tzinfo=UTC))
    free = b.add(old, caller="+5531911112222")
    place_hold_sync(conn, "protocol", protocol=by_protocol["protocol"], reason="case 1", placed_by="ana", at=NOW)
    place_hold_sync(conn, "caller", caller_number="+5521998887777", reason="case 2", placed_by="bob", at=NOW)
    h3 = place_hold_sync(conn, "date_range", from_at="2026-01-15T00:00:00Z", to_at="2026-01-16T00:00:00Z",
                         reason="audit", placed_by="carla", at=NOW)
    s = sweeper(conn, root).sweep()
    st = states(conn)
    assert [st[r["id"]] for r in (by_protocol, by_caller, by_range, free)] == [
        "finalised", "finalised", "finalised", "deleted"]
    assert s.held == 3 and s.deleted == 1
    assert all(os.path.exists(r["path"]) for r in (by_protocol, by_caller, by_range))
    assert len(audit_actions(conn, "hold.placed")) == 3
    # release one: the next sweep takes it
    release_hold_sync(conn, h3, released_by="carla", reason="audit closed", at=NOW)
    assert [h["id"] for h in list_holds_sync(conn)] == [1, 2]
    sweeper(conn, root).sweep()
    assert states(conn)[by_range["id"]] == "deleted"
    assert len(audit_actions(conn, "hold.released")) == 1


def test_hold_validation(env):
    conn, _, _ = env
    with pytest.raises(ValueError, match="17 digits"):
        place_hold_sync(conn, "protocol", protocol="123", reason="x", placed_by="a", at=NOW)
    with pytest.raises(ValueError, match=r"E\.164"):
        place_hold_sync(conn, "caller", caller_number="11 9999", reason="x", placed_by="a", at=NOW)
    with pytest.raises(ValueError, match="empty"):
        place_hold_sync(conn, "date_range", from_at=NOW, to_at=NOW, reason="x", placed_by="a", at=NOW)
    with pytest.raises(ValueError, match="reason"):
        place_hold_sync(conn, "protocol", protocol="2026" + "1" * 13, reason=" ", placed_by="a", at=NOW)


def test_open_request_holds_until_closed_plus_grace(env):
    conn, b, root = env
    r = b.add(NOW - timedelta(days=100))
    req = open_request_sync(conn, r["protocol"], at=NOW - timedelta(days=95), reference="REQ-1")
    sweeper(conn, root, request_grace_days=30).sweep()
    assert states(conn)[r["id"]] == "finalised"
    close_request_sync(conn, req, at=NOW - timedelta(days=10))
    sweeper(conn, root, request_grace_days=30).sweep()
    assert states(conn)[r["id"]] == "finalised"  # inside the 30-day grace
    sweeper(conn, root, now=NOW + timedelta(days=20, seconds=1), request_grace_days=30).sweep()
    assert states(conn)[r["id"]] == "deleted"


def test_missing_file_flagged_and_audited(env):
    conn, b, root = env
    expired = b.add(NOW - timedelta(days=100), with_file=False)
    live = b.add(NOW - timedelta(days=10))
    os.unlink(live["path"])
    s = sweeper(conn, root).sweep()
    st = states(conn)
    assert st[expired["id"]] == "missing" and st[live["id"]] == "missing"
    assert s.missing == 2 and s.deleted == 0
    assert len(audit_actions(conn, "recording.missing")) == 2
    sweeper(conn, root).sweep()
    assert len(audit_actions(conn, "recording.missing")) == 2


def test_symlinks_dotdot_and_outside_root_never_followed(env, tmp_path):
    conn, b, root = env
    outside = tmp_path / "precious"
    outside.mkdir()
    target = outside / "keep.wav"
    target.write_bytes(b"do not delete")
    # a row whose file is a symlink to a file outside the root
    r1 = b.add(NOW - timedelta(days=100), with_file=False, rel="2026/a/link.wav")
    os.makedirs(root / "2026/a")
    os.symlink(target, root / "2026/a/link.wav")
    # a row whose folder is a symlink pointing outside
    os.symlink(outside, root / "evil")
    r2 = b.add(NOW - timedelta(days=100), with_file=False, rel="evil/keep.wav")
    # rows with '..' and an absolute path elsewhere
    r3 = b.add(NOW - timedelta(days=100), with_file=False, rel="2026/../../precious/keep.wav")
    r4 = b.add(NOW - timedelta(days=100), with_file=False)
    conn.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(target), r4["id"]))
    s = sweeper(conn, root).sweep()
    assert target.read_bytes() == b"do not delete"
    assert os.path.islink(root / "2026/a/link.wav")
    st = states(conn)
    assert all(st[r["id"]] == "finalised" for r in (r1, r2, r3, r4))
    assert s.refused == 4 and s.deleted == 0
    assert len(audit_actions(conn, "recording.delete_refused")) == 4
    assert s.symlinks == 2  # both planted links reported by the scan


def test_orphans_reported_and_quarantined(env, tmp_path):
    conn, b, root = env
    b.add(NOW - timedelta(days=1))
    (root / "2026").mkdir(exist_ok=True)
    orphan = root / "2026" / "stray.wav"
    orphan.write_bytes(b"x" * 10)
    s = sweeper(conn, root).sweep(dry_run=False)
    assert s.orphans == 1 and orphan.exists() and s.quarantined == 0
    q = tmp_path / "quarantine"
    s = sweeper(conn, root, quarantine_dir=q).sweep()
    assert s.quarantined == 1 and not orphan.exists() and (q / "2026" / "stray.wav").exists()
    assert len(audit_actions(conn, "recording.orphan_quarantined")) == 1


def test_permission_error_is_reported_and_retried(env, monkeypatch):
    conn, b, root = env
    r = b.add(NOW - timedelta(days=100))
    real = os.unlink

    def deny(path, *a, **kw):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(os, "unlink", deny)
    s = sweeper(conn, root).sweep()
    assert s.errors == 1 and states(conn)[r["id"]] == "finalised"
    assert conn.execute("SELECT sweep_mark FROM recordings WHERE id = ?", (r["id"],)).fetchone()[0] is None
    monkeypatch.setattr(os, "unlink", real)
    s = sweeper(conn, root).sweep()
    assert s.deleted == 1 and not os.path.exists(r["path"])


def test_dry_run_changes_nothing(env):
    conn, b, root = env
    recs = [b.add(NOW - timedelta(days=100)) for _ in range(5)]
    head = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    sw = sweeper(conn, root)
    s = sw.sweep(dry_run=True)
    assert s.expired == 5 and s.deleted == 0
    assert [i["action"] for i in sw.items].count("would_delete") == 5
    assert all(os.path.exists(r["path"]) for r in recs)
    assert set(states(conn).values()) == {"finalised"}
    assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == head


def test_crash_after_mark_and_after_unlink_is_finished_next_run(env):
    conn, b, root = env
    a, c = b.add(NOW - timedelta(days=100)), b.add(NOW - timedelta(days=100))
    held = b.add(NOW - timedelta(days=100))
    conn.execute("UPDATE recordings SET sweep_mark = 'dead-run'")
    os.unlink(a["path"])  # killed after unlinking a, before recording it
    # a hold placed while the dead run had it marked: the hold wins
    place_hold_sync(conn, "protocol", protocol=held["protocol"], reason="r", placed_by="p", at=NOW)
    s = sweeper(conn, root).sweep()
    st = states(conn)
    assert st[a["id"]] == st[c["id"]] == "deleted" and st[held["id"]] == "finalised"
    assert os.path.exists(held["path"]) and s.recovered == 2
    assert len(audit_actions(conn, "recording.deleted")) == 2


def test_call_records_anonymised_after_two_years(env):
    conn, b, root = env
    old = b.add(NOW - timedelta(days=731), state="deleted", with_file=False)
    young = b.add(NOW - timedelta(days=700), state="deleted", with_file=False)
    held = b.add(NOW - timedelta(days=800), state="deleted", with_file=False)
    place_hold_sync(conn, "protocol", protocol=held["protocol"], reason="r", placed_by="p", at=NOW)
    s = sweeper(conn, root).sweep()
    assert s.calls_anonymised == 1 and s.calls_held == 1
    row = conn.execute("SELECT caller_number_raw, caller_number, caller_name, protocol, anonymised_at,"
                       " protocol_read_count, status FROM calls WHERE id = ?", (old["call_id"],)).fetchone()
    assert row[:3] == ("", None, None) and row[3] == old["protocol"] and row[4] is not None
    assert row[6] == "completed"
    assert conn.execute("SELECT caller_number FROM calls WHERE id = ?", (young["call_id"],)).fetchone()[0]
    assert conn.execute("SELECT caller_number FROM recordings WHERE call_id = ?",
                        (old["call_id"],)).fetchone()[0] is None
    assert len(audit_actions(conn, "call.anonymised")) == 1


def test_lock_refuses_second_holder(tmp_path):
    lock = tmp_path / "l"
    with sweep_lock(lock), pytest.raises(SweepLocked, match=f"pid {os.getpid()}"), sweep_lock(lock):
        pass
    with sweep_lock(lock):  # released: usable again
        pass


def test_safe_tree_parts(tmp_path):
    t = SafeTree(tmp_path)
    try:
        for bad in (str(tmp_path) + "/../x", "/etc/passwd", str(tmp_path) + "//x", str(tmp_path)):
            with pytest.raises(UnsafePath):
                t.parts(bad)
    finally:
        t.close()


def test_verify_detects_tampered_recording_and_audit_row(env):
    conn, b, root = env
    r1, r2 = b.add(NOW), b.add(NOW)
    # no signing key here: the files match the column, which proves nothing (tests/unit/evidence)
    assert [i["result"] for i in verify_recordings(conn, root)] == ["unsigned", "unsigned"]
    with open(r2["path"], "r+b") as fh:
        fh.write(b"X")
    res = {i["id"]: i["result"] for i in verify_recordings(conn, root)}
    assert res == {r1["id"]: "unsigned", r2["id"]: "mismatch"}
    assert [i["result"] for i in verify_recordings(conn, root, r1["protocol"])] == ["unsigned"]
    # audit: edit one row behind the triggers' back
    for n in range(3):
        place_hold_sync(conn, "protocol", protocol=r1["protocol"], reason=f"r{n}", placed_by="p", at=NOW)
    assert verify_chain_sync(conn) is None
    drop_trigger(conn, "audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    assert verify_chain_sync(conn) == 2


async def test_periodic_sweep_runs_in_a_thread_and_skips_when_locked(tmp_path):
    import asyncio
    from types import SimpleNamespace

    from callproof.retention import lock_path, periodic_sweep

    root = tmp_path / "rec"
    root.mkdir()
    conn = connect_sync(tmp_path / "cp.db")
    r = Builder(conn, root).add(datetime.now(UTC) - timedelta(days=100))
    conn.close()
    from callproof.config import RetentionConfig, StorageConfig
    config = SimpleNamespace(
        storage=StorageConfig(database=tmp_path / "cp.db", busy_timeout_ms=5000),
        recording=SimpleNamespace(root=root, store=None, node=""), general=SimpleNamespace(tz=SP),
        rights=SimpleNamespace(export_dir=tmp_path / "exports"),
        retention=RetentionConfig(sweep_interval_seconds=60, sweep_in_run=True))
    with sweep_lock(lock_path(config)):
        task = asyncio.ensure_future(periodic_sweep(config, first_delay=0))
        await asyncio.sleep(0.3)
        assert os.path.exists(r["path"])  # locked: skipped
        task.cancel()
    task = asyncio.ensure_future(periodic_sweep(config, first_delay=0))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not os.path.exists(r["path"]):
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not os.path.exists(r["path"])


def test_cli_date_range_hold_is_whole_local_days(tmp_path, capsys):
    from callproof.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\ndatabase = "{tmp_path / "cp.db"}"\n[recording]\nroot = "{tmp_path}"\n')
    env = {"CALLPROOF_ARI_PASSWORD": "a-long-ari-secret-1", "CALLPROOF_AMI_PASSWORD": "a-long-ami-secret-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["--config", str(cfg), "hold", "place", "--from", "2026-01-15", "--to", "2026-01-16",
                     "--reason", "inspection", "--by", "dpo"]) == 0
        assert main(["--config", str(cfg), "hold", "place", "--from", "2026-01-16", "--to", "2026-01-15",
                     "--reason", "x"]) == 2
        assert "empty" in capsys.readouterr().err
        assert main(["--config", str(cfg), "hold", "release", "1", "--reason", "done", "--by", "dpo"]) == 0
        assert main(["--config", str(cfg), "hold", "release", "1", "--reason", "again"]) == 1
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    conn = connect_sync(tmp_path / "cp.db")
    (h,) = list_holds_sync(conn, include_released=True)
    conn.close()
    # Sao Paulo is UTC-3: the two local days are [03:00Z on the 15th, 03:00Z on the 17th)
    assert (h["from_at"], h["to_at"]) == ("2026-01-15T03:00:00.000000Z", "2026-01-17T03:00:00.000000Z")
    assert h["placed_by"] == "dpo" and h["released_by"] == "dpo"
