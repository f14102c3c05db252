"""AGI path benchmark: per-call overhead and CPU of classic AGI, FastAGI and ARI, in one run.

    sudo .venv/bin/python bench/bench_agi.py [--rounds 3]

Needs root (the sandbox Asterisk 22, see sandbox/ (callproof.sandbox)).  One sandbox runs the
whole benchmark.  Each round places one call per path at the same moment, each with
its own caller number:

  agi       the shipped ``callproof-agi-entry`` context: ``AGI(callproof-agi,all,...)``,
            the classic pyst2 script, started by Asterisk (inside the sandbox's chroot,
            with its python3) once per call, plus once more from the hangup handler;
  fastagi   the shipped ``callproof-fastagi-entry`` context against ``callproof fastagi``,
            run as its own process (``python -m callproof.cli --config <toml> fastagi``);
  ari       the shipped ``callproof-entry`` context against ``callproof run``, its own process.

Each call enters a bench context first that answers it (see BENCH_DIALPLAN), emits
``UserEvent(CallproofBenchStart)`` and then goes to the path's entry context; the sandbox agents
emit ``CallproofHandoff`` when
the call arrives at the hand-off.  Both events reach this script over one AMI connection,
timed on arrival (same link, same latency).

Figures:

  overhead per call = (hand-off event - start event) minus the same span of a fourth call
      placed in the same round, ``dialplan``: plain dialplan playing the same consent file and
      two readings of a fixed protocol, then the same hand-off.  That baseline carries the
      prompt time as Asterisk really plays it and whatever load the machine is under at that
      moment; the difference in audio length between the call's protocol and the fixed one
      (digits differ) is corrected from the WAV headers.  Median over the rounds.
  CPU per call = callproof's CPU (utime+stime from /proc) over the run divided by the calls
      of that path: for fastagi and ari, the server process; for agi, the children
      Asterisk has reaped (cutime+cstime of the Asterisk process: only AGI scripts run
      as its children here), i.e. every classic script run including the hangup handler's.

Ratios are against classic AGI measured in the same run; target: FastAGI overhead <= 1/5
(0.20) of classic AGI's.  No timing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panoramisk import Manager

from callproof.agi_scripts.install import bundle, compile_bundle, install
from callproof.demo import DIALPLAN_DIR, SANDBOX_AGENTS_DIALPLAN, load_sandbox_config, write_config
from callproof.prompts import PromptCatalogue, generate_prompts
from callproof.sandbox import Sandbox, _free_port, originate_call, provision

BENCH_DIALPLAN = SANDBOX_AGENTS_DIALPLAN + """
[callproof-bench-agi-dialplan]
; the baseline: the same audio played by plain dialplan (fixed protocol), then the same hand-off
exten => s,1,Playback(${BENCH_CONSENT})
 same => n,Playback(${BENCH_READING})
 same => n,Playback(${BENCH_READING})
 same => n,Goto(callproof-handoff,s,1)

[callproof-bench-agi-start]
; answered before the clock starts: the sandbox's customer leg is silent, and answering a
; silent channel makes Asterisk wait 500 ms for a first media frame (ast_answer), which would
; count against AGI (ANSWER) but not ARI (raw answer); a real caller's RTP ends that wait at once
exten => s,1,Answer()
 same => n,UserEvent(CallproofBenchStart,Path: ${BENCH_PATH})
 same => n,Goto(${BENCH_ENTRY},s,1)
