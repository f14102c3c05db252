"""Signed checkpoints of the audit chain's head, outside the database: finding 2 (triggers
dropped, entries deleted, every hash recomputed, triggers recreated) and truncation are
caught by ``audit verify``; RFC 3161 tokens from a local ``openssl ts`` authority."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.config import AuditConfig
from callproof.evidence.checkpoints import anchor_once, read_lines, verify, write_checkpoint
from callproof.evidence.keys import Signer, generate_key_file, trusted_from_config
from callproof.storage import SyncDatabase, connect_sync
from callproof.storage.audit import GENESIS, append_sync, entry_hash
from callproof.storage.dialect import dialect_of
from tests.engines import drop_trigger
from tests.peers.tsa import LocalTsa

from .test_records import _toml
from .world import signed_config

AT = "2026-03-10T17:00:00.000000+00:00"
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "audit_log_chain_link")


def fill(conn, n: int, action: str = "call.viewed") -> None:
    for i in range(n):
        append_sync(conn, action if i % 3 else "web.login.failed", "web:alice", AT, subject=f"s{i}")


def rewrite_chain(conn, where: str) -> None:
    """Finding 2, as the review did it: keep the triggers' SQL, drop them, delete entries,
    renumber, recompute every hash, recreate the triggers."""
    postgres = dialect_of(conn).name == "postgresql"
    if postgres:  # PostgreSQL's owner switches the table's triggers off and on again
        sql = ["ALTER TABLE audit_log ENABLE TRIGGER USER"]
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    else:
        sql = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'"
                                          " AND tbl_name = 'audit_log'")]
        for t in TRIGGERS:
            conn.execute(f"DROP TRIGGER {t}")
    conn.execute(f"DELETE FROM audit_log WHERE {where}")
    rows = conn.execute("SELECT id, at, actor, action, protocol, subject, details"
                        " FROM audit_log ORDER BY id").fetchall()
    conn.execute("DELETE FROM audit_log")
    prev = GENESIS
    for n, (_, at, actor, action, protocol, subject, details) in enumerate(rows, 1):
        entry = {"id": n, "at": at, "actor": actor, "action": action, "protocol": protocol, "subject": subject,
                 "details": details}
        h = entry_hash(prev, entry)
        conn.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (n, at, actor, action, protocol, subject, details, prev, h))
        prev = h
    for s in sql:
        conn.execute(s)


def cli(config, tmp_path: Path, *argv: str) -> int:
    p = tmp_path / "callproof.toml"
    text = _toml(config)
    a = config.audit
    if a.tsa_url:
        text = text.replace("[audit]\n", f'[audit]\ntsa_url = "{a.tsa_url}"\ntsa_ca_file = "{a.tsa_ca_file}"\n')
    p.write_text(text)
    p.chmod(0o600)  # whatever the umask: a world-writable config is refused
    return main(["--config", str(p), *argv])


@pytest.fixture
def world(tmp_path: Path, target: str):
    config = signed_config(tmp_path, target=target, checkpoints=True)
    conn = connect_sync(config.storage.target)
    yield config, conn
    conn.close()


def test_a_checkpoint_is_a_signed_line_appended_with_mode_0640(world, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = world
    fill(conn, 5)
    old = os.umask(0)
    try:
        assert cli(config, tmp_path, "audit", "checkpoint") == 0
    finally:
        os.umask(old)
    path = config.audit.checkpoint_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    (line,) = read_lines(path)
    body = line["checkpoint"]
    assert body["head_id"] == body["count"] == 5 and body["key"] == Signer.load(config.evidence.signing_key).fingerprint
    fill(conn, 2)
    assert cli(config, tmp_path, "audit", "checkpoint") == 0
    assert [ln["checkpoint"]["head_id"] for ln in read_lines(path)] == [5, 7]  # appended, first kept
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "verify") == 0
    out = capsys.readouterr().out
    assert "intact: 7 entries" in out and "entries 1..7 match" in out


def test_finding_2_a_rewritten_chain_is_caught(world, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = world
    fill(conn, 30)
    assert anchor_once(config)
    fill(conn, 3)
    rewrite_chain(conn, "action = 'web.login.failed'")
    db = SyncDatabase.wrap(conn)
    assert db.audit.verify_chain() is None  # the chain alone looks intact: the attack of the review
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "verify") == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "saw 30 entries; the log now ends at 22: entries were DELETED" in out


def test_an_edit_before_the_checkpoint_with_ids_kept_is_caught(world, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = world
    fill(conn, 10)
    assert anchor_once(config)
    rewrite_chain(conn, "id = 2")  # one entry gone, ids renumbered, 9 left
    fill(conn, 1)  # and a new one, so the log reaches id 10 again
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "verify") == 1
    assert "entry 10 had hash" in capsys.readouterr().out


def test_truncating_the_newest_entries_is_caught(world, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = world
    fill(conn, 12)
    assert anchor_once(config)
    drop_trigger(conn, "audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id > 9")
    assert SyncDatabase.wrap(conn).audit.verify_chain() is None
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "verify") == 1
    assert "saw 12 entries; the log now ends at 9: entries were DELETED" in capsys.readouterr().out


def test_what_follows_the_last_checkpoint_is_reported_as_not_anchored(world, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The documented limit: entries after the newest checkpoint can go undetected."""
    config, conn = world
    fill(conn, 4)
    assert anchor_once(config)
    fill(conn, 3)
    drop_trigger(conn, "audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id = 7")
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "verify") == 0
    out = capsys.readouterr().out
    assert "entries 1..4 match" in out and "2 newer entries not yet anchored" in out


