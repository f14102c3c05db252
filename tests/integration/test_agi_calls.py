"""The AGI path on a real Asterisk 22: the classic script (pyst2, run by Asterisk inside the
sandbox's chroot) and the FastAGI server (in this process, on loopback), next to the ARI app.

Calls enter the shipped contexts ``callproof-agi-entry`` / ``callproof-fastagi-entry``; they
share this module's database with its own ARI application (``callproof_agi``), whose SMS sender
sends their outbox rows.  A call's row is found by its linkedid (the customer channel's uniqueid).

Why a database of its own: the calls of this module (three paths, hang-ups, a locked
database, hostile caller IDs) stay out of the session database that later tests read from
other processes (the CLI, ``callproof web``), and its ARI application's name keeps the ARI
path's calls away from the session harness.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from callproof.agi_scripts.fastagi import FastAgiServer
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import ari_request, originate_call
from callproof.storage._sqlutil import fetch_one

from .agi_install import install_classic_agi
from .harness import CallHarness, ObservedApplication, sha256_of
from .test_call_flow import HOSTILE_CALLER_IDS, RECORDING_NAME

pytestmark = pytest.mark.integration

ENTRY = {"agi": "callproof-agi-entry", "fastagi": "callproof-fastagi-entry", "ari": "callproof-entry"}
AGI_APP = "callproof_agi"


@pytest.fixture(scope="module")
def app_config(sandbox, app_config):
    """This module's callproof.toml: the session's prompts, its own database, recordings
    and ARI application name (see the module docstring)."""
    run_dir = sandbox.run_dir / "agi-paths"
    run_dir.mkdir(exist_ok=True)
    return load_sandbox_config(write_config(sandbox, run_dir, app_config.prompts.directory,
                                            ari={"app": AGI_APP}))


@pytest.fixture(scope="module")
def config_path(app_config) -> Path:
    return Path(app_config.storage.database).parent / "callproof.toml"


@pytest.fixture(scope="module")
async def harness(sandbox, app_config):
    app = ObservedApplication(app_config)
    await app.start()
    runner = asyncio.ensure_future(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), 20)
        yield CallHarness(app, sandbox, Path(app_config.storage.database).parent)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()


@pytest.fixture(scope="module")
def classic_agi(sandbox, config_path):
    """Install the classic script the way an admin would, into the sandbox's agi-bin."""
    wrapper = install_classic_agi(sandbox, config_path)
    yield wrapper
    wrapper.unlink(missing_ok=True)  # later modules' fallback calls must not reach this database


@pytest.fixture(scope="module")
async def fastagi(app_config):
    server = await FastAgiServer(app_config).start(port=0)
    yield server
    await server.stop()


def handoffs_of(ami_events, channel: dict) -> list:
    """The sandbox agents' reports for this call (its ;2 side reached the hand-off)."""
    prefix = channel["name"].rsplit(";", 1)[0] + ";"

    def channels(e) -> list[str]:  # Asterisk adds its own Channel header next to ours: a list
        value = e.get("Channel", "")
        return value if isinstance(value, list) else [value]

    return [e for e in ami_events.user_events if e.get("UserEvent") == "CallproofHandoff"
            and any(str(c).startswith(prefix) for c in channels(e))]


def fastagi_vars(server) -> dict[str, str]:
    return {"CALLPROOF_FASTAGI": f"agi://127.0.0.1:{server.port}/callproof"}


async def place(sandbox, path: str, caller: str, variables=None, record: Path | None = None,
                max_seconds: int = 60) -> dict:
    return await asyncio.to_thread(
        originate_call, sandbox, caller, entry_context=ENTRY[path],
        variables={"CALLPROOF_APP": AGI_APP, **(variables or {})},
        record_path=str(record) if record else None, max_seconds=max_seconds)


async def wait_row(db, linkedid: str, statuses: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        row = await db.run_in_connection(
            lambda c: fetch_one(c.execute("SELECT * FROM calls WHERE linkedid = ?", (linkedid,))))
        if row is not None and row["status"] in statuses:
            return dict(row)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"call {linkedid} stayed {row and row['status']}, wanted {statuses}")


