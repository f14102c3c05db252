"""Signed evidence and the anchored audit chain on a real Asterisk 22.

An application of its own (Stasis app ``cpevidence``, its own database, recordings, signing
key and checkpoint file; 40 ms prompts so the calls are short) and a FastAGI server on the
same configuration, and the classic AGI script installed into the sandbox's agi-bin (run by
Asterisk inside its chroot, on the chroot's Python and Debian's cryptography); a local
RFC 3161 authority (``openssl ts``, tests/peers/tsa.py) timestamps the checkpoints. One call
per transport gets a signed record that verifies (``callproof recording verify`` run as an
admin runs it); then the review's attacks:
finding 1 (a recording's bytes and its ``recordings.sha256`` swapped) and finding 2 (audit
triggers dropped, entries deleted, every hash recomputed, triggers recreated), each now
reported by the command an auditor runs, and the export refuses the forged file.

The one-call-per-transport test runs again on PostgreSQL (``pg_calls``: the same set-up on a
database of the loopback-TCP cluster, which the classic script in the chroot reaches with the
password from secrets.env); the attacks stay on SQLite (their unit twins run on both engines).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from callproof.agi_scripts.fastagi import FastAgiServer
from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.evidence.checkpoints import read_lines
from callproof.evidence.keys import Signer
from callproof.rights.export import ExportError, export_request_sync
from callproof.rights.requests import file_request_sync
from callproof.sandbox import Sandbox
from callproof.storage import open_sync, utc_now

from .agi_install import classic_agi_for, install_classic_agi
from .conftest import pg_tcp_storage
from .harness import ObservedApplication, running, sha256_of
from .test_agi_calls import fastagi_vars, place, wait_final_recording, wait_row
from .test_call_state import short_prompts

pytestmark = pytest.mark.integration

APP = "cpevidence"


@pytest.fixture(scope="module")
def tsa():
    from tests.peers.tsa import LocalTsa

    with LocalTsa() as authority:
        yield authority


def evidence_config(sandbox: Sandbox, app_config: Config, tsa, app_name: str, pg_tcp=None) -> Config:
    """This module's configuration; with ``pg_tcp``, on a database of that cluster (over
    TCP: the classic AGI script in the chroot reaches it too)."""
    run_dir = sandbox.run_dir / f"evidence-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    storage = pg_tcp_storage(pg_tcp, run_dir, "evidence") if pg_tcp is not None else {}
    return load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": app_name}, storage=storage,
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0},
        audit={"tsa_url": tsa.url, "tsa_ca_file": str(tsa.ca_file)}))


@pytest.fixture(scope="module")
def config(sandbox: Sandbox, app_config: Config, tsa) -> Config:
    return evidence_config(sandbox, app_config, tsa, APP)


@pytest.fixture(scope="module")
def config_path(config: Config) -> Path:
    return Path(config.storage.database).parent / "callproof.toml"


@pytest.fixture(scope="module")
async def app(config: Config):
    async with running(ObservedApplication(config)) as application:
        yield application


@pytest.fixture(scope="module")
async def fastagi(config: Config):
    server = await FastAgiServer(config).start(port=0)
    yield server
    await server.stop()


def cli(config_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command an admin or auditor runs, in its own process."""
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config_path), *argv],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def classic_agi(sandbox: Sandbox, config_path: Path):
    """The classic script on this module's configuration (removed after: see agi_install.py)."""
    wrapper = install_classic_agi(sandbox, config_path)
    yield wrapper
    wrapper.unlink(missing_ok=True)


async def one_call_per_transport(app, fastagi, sandbox: Sandbox) -> dict[str, dict]:
    """{"ari"|"agi"|"fastagi": {"row": ..., "recording": ...}}, each call finished."""
    name = app.config.ari.app
    plan = {"ari": ("11987650901", {"CALLPROOF_APP": name}),
            "agi": ("11987650903", {"CALLPROOF_APP": name}),
            "fastagi": ("11987650902", {"CALLPROOF_APP": name, **fastagi_vars(fastagi)})}
    placed = await asyncio.gather(*(place(sandbox, path, caller, variables)
                                    for path, (caller, variables) in plan.items()))
    out = {}
    for path, channel in zip(plan, placed, strict=True):
        row = await wait_row(app.db, channel["id"], {"completed"}, timeout=60)
        out[path] = {"row": row, "recording": await wait_final_recording(app.db, row["id"])}
    return out