"""
ENTRY = {"agi": "callproof-agi-entry", "fastagi": "callproof-fastagi-entry", "ari": "callproof-entry",
         "dialplan": "callproof-bench-agi-dialplan"}
FIXED_PROTOCOL = "20260000000000001"
PATHS = ("agi", "fastagi", "ari")


def proc_cpu(pid: int, children: bool = False) -> float:
    """utime+stime (or cutime+cstime) seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    u, s = (fields[13], fields[14]) if children else (fields[11], fields[12])
    return (int(u) + int(s)) / tick


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def prompt_seconds(prompts: PromptCatalogue, language: str, protocol: str, repeat: int = 1) -> float:
    """Audio the caller is played: consent + (1 + repeat) readings of this protocol
    ("protocol is", its digits, a pause between the 4 groups), from the WAV headers."""
    def secs(name: str) -> float:
        return wav_seconds(prompts.prompt(name, language).path)

    reading = secs("protocol-is") + sum(secs(f"digits/{d}") for d in protocol) + 3 * secs("pause")
    return secs("consent") + (1 + repeat) * reading


def channels_of(event) -> list[str]:
    value = event.get("Channel", "")
    return value if isinstance(value, list) else [value]


async def run(rounds: int) -> dict:
    rootfs = provision()
    work = Path(tempfile.mkdtemp(prefix="callproof-bench-agi-"))
    prompts_dir = work / "prompts"
    generate_prompts(prompts_dir)
    procs: list[subprocess.Popen] = []
    try:
        with Sandbox(rootfs, work, DIALPLAN_DIR, extra_dialplan=BENCH_DIALPLAN) as sandbox:
            port = _free_port()
            cfg_path = write_config(sandbox, work, prompts_dir, fastagi={"port": port},
                                    logging={"level": "WARNING"})
            config = load_sandbox_config(cfg_path)
            lib = bundle(work / "agi-lib")
            compile_bundle(lib, "/usr/bin/python3", chroot=rootfs)
            install(work / "agi-bin", cfg_path, python="/usr/bin/python3", pythonpath=lib)
            cli = [sys.executable, "-m", "callproof.cli", "--config", str(cfg_path)]
            logs = {name: open(work / f"{name}.log", "wb")  # noqa: SIM115 (closed with the servers below)
                    for name in ("fastagi", "ari")}
            servers = {"fastagi": subprocess.Popen([*cli, "fastagi"], stderr=logs["fastagi"]),
                       "ari": subprocess.Popen([*cli, "run"], stderr=logs["ari"])}
            procs.extend(servers.values())
            await asyncio.sleep(3)  # connected, listening
            for name, p in servers.items():
                if p.poll() is not None:
                    raise SystemExit(f"{name} server exited: {(work / f'{name}.log').read_text()[-2000:]}")

            manager = Manager(host=sandbox.ami_host, port=sandbox.ami_port, username=sandbox.ami_username,
                              secret=sandbox.ami_password, events="on")
            arrivals: list[tuple[float, dict]] = []
            manager.register_event("UserEvent", lambda _m, e: arrivals.append((time.monotonic(), dict(e))))
            await manager.connect()
            for _ in range(100):
                if manager.authenticated:
                    break
                await asyncio.sleep(0.05)

            asterisk_pid = sandbox.pid
            cpu0 = {"agi": proc_cpu(asterisk_pid, children=True),
                    **{n: proc_cpu(p.pid) for n, p in servers.items()}}
            overhead: dict[str, list[float]] = {p: [] for p in PATHS}
            spans: dict[str, list[float]] = {p: [] for p in PATHS}
            catalogue = PromptCatalogue(prompts_dir)
            prompt_all: list[float] = []
            lang = config.general.default_language
            media = catalogue.protocol_reading_media(lang, FIXED_PROTOCOL, config.protocol_reading.groups)
            baseline_vars = {"BENCH_CONSENT": str(catalogue.prompt("consent", lang).path.with_suffix("")),
                             "BENCH_READING": "&".join(m.removeprefix("sound:") for m in media)}
            fixed_prompt_s = prompt_seconds(catalogue, lang, FIXED_PROTOCOL, config.protocol_reading.repeat)
            baseline: list[float] = []
            n = 0
            for r in range(rounds):
                placed = {}
                for path in (*PATHS, "dialplan"):
                    n += 1
                    variables = {"BENCH_PATH": path, "BENCH_ENTRY": ENTRY[path],
                                 "CALLPROOF_FASTAGI": f"agi://127.0.0.1:{port}/callproof", **baseline_vars}
                    placed[path] = await asyncio.to_thread(
                        originate_call, sandbox, f"119876{r:02d}{n:03d}", entry_context="callproof-bench-agi-start",
                        variables=variables, max_seconds=90)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    done = {}
                    for path, ch in placed.items():
                        prefix = ch["name"].rsplit(";", 1)[0] + ";"
                        mine = [(t, e) for t, e in arrivals if any(c.startswith(prefix) for c in channels_of(e))]
                        start = [t for t, e in mine if e.get("UserEvent") == "CallproofBenchStart"]
                        end = [t for t, e in mine if e.get("UserEvent") == "CallproofHandoff"]
                        if start and end:
                            protocol = next(e for _, e in mine if e.get("UserEvent") == "CallproofHandoff")["Protocol"]
                            protocol = protocol or FIXED_PROTOCOL
                            done[path] = (end[0] - start[0], prompt_seconds(
                                catalogue, config.general.default_language, protocol, config.protocol_reading.repeat))
                    if len(done) == len(placed):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"round {r}: calls did not reach the hand-off: {sorted(set(placed) - set(done))}")
                # Overhead: what this call took beyond the plain-dialplan call of the same round
                # (same load, same moment), corrected for the audio length of its protocol.
                base_span, _ = done.pop("dialplan")
                baseline.append(base_span)
                for path, (span, prompt_s) in done.items():
                    spans[path].append(span)
                    overhead[path].append(span - (base_span + prompt_s - fixed_prompt_s))
                    prompt_all.append(prompt_s)
                await asyncio.sleep(4)  # agents hang up, recordings finalised (hangup handlers)
            await asyncio.sleep(3)
            cpu1 = {"agi": proc_cpu(asterisk_pid, children=True),
                    **{n: proc_cpu(p.pid) for n, p in servers.items()}}
            manager.close()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    result = {"rounds": rounds, "prompt_seconds": round(statistics.median(prompt_all), 3),
              "dialplan_baseline_s": [round(b, 3) for b in baseline], "paths": {}}
    base_overhead = statistics.median(overhead["agi"])
    base_cpu = (cpu1["agi"] - cpu0["agi"]) / rounds
    for path in PATHS:
        ov = statistics.median(overhead[path])
        cpu = (cpu1[path] - cpu0[path]) / rounds
        result["paths"][path] = {
            "overhead_ms_median": round(ov * 1000, 1),
            "overhead_ms_all": [round(o * 1000, 1) for o in overhead[path]],
            "first_step_to_handoff_s_median": round(statistics.median(spans[path]), 3),
            "cpu_ms_per_call": round(cpu * 1000, 1),
            "overhead_vs_agi": round(ov / base_overhead, 3) if base_overhead > 0 else None,
            "cpu_vs_agi": round(cpu / base_cpu, 3) if base_cpu > 0 else None,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="calls per path (one of each per round)")
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    print(f"prompt audio per call: {result['prompt_seconds']} s; {args.rounds} call(s) per path")
    print(f"{'path':<8} {'overhead ms (median)':>21} {'vs AGI':>7} {'CPU ms/call':>12} {'vs AGI':>7}")
    for path, r in result["paths"].items():
        print(f"{path:<8} {r['overhead_ms_median']:>21} {r['overhead_vs_agi']!s:>7} "
              f"{r['cpu_ms_per_call']:>12} {r['cpu_vs_agi']!s:>7}")
    fa = result["paths"]["fastagi"]["overhead_vs_agi"]
    met = "met" if fa is not None and fa <= 0.2 else "NOT met"
    print(f"target FastAGI overhead <= 0.20 x classic AGI: {fa} ({met})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