async def wait_final_recording(db, call_id: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await db.recordings.for_call(call_id)
        if rows and rows[-1]["state"] != "recording":
            return dict(rows[-1])
        await asyncio.sleep(0.1)
    raise TimeoutError(f"recording of call {call_id} never finalised")


async def wait_sms(db, protocol: str, states: set[str], timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = await db.outbox.get_for_protocol(protocol)
        if rows and rows[0]["state"] in states:
            return dict(rows[0])
        await asyncio.sleep(0.1)
    raise TimeoutError(f"SMS of {protocol} stayed {rows and rows[0]['state']}")


def heard_sequence(sandbox, customer_channel: dict) -> list[str]:
    """What Asterisk played to the call's ;2 side, in order, from its own verbose log:
    prompt names with every digit as 'd' (protocols differ)."""
    callee = customer_channel["name"].rsplit(";", 1)[0] + ";2"
    out = []
    for line in sandbox.console_log.read_text(errors="replace").splitlines():
        m = re.search(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'", line)
        if m and m["chan"] == callee:
            name = Path(m["file"]).name.rsplit(".", 1)[0]
            out.append("d" if name.isdigit() else name)
    return out


async def test_shipped_dialplan_files_load(sandbox):
    for context in ("callproof-agi-entry", "callproof-agi-run", "callproof-agi-finalise",
                    "callproof-fastagi-entry", "callproof-fastagi-run", "callproof-fastagi-finalise"):
        shown = await asyncio.to_thread(sandbox.cli, f"dialplan show {context}")
        assert f"'{context}'" in shown and "There is no existence" not in shown, shown


async def test_parity_ari_agi_fastagi(harness, sandbox, classic_agi, fastagi, ami_events, app_config):
    """One scripted call per path, at the same time: equivalent rows, same things heard in the same order."""
    heard_dir = sandbox.run_dir / "heard"
    plan = {"ari": "11987650101", "agi": "11987650102", "fastagi": "11987650103"}
    extra = {"ari": {}, "agi": {}, "fastagi": fastagi_vars(fastagi)}
    placed = await asyncio.gather(*(
        place(sandbox, p, caller, extra[p], record=heard_dir / f"parity-{p}.wav") for p, caller in plan.items()))
    channels = dict(zip(plan, placed, strict=True))
    db = harness.app.db
    rows = dict(zip(plan, await asyncio.gather(*(
        wait_row(db, channels[p]["id"], {"completed"}, timeout=120) for p in plan)), strict=False))
    sequences = {}
    for p, row in rows.items():
        assert row["consent_outcome"] == "finished" and row["consent_sha256"] == rows["ari"]["consent_sha256"]
        assert row["consent_started_at"] < row["consent_finished_at"]
        assert re.fullmatch(r"\d{17}", row["protocol"]) and row["protocol"][:4] == rows["ari"]["protocol"][:4]
        assert row["protocol_read_count"] == 2 and row["caller_number"] == "+55" + plan[p]
        assert row["language"] == rows["ari"]["language"] and row["ended_at"]
        sms = await wait_sms(db, row["protocol"], {"logged"})
        assert sms["destination"] == "+55" + plan[p] and row["protocol"] in sms["body"]
        rec = await wait_final_recording(db, row["id"])
        path = Path(rec["path"])
        # audio, not an empty file: the agents' second of tones (a starved 2-core machine keeps only part of it)
        assert rec["state"] == "finalised" and rec["sha256"] == sha256_of(path) and rec["duration_ms"] >= 200
        assert path.is_relative_to(app_config.recording.root) and RECORDING_NAME.match(path.name)
        assert path.name.startswith(f"{row['protocol']}_{plan[p]}_")
        handoff = ami_events.handoffs_for(row["protocol"], recording=path)
        assert handoff and handoff[0]["Status"] == "ok", (p, path)
        audit = await db.run_in_connection(lambda c, proto=row["protocol"]: c.execute(
            "SELECT action FROM audit_log WHERE protocol = ?", (proto,)).fetchall())
        assert ("recording.finalised",) in audit
        sequences[p] = heard_sequence(sandbox, channels[p])
    assert sequences["ari"][0] == "consent" and sequences["ari"].count("protocol-is") == 2
    assert sequences["agi"] == sequences["ari"] == sequences["fastagi"], sequences


async def test_hangup_during_each_step(harness, sandbox, classic_agi, fastagi):
    """Consent and protocol reading, on both AGI paths, all at once."""
    db = harness.app.db
    cases = [(p, step) for p in ("agi", "fastagi") for step in ("consent", "protocol")]
    channels = await asyncio.gather(*(
        place(sandbox, p, f"1198765{200 + i:04d}", fastagi_vars(fastagi) if p == "fastagi" else {})
        for i, (p, _) in enumerate(cases)))

    async def hang_up_in(channel, step):
        wanted = {"consent": "consent_playing", "protocol": "protocol_reading"}[step]
        row = await wait_row(db, channel["id"], {wanted}, timeout=60)
        if step == "consent":
            await asyncio.sleep(1.0)  # well inside the announcement
        else:
            await asyncio.sleep(2.0)  # inside the first reading
        await asyncio.to_thread(ari_request, sandbox, "DELETE", f"channels/{channel['id']}")
        return row

    await asyncio.gather(*(hang_up_in(ch, step) for ch, (_, step) in zip(channels, cases, strict=False)))
    for channel, (p, step) in zip(channels, cases, strict=False):
        expected = {"consent": "abandoned_in_consent", "protocol": "abandoned_in_protocol"}[step]
        row = await wait_row(db, channel["id"], {expected}, timeout=30)
        assert row["ended_at"], (p, step)
        assert await db.recordings.for_call(row["id"]) == [], (p, step)
        if step == "consent":
            assert row["protocol"] is None and row["consent_outcome"] == "caller_left", (p, row)
        else:
            assert row["consent_outcome"] == "finished" and row["protocol"], (p, row)
            assert len(await db.outbox.get_for_protocol(row["protocol"])) == 1


async def test_fastagi_server_restarted_between_calls(harness, sandbox, app_config, ami_events):
    db = harness.app.db
    first = await FastAgiServer(app_config).start(port=0)
    port = first.port
    variables = {"CALLPROOF_FASTAGI": f"agi://127.0.0.1:{port}/callproof"}
    ch1 = await place(sandbox, "fastagi", "11987650301", variables)
    row1 = await wait_row(db, ch1["id"], {"completed"}, timeout=90)
    await first.stop()
    # Server down: the caller is still routed, with the reason.
    ch2 = await place(sandbox, "fastagi", "11987650302", variables)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not handoffs_of(ami_events, ch2):
        await asyncio.sleep(0.1)
    down = handoffs_of(ami_events, ch2)
    assert down, "a call made while the FastAGI server was down never reached the hand-off"
    assert down[0]["Status"] == "failed" and down[0]["Reason"] == "agi_FAILURE"
    second = await FastAgiServer(app_config).start(port=port)
    try:
        ch3 = await place(sandbox, "fastagi", "11987650303", variables)
        row3 = await wait_row(db, ch3["id"], {"completed"}, timeout=90)
    finally:
        await second.stop()
    assert int(row3["protocol"]) > int(row1["protocol"])
    assert (await wait_final_recording(db, row3["id"]))["state"] == "finalised"


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


async def test_storage_locked_by_another_process(harness, sandbox, classic_agi, app_config, config_path, ami_events,
                                                 tmp_path):
    """Another process holds the database: both paths set CALLPROOF_STATUS/REASON and route the caller."""
    run = sandbox.run_dir / "locked"
    run.mkdir(exist_ok=True)
    cfg_path = write_config(sandbox, run, app_config.prompts.directory,
                            storage={"database": str(run / "locked.db"), "busy_timeout_ms": 300})
    cfg = load_sandbox_config(cfg_path)
    server = await FastAgiServer(cfg).start(port=0)  # opens (creates) the database before the lock
    wrapper_text = classic_agi.read_text()
    classic_agi.write_text(wrapper_text.replace(str(config_path), str(cfg_path)))
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(run / "locked.db"), "25"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        channels = await asyncio.gather(
            place(sandbox, "agi", "11987650401"),
            place(sandbox, "fastagi", "11987650402", {"CALLPROOF_FASTAGI": f"agi://127.0.0.1:{server.port}/callproof"}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(handoffs_of(ami_events, ch) for ch in channels):
            await asyncio.sleep(0.2)
    finally:
        locker.kill()
        locker.wait()
        classic_agi.write_text(wrapper_text)
        await server.stop()
    for path, channel in zip(("agi", "fastagi"), channels, strict=False):
        reports = handoffs_of(ami_events, channel)
        assert reports, f"{path}: the caller was not routed while storage was locked"
        assert (reports[0]["Status"], reports[0]["Reason"], reports[0]["Protocol"]) == (
            "failed", "storage_unavailable", ""), (path, reports[0])


async def test_hostile_caller_ids_on_both_agi_paths(harness, sandbox, classic_agi, fastagi, app_config):
    db = harness.app.db
    root = app_config.recording.root
    callers = [*HOSTILE_CALLER_IDS[:6], "", '"Mallory" <1199>; x=y']
    cases = [(p, c) for c in callers for p in ("agi", "fastagi")]
    channels = await asyncio.gather(*(
        place(sandbox, p, c, fastagi_vars(fastagi) if p == "fastagi" else {}, max_seconds=180) for p, c in cases))
    rows = await asyncio.gather(*(wait_row(db, ch["id"], {"completed"}, timeout=240) for ch in channels))
    for (p, caller), row in zip(cases, rows, strict=False):
        assert row["caller_number_raw"] == caller[: len(row["caller_number_raw"])], (p, caller)
        rec = await wait_final_recording(db, row["id"])
        path = Path(rec["path"])
        assert path.resolve().is_relative_to(root.resolve()) and RECORDING_NAME.match(path.name), (p, path)
        assert rec["state"] == "finalised"
    assert not Path("/tmp/callproof-pwned").exists()
    assert not (sandbox.rootfs / "tmp" / "callproof-pwned").exists()