@pytest.fixture(scope="module")
async def calls(app, fastagi, classic_agi, sandbox: Sandbox) -> dict[str, dict]:
    """One finished call per transport (see :func:`one_call_per_transport`)."""
    return await one_call_per_transport(app, fastagi, sandbox)


@pytest.fixture(scope="module")
async def pg_calls(sandbox: Sandbox, app_config: Config, tsa, pg_tcp) -> tuple[dict[str, dict], Config, Path]:
    """The three calls again, with the module's set-up on PostgreSQL: (calls, config, its path)."""
    config = evidence_config(sandbox, app_config, tsa, APP + "pg", pg_tcp)
    config_path = Path(config.storage.database).parent / "callproof.toml"
    async with running(ObservedApplication(config)) as application:
        server = await FastAgiServer(config).start(port=0)
        try:
            with classic_agi_for(sandbox, config_path):
                done = await one_call_per_transport(application, server, sandbox)
        finally:
            await server.stop()
    return done, config, config_path


async def test_each_transport_signs_its_recordings_evidence(calls_on) -> None:
    """ARI, classic AGI and FastAGI each leave the same signed evidence; on SQLite and on PostgreSQL."""
    calls, config, config_path = calls_on
    signer = Signer.load(config.evidence.signing_key)
    for path, call in calls.items():
        rec, row = call["recording"], call["row"]
        assert rec["state"] == "finalised", path
        with open_sync(config) as db:
            stored = db.evidence.for_recording(rec["id"])
        assert stored is not None and stored["key_fingerprint"] == signer.fingerprint, path
        signer.public_key.verify(base64.b64decode(stored["signature"]), stored["record"].encode())
        record = json.loads(stored["record"])
        assert record["protocol"] == row["protocol"] and record["call"]["served_by"] == path
        assert record["recording"]["sha256"] == sha256_of(Path(rec["path"])) == rec["sha256"]
        assert record["consent"]["sha256"] == row["consent_sha256"] and record["consent"]["outcome"] == "finished"
        assert row["caller_number"][1:] not in stored["record"]  # no caller digits in the undeletable record
        done = cli(config_path, "recording", "verify", row["protocol"], "--by", "auditor")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ok 1 (signed)" in done.stdout and "UNSIGNED 0" in done.stdout


