"""Call-flow benchmark: real calls through the sandbox Asterisk 22, callproof vs plain dialplan.

    sudo .venv/bin/python bench/bench_calls.py [--levels 1,50,200] [--agent-seconds 2]
    sudo .venv/bin/python bench/bench_calls.py --levels 1,5            # quick check
    sudo .venv/bin/python bench/bench_calls.py --levels 50 --profile py-spy --out DIR

Needs root (the sandbox: see sandbox/ (callproof.sandbox)).  One sandbox Asterisk
runs the whole benchmark.  At each level L, L calls are originated (by
--originate-workers threads) evenly over --ramp-seconds (default 10 s;
0 = all at once); a call lasts ~30 s, so all L calls are up together (the
table shows how many were up once the last was placed).  Each level runs
two modes:

  callproof   calls enter ``callproof-entry`` (the shipped dialplan) and the
              application runs as its own process, ``python -m callproof.cli
              --config <toml> run`` (config from callproof.demo.write_config,
              logging INFO/json, its stderr to a file this script parses);
  dialplan    calls enter ``callproof-bench-dialplan``, a pure-dialplan flow
              doing the same work without callproof: Answer, the same consent
              file, "protocol is" + the 17 digits of a fixed fake protocol in
              groups with the same pause file, read twice, MixMonitor to the
              same kind of path (<root>/YYYY/MM/DD/<protocol>_<caller>_<time>.wav),
              the same hand-off variables, then the same hand-off
              (Goto callproof-handoff -> callproof-agents -> the sandbox agents).
              The callproof application is not running in this mode.

Before a mode is measured, --warmup-calls calls (default 1) go through it
and end, in both modes, so that one-time costs of a freshly started app
(first use of modules, phone-number metadata, first connections) are not
counted as per-call costs.

Both modes use the same callers, the same customer leg
(``originate_call(..., record_path=None)``: it listens until the far end hangs
up) and the same agent time (the sandbox agents talk for --agent-seconds and
hang up).  The two modes alternate which goes first from one level to the
next.  A mode's window starts just before the first originate and ends when
every channel is gone (``GET /ari/channels`` is empty, polled once a second
from a little before the calls can end) and, for callproof, when the app
has logged each handed-off call as completed (recording finalised) and sent
its SMS.

Figures:

  (a) StasisStart -> consent PlaybackStarted, from Asterisk's own event
      timestamps (the app's ``call.timings`` log line, field ``asterisk``);
      median and p99 (nearest rank).  Target: p99 <= 20 ms at 200 calls.
      ("app-side" is the same span on the app's monotonic clock, from the
      moment it handled StasisStart to the moment it read PlaybackStarted.)
  (b) last protocol digit finished -> MixMonitorStart: the same log line's
      ``recording_started_ms - protocol_playback_finished_ms`` (the app marks
      recording_started once AMI's MixMonitorStart event has arrived).
  CPU per call: utime+stime (all threads) of the Asterisk process (the
      process Sandbox.pid names: after its exec chain it *is* asterisk; this
      script checks its name and Asterisk's pid file) and of the callproof
      process, from /proc/<pid>/stat over the mode's window, divided by the
      calls placed.  ratio = (Asterisk + callproof CPU per call in callproof
      mode) / (Asterisk CPU per call in dialplan mode); target <= 1.10.
      The ratio is computed on raw CPU (nothing subtracted).  Before each
      mode, an idle window (--idle-seconds, nothing happening; for callproof
      with the app connected) measures background CPU per second; it is
      reported, and a "net" ratio with background x window subtracted from
      both sides is printed beside the raw one.  callproof's CPU is also
      split by thread (event loop, aiosqlite worker, to_thread workers).

Also reported: calls placed and completed (callproof: ``call.completed`` log
events; dialplan: calls that reached the agents with status ok and left a
non-empty recording), how many reached the agents (counted from Asterisk's
console log), how busy Asterisk was (its CPU seconds per second of window),
and every warning/error line of the app's log.

Reading the figures: Asterisk's own media work (playing prompts, ~25 ms of
CPU per second of playback per call on a small VM) dwarfs callproof's, and
is the same in both modes.  When "Asterisk CPUs busy" approaches the
machine's CPU count, Asterisk itself is saturated (calls last longer than
~30 s in *both* modes) and (a)/(b) then measure that saturation, not
callproof: on a 2-CPU machine that happens between 50 and 200 calls.

Output: a table per level, then one JSON line with all figures.  Figures are
printed, never asserted; timings depend on the machine and its load (the
load average is printed).

Profiling (the figures of a profiled run are not the benchmark's):
--profile py-spy samples the callproof process (all threads, non-blocking,
--spy-rate Hz) during each callproof window and prints where its CPU goes,
by component (self time), activity (inclusive) and function, in ms per call
(each thread's measured CPU spread over its samples; see analyse_pyspy);
--profile perf records on-CPU samples with ``perf record -g`` (kernel vs
interpreter vs C extensions); --profile cprofile runs the app under cProfile
(main thread only, with a large overhead).  Raw output goes into --out (or
the kept run directory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calls.app_process import AppLog, AppProcess
from calls.common import DIALPLAN_DIR, LANGUAGE, TARGET_A_P99_MS, TARGET_CPU_RATIO, asterisk_pid, dialplan_flow, fmt
from calls.profile import print_cprofile, print_profile
from calls.report import level_figures, print_asterisk_side, print_level
from calls.runner import Bench, ModeResult

from callproof.demo import SANDBOX_AGENTS_DIALPLAN, prompts_cache_dir, write_config
from callproof.prompts import PromptCatalogue, generate_prompts
from callproof.sandbox import Sandbox, provision

# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_levels(text: str) -> list[int]:
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError("levels must be positive integers, e.g. 1,50,200")
    return levels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=parse_levels, default=[1, 50, 200],
                        help="concurrent calls per level, comma-separated (default 1,50,200)")
    parser.add_argument("--agent-seconds", type=int, default=2, help="how long the sandbox agent talks (both modes)")
    parser.add_argument("--warmup-calls", type=int, default=1,
                        help="calls placed (and ended) before each mode is measured, in both modes (0: none)")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="idle window measured before each mode")
    parser.add_argument("--settle-seconds", type=float, default=3.0, help="pause before each idle window")
    parser.add_argument("--originate-workers", type=int, default=16, help="threads originating a level's calls")
    parser.add_argument("--ramp-seconds", type=float, default=10.0,
                        help="spread a level's originates evenly over this time (0: all at once); "
                             "calls last ~30 s, so all of them are still up together")
    parser.add_argument("--min-call-seconds", type=float, default=22.0,
                        help="do not poll for the end of the calls before this (the prompts last ~27 s)")
    parser.add_argument("--call-timeout", type=float, default=240.0, help="give up waiting for a level's channels")
    parser.add_argument("--completion-timeout", type=float, default=60.0,
                        help="wait for callproof's after-call work (completed, SMS) at most this long")
    parser.add_argument("--caller-formats", default=None, metavar="FORMATS",
                        help="ARI originate 'formats' of the customer leg, e.g. ulaw (a trunk call); default: "
                             "none given, so the Local channels run at slin192 and Asterisk resamples every "
                             "frame to 192 kHz, ~3/4 of its CPU per call in both modes")
    parser.add_argument("--caller-max-seconds", type=int, default=180, help="the customer leg hangs up after this")
    parser.add_argument("--profile", choices=("none", "py-spy", "perf", "perf-asterisk", "cprofile"), default="none")
    parser.add_argument("--asterisk-stats", action=argparse.BooleanOptionalAction, default=True,
                        help="count the messages each Asterisk taskprocessor handled per call, by mode "
                             "('core show taskprocessors' before and after each window, outside it)")
    parser.add_argument("--show-channels", type=int, default=0, metavar="N",
                        help="once a level's calls are placed, print the formats and translation paths of its "
                             "oldest call's channels N times, 7 s apart (what Asterisk transcodes)")
    parser.add_argument("--spy-rate", type=int, default=500, help="py-spy / perf samples per second")
    parser.add_argument("--app-nice", type=int, default=0,
                        help="run callproof at this nice value (e.g. -10: what a CPUWeight= or its own cgroup "
                             "gives it in production, where it does not share a cgroup with Asterisk)")
    parser.add_argument("--encryption", action=argparse.BooleanOptionalAction, default=False,
                        help="[encryption] enabled, keys made by 'callproof keys init': each recording is "
                             "encrypted at finalisation (compare the ratio with and without)")
    parser.add_argument("--out", type=Path, help="directory for the app log and profiles (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    # Stop cleanly (app, sandbox, run directory) on Ctrl-C and on SIGTERM, even where SIGINT
    # was inherited as ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("bench_calls.py needs root (the Asterisk sandbox)", file=sys.stderr)
        return 2

    rootfs = provision()
    prompts_dir = prompts_cache_dir()
    generate_prompts(prompts_dir)
    prompts = PromptCatalogue(prompts_dir, default_language=LANGUAGE)
    run_dir = Path(tempfile.mkdtemp(prefix="callproof-bench-"))
    out_dir = args.out.resolve() if args.out else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = args.keep or (args.out is None and args.profile != "none")
    recordings = {"callproof": run_dir / "recordings", "dialplan": run_dir / "recordings-dialplan"}
    extra = SANDBOX_AGENTS_DIALPLAN + dialplan_flow(prompts, recordings["dialplan"])
    app_log = AppLog(out_dir / "callproof.log")
    results: list[tuple[ModeResult, ModeResult]] = []
    started = time.monotonic()
    try:
        with Sandbox(rootfs, run_dir, DIALPLAN_DIR, extra_dialplan=extra, bind_paths=[prompts_dir]) as sandbox:
            ast_pid = asterisk_pid(sandbox)
            sections: dict = {"logging": {"level": "INFO", "format": "json"}}
            if args.encryption:
                sections["encryption"] = {"enabled": True, "public_keys_dir": str(run_dir / "keys" / "public"),
                                          "private_keys_dir": str(run_dir / "keys" / "private")}
            config = write_config(sandbox, run_dir, prompts_dir, **sections)
            if args.encryption:
                done = subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config), "keys",
                                       "init", "--by", "bench"], capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"callproof keys init failed: {done.stderr.strip() or done.stdout.strip()}")
            app = AppProcess(config, app_log, args.profile, out_dir, args.spy_rate, args.app_nice)
            bench = Bench(args, sandbox, ast_pid, app, app_log, recordings)
            print(f"Asterisk {sandbox.version} (pid {ast_pid}, Sandbox.pid {sandbox.pid}); "
                  f"Python {platform.python_version()}; {os.cpu_count()} CPUs; "
                  f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; levels {args.levels}; "
                  f"agent talks {args.agent_seconds} s; ramp {args.ramp_seconds} s; app nice {args.app_nice}; "
                  f"caller formats {args.caller_formats or 'default (slin192)'}; "
                  f"encryption {'on' if args.encryption else 'off'}",
                  flush=True)
            try:
                for index, level in enumerate(args.levels):
                    callers = [f"11987{i:06d}" for i in range(1, level + 1)]  # BR mobiles: SMS-able
                    order = ["callproof", "dialplan"] if index % 2 == 0 else ["dialplan", "callproof"]
                    by_mode = {}
                    for mode in order:
                        print(f"level {level}: {mode} ...", flush=True)
                        by_mode[mode] = bench.run_mode(mode, level, callers)
                    cp, dp = by_mode["callproof"], by_mode["dialplan"]
                    results.append((cp, dp))
                    print_level(level_figures(cp, dp), cp, dp)
                    print_asterisk_side(cp, dp)
                    if args.profile in ("py-spy", "perf"):
                        print_profile(cp, args.spy_rate)
                    sys.stdout.flush()
            finally:
                app.stop()
    finally:
        app_log.poll()  # the last shutdown's lines, before the run directory goes
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    if args.profile == "cprofile":
        print_cprofile(out_dir)

    figures = [level_figures(cp, dp) for cp, dp in results]
    print(f"\n{'level':>6}{'done cp/dp':>12}{'(a) med':>9}{'(a) p99':>9}{'(b) med':>9}{'(b) p99':>9}"
          f"{'cp ms/call':>12}{'dp ms/call':>12}{'ratio':>7}{'net':>7}{'errors':>8}")
    for fig in figures:
        cpu = fig["cpu_ms_per_call"]
        print(f"{fig['level']:>6}{str(fig['completed']['callproof']) + '/' + str(fig['completed']['dialplan']):>12}"
              f"{fmt(fig['a_stasis_to_consent_ms']['median']):>9}{fmt(fig['a_stasis_to_consent_ms']['p99']):>9}"
              f"{fmt(fig['b_digits_to_mixmonitor_ms']['median']):>9}{fmt(fig['b_digits_to_mixmonitor_ms']['p99']):>9}"
              f"{fmt(cpu['callproof_total'], 2):>12}{fmt(cpu['dialplan_asterisk'], 2):>12}"
              f"{fmt(fig['cpu_ratio'], 2):>7}{fmt(fig['cpu_ratio_net'], 2):>7}{fig['app_log_errors']:>8}")
    print(f"(ms; (a) StasisStart -> consent PlaybackStarted, Asterisk stamps, target p99 <= {TARGET_A_P99_MS:.0f} "
          f"at 200; (b) last digit -> MixMonitorStart; ratio = CPU per call callproof (Asterisk + app) / dialplan-only "
          f"Asterisk, raw, target <= {TARGET_CPU_RATIO:.2f}; net = idle CPU subtracted from both)")
    run_errors = [e for e in app_log.entries if str(e.get("level", "")).lower() in ("error", "critical")]
    run_warnings = [e for e in app_log.entries if str(e.get("level", "")).lower() == "warning"]
    print(f"whole app log (start-ups, warm-ups, windows, shutdowns): {len(app_log.entries)} lines, "
          f"{len(run_errors)} error, {len(run_warnings)} warning, {len(app_log.other_lines)} not JSON")
    for e in (run_errors + run_warnings)[:10]:
        print(f"    {json.dumps(e, ensure_ascii=False)[:400]}")
    for line in app_log.other_lines[:10]:
        print(f"    (not JSON) {line[:400]}")
    if keep or args.out:
        print(f"app log: {app_log.path}")
    if keep:
        print(f"run directory kept: {run_dir}")
    print(json.dumps({
        "benchmark": "bench_calls",
        "levels": figures,
        "agent_seconds": args.agent_seconds,
        "idle_seconds": args.idle_seconds,
        "cpu_ratio_basis": "raw (no idle subtracted); cpu_ratio_net subtracts idle CPU rate x window",
        "percentile": "nearest rank",
        "targets": {"a_p99_ms_at_200": TARGET_A_P99_MS, "cpu_ratio_max": TARGET_CPU_RATIO},
        "app_log_whole_run": {"lines": len(app_log.entries), "errors": len(run_errors),
                              "warnings": len(run_warnings), "not_json": len(app_log.other_lines)},
        "profile": args.profile,
        "encryption": args.encryption,
        "app_nice": args.app_nice,
        "warmup_calls": args.warmup_calls,
        "ramp_seconds": args.ramp_seconds,
        "caller_formats": args.caller_formats,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(time.monotonic() - started, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