def test_a_checkpoint_signed_by_another_key_or_edited_is_refused(world, tmp_path: Path) -> None:
    config, conn = world
    fill(conn, 3)
    assert anchor_once(config)
    generate_key_file(tmp_path / "mallory.pem")
    mallory = Signer.load(tmp_path / "mallory.pem")
    write_checkpoint(config, SyncDatabase.wrap(conn), mallory, AT)
    lines = read_lines(config.audit.checkpoint_file)
    edited = json.loads(json.dumps(lines[0]))
    edited["checkpoint"]["head_id"] = 2
    report = verify(SyncDatabase.wrap(conn), [*lines, edited], trusted_from_config(config))
    assert not report.intact
    assert [p.split(":")[0] for p in report.problems] == ["checkpoint line 2", "checkpoint line 3"]


def test_without_a_checkpoint_file_verify_says_not_anchored(tmp_path: Path, target: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = signed_config(tmp_path, target=target)
    conn = connect_sync(config.storage.target)
    fill(conn, 2)
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "verify") == 0
    assert "NOT ANCHORED" in capsys.readouterr().out


def test_unchanged_heads_are_not_checkpointed_twice_by_the_interval(world) -> None:
    config, conn = world
    fill(conn, 2)
    assert anchor_once(config) and anchor_once(config)
    assert len(read_lines(config.audit.checkpoint_file)) == 1
    assert anchor_once(config, only_if_changed=False)  # 'audit checkpoint' always writes
    assert len(read_lines(config.audit.checkpoint_file)) == 2


def test_the_retention_sweep_writes_a_checkpoint(world, tmp_path: Path) -> None:
    config, conn = world
    fill(conn, 2)
    config.recording.root.mkdir(parents=True, exist_ok=True)
    assert cli(config, tmp_path, "retention", "sweep", "--no-scan") == 0
    (line,) = read_lines(config.audit.checkpoint_file)
    assert line["checkpoint"]["head_id"] >= 2


def test_checkpoints_timestamped_by_a_local_openssl_tsa(world, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, conn = world
    fill(conn, 3)
    with LocalTsa() as tsa:
        config = dataclasses.replace(config, audit=AuditConfig(
            checkpoint_file=config.audit.checkpoint_file, tsa_url=tsa.url, tsa_ca_file=tsa.ca_file))
        assert cli(config, tmp_path, "audit", "checkpoint") == 0
        assert tsa.requests == 1
        capsys.readouterr()
        assert cli(config, tmp_path, "audit", "verify") == 0
        out = capsys.readouterr().out
        assert "timestamped" in out and "GMT" in out
        # a token that is not this checkpoint's: refused
        lines = read_lines(config.audit.checkpoint_file)
        other = dict(lines[0])
        fill(conn, 1)
        assert cli(config, tmp_path, "audit", "checkpoint") == 0
        second = read_lines(config.audit.checkpoint_file)[1]
        other["tsa_token"] = second["tsa_token"]
        report = verify(SyncDatabase.wrap(conn), [other], trusted_from_config(config), tsa.ca_file)
        assert not report.intact and "timestamp token does not verify" in report.problems[0]
        assert base64.b64decode(second["tsa_token"])
    # the authority gone: the checkpoint is still written, without a token, and the command says so
    capsys.readouterr()
    assert cli(config, tmp_path, "audit", "checkpoint") == 1
    assert "TSA FAILED" in capsys.readouterr().out
    assert "tsa_error" in read_lines(config.audit.checkpoint_file)[-1]


async def test_callproof_run_anchors_at_start_and_on_its_interval(world) -> None:
    import asyncio

    from callproof.evidence.checkpoints import anchor_periodically
    config, conn = world
    fill(conn, 2)
    task = asyncio.ensure_future(anchor_periodically(config, Signer.load(config.evidence.signing_key)))
    try:
        for _ in range(200):
            if config.audit.checkpoint_file.exists():
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    (line,) = read_lines(config.audit.checkpoint_file)
    assert line["checkpoint"]["head_id"] == 2


def test_each_checkpoint_signs_a_merkle_root_that_audit_verify_checks(tmp_path: Path, target: str) -> None:
    """The root of every entry's hash up to the head (what packages prove entries against):
    from an empty log on, each checkpoint's root matches the chain; one signed over other
    hashes (a key holder's mistake or forgery) is reported."""
    from callproof.evidence import merkle
    from callproof.evidence.checkpoints import append_line, body_bytes

    config = signed_config(tmp_path, target=target, checkpoints=True)
    conn = connect_sync(config.storage.target)
    signer = Signer.load(config.evidence.signing_key)
    db = SyncDatabase.wrap(conn)
    write_checkpoint(config, db, signer, AT)  # the empty log: entries_in_root 0
    fill(conn, 5)
    line = write_checkpoint(config, db, signer, AT)
    assert line is not None
    body = line["checkpoint"]
    hashes = [r[0] for r in conn.execute("SELECT hash FROM audit_log ORDER BY id")]
    assert body["entries_root"] == merkle.root(hashes) and body["entries_in_root"] == 5
    assert verify(db, read_lines(config.audit.checkpoint_file), trusted_from_config(config)).intact
    wrong = {**body, "entries_root": merkle.root([*hashes[:4], "00" * 32])}
    append_line(config.audit.checkpoint_file, {"checkpoint": wrong, "signature": base64.b64encode(
        signer.sign(body_bytes(wrong))).decode()})
    report = verify(db, read_lines(config.audit.checkpoint_file), trusted_from_config(config))
    assert not report.intact and any("Merkle root" in p for p in report.problems)
