"""No call without a protocol: when the ARI application is not connected, ``Stasis()``
fails and the shipped ``[callproof-entry-run]`` runs the same flow over AGI for the call
(dialplan/callproof.conf, ``CALLPROOF_FALLBACK``).

Calls enter ``callproof-entry`` exactly as production calls do, for an ARI application name
that nothing registers; the classic script (run by the sandbox Asterisk in its chroot) and
the FastAGI server (in this process) write to this module's own database. What the caller
heard is read from Asterisk's log of playbacks on the call's channel."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from callproof.agi_scripts.fastagi import FastAgiServer
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import originate_call
from callproof.storage import open_database
from callproof.storage._sqlutil import fetch_one

from .agi_install import install_classic_agi
from .harness import sha256_of
from .test_agi_calls import handoffs_of, heard_sequence, wait_final_recording, wait_row
from .test_call_flow import RECORDING_NAME

pytestmark = pytest.mark.integration

ABSENT_APP = "callproof_fallback"  # never connected: Stasis() fails for every call of this module


@pytest.fixture(scope="module")
def module_config(sandbox, app_config):
    run_dir = sandbox.run_dir / "fallback"
    run_dir.mkdir(exist_ok=True)
    return load_sandbox_config(write_config(sandbox, run_dir, app_config.prompts.directory,
                                            ari={"app": ABSENT_APP}))


@pytest.fixture(scope="module")
def classic_agi(sandbox, module_config):
    wrapper = install_classic_agi(sandbox, Path(module_config.storage.database).parent / "callproof.toml")
    yield wrapper
    wrapper.unlink(missing_ok=True)  # later modules' fallback calls must not reach this database


@pytest.fixture(scope="module")
async def db(module_config):
    database = await open_database(module_config)
    yield database
    await database.close()


async def wait_handoff(ami_events, channel: dict, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports = handoffs_of(ami_events, channel)
        if reports:
            return reports[0]
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{channel['name']} never reached the hand-off")


async def test_calls_while_the_app_is_away_get_the_whole_flow(sandbox, module_config, classic_agi, db, ami_events):
    fastagi = await FastAgiServer(module_config).start(port=0)
    plan = {  # name: (caller, channel variables)
        "agi": ("11987651101", {}),
        "fastagi": ("11987651102", {"CALLPROOF_FALLBACK": "fastagi",
                                    "CALLPROOF_FASTAGI": f"agi://127.0.0.1:{fastagi.port}/callproof"}),
        "unreachable": ("11987651103", {"CALLPROOF_FALLBACK": "fastagi",
                                        "CALLPROOF_FASTAGI": "agi://127.0.0.1:9/callproof"}),
        "none": ("11987651104", {"CALLPROOF_FALLBACK": "none"}),
    }
    try:
        channels = dict(zip(plan, await asyncio.gather(*(asyncio.to_thread(
            originate_call, sandbox, caller, max_seconds=90,
            # the agent stays 3 s: on a starved machine MixMonitor's thread may begin a second or
            # two after the hand-off, and a 1 s agent then left an empty recording
            variables={"CALLPROOF_APP": ABSENT_APP, "SANDBOX_AGENT_SECONDS": "3", **variables})
            for caller, variables in plan.values())), strict=True))
        reports = dict(zip(plan, await asyncio.gather(*(wait_handoff(ami_events, ch) for ch in channels.values())),
                           strict=True))
        assert {p: reports[p]["Status"] for p in plan} == {
            "agi": "ok", "fastagi": "ok", "unreachable": "app_unavailable", "none": "app_unavailable"}, reports
        served = {p: await wait_row(db, channels[p]["id"], {"completed"}, timeout=60) for p in ("agi", "fastagi")}
    finally:
        await fastagi.stop()
    heard = {p: heard_sequence(sandbox, ch) for p, ch in channels.items()}
    for path, row in served.items():
        caller = plan[path][0]
        assert row["served_by"] == f"{path}_fallback", row
        report = reports[path]
        assert (report["Status"], report["Reason"], report["Protocol"]) == ("ok", "", row["protocol"])
        # what the caller heard: the announcement once, in full, first; the protocol read twice
        assert heard[path][0] == "consent" and heard[path].count("consent") == 1, heard[path]
        assert heard[path].count("protocol-is") == 2, heard[path]
        assert row["consent_outcome"] == "finished" and row["protocol_read_count"] == 2
        protocol = await db.run_in_connection(lambda c, p=row["protocol"]: fetch_one(c.execute(
            "SELECT * FROM protocols WHERE protocol = ?", (p,))))
        assert (row["consent_finished_at"] <= protocol["allocated_at"] <= row["protocol_read_finished_at"]
                <= row["recording_started_at"]), (row, protocol)
        sms = await db.outbox.get_for_protocol(row["protocol"])
        # queued with the protocol; sent by callproof run's sender when it is back (test_fault_app_killed.py)
        assert len(sms) == 1 and sms[0]["state"] == "pending" and sms[0]["destination"] == "+55" + caller
        recordings = await db.recordings.for_call(row["id"])
        assert len(recordings) == 1
        rec = await wait_final_recording(db, row["id"])
        path_ = Path(rec["path"])
        assert rec["state"] == "finalised" and rec["sha256"] == sha256_of(path_) and rec["duration_ms"] > 500
        assert RECORDING_NAME.match(path_.name) and path_.name.startswith(f"{row['protocol']}_{caller}_")
        assert reports[path]["Recording"] == rec["path"]
    assert heard["agi"] == heard["fastagi"]
    low, high = sorted(int(r["protocol"]) for r in served.values())
    assert high - low == 1, "one gap-free sequence for both paths"
    # A fallback that cannot run, and no fallback: the caller is routed, and told why; nothing is stored.
    assert (reports["unreachable"]["Status"], reports["unreachable"]["Reason"]) == ("app_unavailable", "agi_FAILURE")
    assert (reports["none"]["Status"], reports["none"]["Reason"], reports["none"]["Protocol"]) == (
        "app_unavailable", "", "")
    for path in ("unreachable", "none"):
        assert heard[path] == [], heard[path]
        rows = await db.run_in_connection(lambda c, linkedid=channels[path]["id"]: c.execute(
            "SELECT id FROM calls WHERE linkedid = ?", (linkedid,)).fetchall())
        assert rows == [], path
    assert await db.calls.served_by_counts() == {"agi_fallback": 1, "fastagi_fallback": 1}
