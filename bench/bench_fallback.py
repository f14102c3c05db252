"""Calls while ``callproof run`` is away: what callers get from the shipped dialplan.

    sudo .venv/bin/python bench/bench_fallback.py [--calls 10] [--fallback agi|fastagi|none]
    sudo .venv/bin/python bench/bench_fallback.py --dialplan-dir OTHER/dialplan   # another version's contexts

Needs root (the sandbox Asterisk 22, see sandbox/ (callproof.sandbox)). One sandbox, no ARI
application connected: every call entering ``callproof-entry`` finds ``Stasis()`` failing,
as while ``callproof run`` is down, restarting, reconnecting or being upgraded. The classic
AGI script is installed into the sandbox's agi-bin as an admin does
(``python -m callproof.agi_scripts.install``; with ``--fallback fastagi`` the FastAGI server
runs as its own process instead). --calls calls are placed at once (the sandbox agents hang up
after 1 s); each enters a bench context first that emits ``UserEvent(CallproofBenchStart)``.

Figures, per call and summed:
  handed off        the sandbox agents' CallproofHandoff event arrived (the caller was routed)
  with protocol     the hand-off carried CALLPROOF_PROTOCOL and a call row holds it
  consent heard     times Asterisk played the consent prompt on the call's channel (its log)
  SMS rows          outbox rows of those protocols (``pending`` here: no sender is running)
  recordings final  recording rows ``finalised`` (size, sha256) after the hang-up
  status            the rows' final status; ``served_by``
  silence before the announcement: bench start event -> the row's consent_started_at
                    (median, max), i.e. the AGI script's start-up

Nothing is asserted; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panoramisk import Manager

from callproof.agi_scripts.install import bundle, compile_bundle, install
from callproof.demo import DIALPLAN_DIR, SANDBOX_AGENTS_DIALPLAN, load_sandbox_config, write_config
from callproof.prompts import generate_prompts
from callproof.sandbox import Sandbox, _free_port, originate_call, provision
from callproof.storage import open_database

ABSENT_APP = "callproof_away"
BENCH_DIALPLAN = SANDBOX_AGENTS_DIALPLAN + """
[callproof-bench-fallback-start]
exten => s,1,UserEvent(CallproofBenchStart,Path: fallback)
 same => n,Goto(callproof-entry,s,1)