async def test_a_package_verifies_offline_in_a_fresh_venv_from_the_wheel(calls, config: Config, config_path: Path,
                                                                        wheel, tmp_path: Path) -> None:
    """Another machine's view: callproof installed from its wheel into a fresh virtual
    environment, no database, no configuration, another folder; the classic AGI call's package."""
    from .wheel_venv import run

    protocol = calls["agi"]["row"]["protocol"]
    done = cli(config_path, "audit", "checkpoint")  # one that covers the call's entries, timestamped
    assert done.returncode == 0, done.stdout + done.stderr
    package = tmp_path / "evidence.zip"
    done = cli(config_path, "evidence", "export", protocol, "--out", str(package))
    assert done.returncode == 0, done.stdout + done.stderr
    recipient = tmp_path / "recipient"
    recipient.mkdir()
    env = {k: v for k, v in wheel.env.items() if not k.startswith("CALLPROOF")} | {"HOME": str(recipient)}
    key = Signer.load(config.evidence.signing_key).fingerprint
    ok = run([str(wheel.callproof), "evidence", "verify", str(package), "--key", key], cwd=recipient,
             timeout=120, env=env).stdout
    assert "evidence package VERIFIED" in ok and f"recording of protocol {protocol}" in ok
    assert "timestamped" in ok and "(Merkle proof" in ok
    with zipfile.ZipFile(package) as src:
        members = {n: src.read(n) for n in src.namelist()}
    audio = next(n for n in members if n.startswith("recording."))
    data = bytearray(members[audio])
    data[len(data) // 2] ^= 0x01
    members[audio] = bytes(data)
    tampered = recipient / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as dst:
        for name, blob in members.items():
            dst.writestr(name, blob)
    bad = run([str(wheel.callproof), "evidence", "verify", str(tampered)], cwd=recipient, timeout=120, env=env,
              expect=None)
    assert bad.returncode == 1 and "DOES NOT VERIFY" in bad.stdout and f"FAIL: {audio}" in bad.stdout, bad.stdout


async def test_finding_1_a_swapped_recording_is_reported_and_not_exported(calls, config: Config,
                                                                          config_path: Path) -> None:
    rec, row = calls["ari"]["recording"], calls["ari"]["row"]
    path = Path(rec["path"])
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(b ^ 0x55 for b in data[middle:middle + 400])  # 25 ms replaced
    path.write_bytes(bytes(data))
    forged = hashlib.sha256(bytes(data)).hexdigest()
    with open_sync(config) as db:
        db._conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?", (forged, rec["id"]))
    done = cli(config_path, "recording", "verify")
    assert done.returncode == 1
    assert f"MISMATCH  recording {rec['id']}  {row['protocol']}" in done.stdout
    assert "its signed evidence record says" in done.stdout
    assert "ok 2 (signed), MISMATCH 1" in done.stdout  # the AGI and FastAGI calls are untouched
    rights = dataclasses.replace(config.rights, export_dir=Path(config.storage.database).parent / "exports")
    with open_sync(config) as db:
        request = file_request_sync(db, dataclasses.replace(config, rights=rights), call_protocol=row["protocol"],
                                    channel="cli", actor="ops", now=utc_now(), requester_number=row["caller_number"])
        with pytest.raises(ExportError) as exc:
            export_request_sync(db, dataclasses.replace(config, rights=rights), request.id, actor="ops",
                                now=utc_now())
    assert exc.value.reason == "integrity"
    assert not rights.export_dir.exists() or not any(rights.export_dir.iterdir())


async def test_the_audit_chain_is_anchored_and_finding_2_is_caught(calls, app, config: Config,
                                                                   config_path: Path, tsa) -> None:
    first = read_lines(config.audit.checkpoint_file)
    assert first and "tsa_token" in first[0]  # written by the application at start, timestamped
    done = cli(config_path, "audit", "checkpoint")
    assert done.returncode == 0 and "(timestamped)" in done.stdout, done.stdout + done.stderr
    done = cli(config_path, "audit", "verify")
    assert done.returncode == 0, done.stdout
    assert "intact" in done.stdout and "timestamped" in done.stdout
    # SQLite only, on purpose: the tampering is engine SQL (sqlite_master's triggers); the same
    # attack on PostgreSQL is tests/unit/evidence/test_checkpoints.py (both engines, drop_trigger)
    # finding 2: rewrite the chain without the newest entries the review deleted (web.login.failed
    # there; here every entry about the ARI call), behind the triggers' back
    with open_sync(config) as db:
        conn = db._conn
        triggers = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'"
                                               " AND tbl_name = 'audit_log'")]
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                    " AND tbl_name = 'audit_log'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DELETE FROM audit_log WHERE protocol = ?", (calls["ari"]["row"]["protocol"],))
        from callproof.storage.audit import GENESIS, entry_hash
        rows = conn.execute("SELECT at, actor, action, protocol, subject, details"
                            " FROM audit_log ORDER BY id").fetchall()
        conn.execute("DELETE FROM audit_log")
        prev = GENESIS
        for n, values in enumerate(rows, 1):
            entry = dict(zip(("at", "actor", "action", "protocol", "subject", "details"), values, strict=True), id=n)
            h = entry_hash(prev, entry)
            conn.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (n, *values, prev, h))
            prev = h
        for sql in triggers:
            conn.execute(sql)
        assert db.audit.verify_chain() is None  # the chain alone: "intact", as the review found
    done = cli(config_path, "audit", "verify")
    assert done.returncode == 1 and "BROKEN" in done.stdout
    assert "entries were DELETED" in done.stdout or "REWRITTEN" in done.stdout, done.stdout