"""


def channels_of(event: dict) -> list[str]:
    value = event.get("Channel", "")
    return value if isinstance(value, list) else [value]


def consent_plays(console_log: Path, callee: str) -> int:
    count = 0
    for line in console_log.read_text(errors="replace").splitlines():
        m = re.search(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'", line)
        if m and m["chan"] == callee and Path(m["file"]).name.startswith("consent."):
            count += 1
    return count


async def run(calls: int, fallback: str, dialplan_dir: Path) -> dict:
    rootfs = provision()
    work = Path(tempfile.mkdtemp(prefix="callproof-bench-fallback-"))
    prompts_dir = work / "prompts"
    generate_prompts(prompts_dir)
    server: subprocess.Popen | None = None
    try:
        with Sandbox(rootfs, work, dialplan_dir, extra_dialplan=BENCH_DIALPLAN) as sandbox:
            port = _free_port()
            cfg_path = write_config(sandbox, work, prompts_dir, ari={"app": ABSENT_APP}, fastagi={"port": port},
                                    logging={"level": "WARNING"})
            config = load_sandbox_config(cfg_path)
            lib = bundle(work / "agi-lib")
            compile_bundle(lib, "/usr/bin/python3", chroot=rootfs)
            install(work / "agi-bin", cfg_path, python="/usr/bin/python3", pythonpath=lib)
            if fallback == "fastagi":
                server = subprocess.Popen([sys.executable, "-m", "callproof.cli", "--config", str(cfg_path),
                                           "fastagi"], stderr=subprocess.DEVNULL)
                await asyncio.sleep(2)
            manager = Manager(host=sandbox.ami_host, port=sandbox.ami_port, username=sandbox.ami_username,
                              secret=sandbox.ami_password, events="on")
            arrivals: list[tuple[float, dict]] = []
            manager.register_event("UserEvent", lambda _m, e: arrivals.append((time.time(), dict(e))))
            await manager.connect()
            for _ in range(100):
                if manager.authenticated:
                    break
                await asyncio.sleep(0.05)
            variables = {"CALLPROOF_APP": ABSENT_APP, "CALLPROOF_FALLBACK": fallback,
                         "CALLPROOF_FASTAGI": f"agi://127.0.0.1:{port}/callproof"}
            placed = await asyncio.gather(*(asyncio.to_thread(
                originate_call, sandbox, f"119876{53000 + i:05d}", entry_context="callproof-bench-fallback-start",
                variables=variables, max_seconds=120) for i in range(calls)))
            prefixes = [ch["name"].rsplit(";", 1)[0] + ";" for ch in placed]

            def events_of(prefix: str, kind: str) -> list[tuple[float, dict]]:
                return [(t, e) for t, e in arrivals if e.get("UserEvent") == kind
                        and any(str(c).startswith(prefix) for c in channels_of(e))]

            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and not all(events_of(p, "CallproofHandoff") for p in prefixes):
                await asyncio.sleep(0.2)
            await asyncio.sleep(6)  # the agents hang up; hangup handlers finalise the recordings
            manager.close()
            db = await open_database(config)
            per_call = []
            try:
                for prefix in prefixes:
                    handoff = events_of(prefix, "CallproofHandoff")
                    start = events_of(prefix, "CallproofBenchStart")
                    report = handoff[0][1] if handoff else {}
                    row = await db.calls.get_by_protocol(report["Protocol"]) if report.get("Protocol") else None
                    sms = await db.outbox.get_for_protocol(row["protocol"]) if row else []
                    recs = await db.recordings.for_call(row["id"]) if row else []
                    silence = None
                    if row and row["consent_started_at"] and start:
                        silence = datetime.fromisoformat(row["consent_started_at"]).timestamp() - start[0][0]
                    per_call.append({
                        "handed_off": bool(handoff), "status": report.get("Status"), "reason": report.get("Reason"),
                        "protocol": bool(row), "consent_heard": consent_plays(sandbox.console_log, prefix + "2"),
                        "sms_rows": len(sms), "recordings_final": sum(r["state"] == "finalised" for r in recs),
                        "row_status": row["status"] if row else None, "served_by": row["served_by"] if row else None,
                        "silence_before_consent_s": round(silence, 3) if silence is not None else None})
            finally:
                await db.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    silences = [c["silence_before_consent_s"] for c in per_call if c["silence_before_consent_s"] is not None]
    return {
        "calls": calls, "fallback": fallback,
        "handed_off": sum(c["handed_off"] for c in per_call),
        "with_protocol": sum(c["protocol"] for c in per_call),
        "without_protocol": sum(not c["protocol"] for c in per_call),
        "consent_heard_per_call": sorted({c["consent_heard"] for c in per_call}),
        "sms_rows": sum(c["sms_rows"] for c in per_call),
        "recordings_finalised": sum(c["recordings_final"] for c in per_call),
        "row_statuses": sorted({str(c["row_status"]) for c in per_call}),
        "handoff_statuses": sorted({f"{c['status']}/{c['reason']}" for c in per_call}),
        "served_by": sorted({str(c["served_by"]) for c in per_call}),
        "silence_before_consent_s_median": round(statistics.median(silences), 3) if silences else None,
        "silence_before_consent_s_max": max(silences) if silences else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--fallback", choices=("agi", "fastagi", "none"), default="agi")
    parser.add_argument("--dialplan-dir", type=Path, default=DIALPLAN_DIR,
                        help="the contexts to load (default: this installation's)")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.fallback, args.dialplan_dir))
    print(f"{result['calls']} calls while the ARI application was away (fallback={result['fallback']}, "
          f"dialplan {args.dialplan_dir}):")
    for key in ("handed_off", "with_protocol", "without_protocol", "consent_heard_per_call", "sms_rows",
                "recordings_finalised", "row_statuses", "handoff_statuses", "served_by",
                "silence_before_consent_s_median", "silence_before_consent_s_max"):
        print(f"  {key:32} {result[key]}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
