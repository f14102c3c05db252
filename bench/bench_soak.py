"""Soak benchmark: thousands of real calls through the sandbox Asterisk 22 against the
``callproof run`` process; does its memory stay flat?

    sudo .venv/bin/python bench/bench_soak.py            # 8,000 calls, 12 up at once, slope after 3,000 (~12 min)
    sudo .venv/bin/python bench/bench_soak.py --calls 3000 --warmup 1000   # quicker (~5 min), noisier
    sudo .venv/bin/python bench/bench_soak.py --calls 5000 --concurrency 20
    sudo .venv/bin/python bench/bench_soak.py --calls 700 --warmup 100 --tracemalloc 25 --snapshot-every 200

Needs root (the sandbox).  One sandbox Asterisk and one ``callproof run`` process
(``python -m callproof.cli --config <toml> run`` through bench/soak/app_main.py,
logging INFO/json to a file) for the whole run.  --concurrency worker threads
each place a call into ``callproof-entry`` (the shipped dialplan), wait until
its channel is gone and place the next, so that many calls are up at any time,
until --calls calls have been placed.

The calls are short but run the whole flow: the prompts are 40 ms of silence
each (bench/soak/short_prompts.py, in the catalogue's custom directory), the
protocol is read once (``repeat = 0``), the sandbox agent hangs up at once
(--agent-seconds 0), and the customer leg is ulaw (--caller-formats): consent,
protocol and its SMS row (backend ``log``), MixMonitor recording, hand-off,
hang-up, completion.  A call lasts ~2 s.

Every --sample-every calls ended the app process is sampled: VmRSS and RssAnon
(/proc/<pid>/status), open file descriptors, threads, and the app's
``app.stats`` line (asyncio tasks and its per-call dicts; SIGUSR1).  After the
last call, the run waits for the app's after-call work (every call row final),
samples, idles --idle-seconds and samples again (does anything come back?).

Figures: least-squares slope of RSS in MiB per 1,000 calls over the samples
after --warmup calls (target <= 0.2), with the residual and the slope of the
second half alone; where the memory is (the launcher's SIGUSR2 line: SQLite's
allocations, glibc's heap in use / free and per arena, pymalloc's arenas, live
classes); fds, threads, asyncio tasks first/last/max; the calls' final
statuses, recordings and SMS states from the database.  2 cores: ~12 calls/s,
3,000 calls in ~5 minutes.

--tracemalloc FRAMES runs the app under tracemalloc (much slower: use fewer
calls) and takes a snapshot every --snapshot-every calls after the warm-up,
each with no call up (the workers pause); then prints what grew between the
first and the last snapshot, grouped by traceback, in bytes per call.  The RSS
figures of such a run are not the benchmark's.

Output: the samples, the figures, one JSON line.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calls.app_process import AppLog, AppProcess
from calls.common import DIALPLAN_DIR, LANGUAGE
from soak.analysis import compare_snapshots, slopes
from soak.driver import AppSampler, CallDriver, Sample
from soak.short_prompts import write_short_prompts

from callproof.demo import SANDBOX_AGENTS_DIALPLAN, prompts_cache_dir, write_config
from callproof.prompts import generate_prompts
from callproof.sandbox import Sandbox, ari_request, provision

TARGET_MIB_PER_1000 = 0.2
FINAL = ("completed", "abandoned_in_consent", "abandoned_in_protocol", "failed")


def db_figures(path: Path) -> dict[str, dict[str, int]]:
    """Calls by status, recordings by state, SMS by state (read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {name: dict(conn.execute(f"SELECT {col}, count(*) FROM {table} GROUP BY {col}").fetchall())
                for name, table, col in (("calls", "calls", "status"), ("recordings", "recordings", "state"),
                                         ("sms", "sms_outbox", "state"))}
    finally:
        conn.close()


def wait_after_call_work(db: Path, placed: int, timeout: float) -> dict[str, dict[str, int]]:
    """Until every call row is final and no SMS is pending (or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        figures = db_figures(db)
        final = sum(n for s, n in figures["calls"].items() if s in FINAL)
        if (final >= sum(figures["calls"].values()) and figures["sms"].get("pending", 0) == 0) \
                or time.monotonic() > deadline:
            return figures
        time.sleep(0.5)


def print_sample(s: Sample) -> None:
    app, mem = s.app, s.memory
    print(f"{s.calls:>7}{s.at_s:>7.0f}{s.rss_kib / 1024:>8.1f}{s.rss_anon_kib / 1024:>7.1f}"
          f"{mem.get('sqlite_kib', 0) / 1024:>7.2f}{mem.get('malloc_used_kib', 0) / 1024:>7.1f}"
          f"{mem.get('malloc_free_kib', 0) / 1024:>7.1f}{mem.get('py_arenas_kib', 0) / 1024:>7.1f}"
          f"{mem.get('py_used_kib', 0) / 1024:>7.1f}{s.fds:>5}{s.threads:>4}"
          f"{app.get('asyncio_tasks', '-'):>6}{app.get('flows', '-'):>6}{app.get('handed_off', '-'):>6}"
          f"{app.get('recordings_tracked', '-'):>6}", flush=True)


HEADER = (f"{'calls':>7}{'s':>7}{'RSS':>8}{'anon':>7}{'sqlite':>7}{'m.used':>7}{'m.free':>7}{'py.ar':>7}{'py.use':>7}"
          f"{'fds':>5}{'thr':>4}{'tasks':>6}{'flows':>6}{'h/off':>6}{'recs':>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=8000, help="calls to place (default 8000)")
    parser.add_argument("--concurrency", type=int, default=12, help="calls up at once (default 12)")
    parser.add_argument("--warmup", type=int, default=3000,
                        help="calls before the slope is measured: one-time costs, SQLite's page cache "
                             "(2 MiB by default) fills in the first ~650 calls, and glibc's heap settles "
                             "in the first ~3,000 (docs/benchmarks.md)")
    parser.add_argument("--sample-every", type=int, default=100, help="sample the app every N calls ended")
    parser.add_argument("--agent-seconds", type=int, default=0, help="how long the sandbox agent talks")
    parser.add_argument("--caller-formats", default="ulaw", help="ARI originate formats of the customer leg")
    parser.add_argument("--prompt-ms", type=int, default=40, help="length of each (silent) prompt file")
    parser.add_argument("--call-timeout", type=float, default=120.0, help="a call still up after this is stuck")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle time before the last sample")
    parser.add_argument("--completion-timeout", type=float, default=120.0,
                        help="wait at most this long for the app's after-call work")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="run the app under tracemalloc with this many frames, take snapshots")
    parser.add_argument("--snapshot-every", type=int, default=250, help="tracemalloc snapshot every N calls")
    parser.add_argument("--out", type=Path, help="keep the app log (and snapshots) in this directory")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("bench_soak.py needs root (the Asterisk sandbox)", file=sys.stderr)
        return 2

    rootfs = provision()
    prompts_dir = prompts_cache_dir()
    generate_prompts(prompts_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="callproof-soak-"))
    out_dir = args.out.resolve() if args.out else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    custom = write_short_prompts(run_dir / "short-prompts", LANGUAGE, args.prompt_ms)
    app_log = AppLog(out_dir / "callproof.log")
    snapshots_dir = out_dir / "memory"
    launcher = [str(Path(__file__).resolve().parent / "soak" / "app_main.py"), "--memory", str(snapshots_dir)]
    if args.tracemalloc:
        launcher += ["--tracemalloc", str(args.tracemalloc)]
    started = time.monotonic()
    samples: list[Sample] = []
    snapshots: list[tuple[int, Path]] = []
    try:
        with Sandbox(rootfs, run_dir, DIALPLAN_DIR, extra_dialplan=SANDBOX_AGENTS_DIALPLAN,
                     bind_paths=[prompts_dir]) as sandbox:
            config = write_config(sandbox, run_dir, prompts_dir, logging={"level": "INFO", "format": "json"},
                                  prompts={"custom_directory": str(custom)},
                                  protocol_reading={"repeat": 0, "replay_window_ms": 0})
            app = AppProcess(config, app_log, "none", out_dir, launcher=launcher)
            app.start(timeout=60)
            print(f"Asterisk {sandbox.version}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
                  f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.calls} calls, "
                  f"{args.concurrency} up at once, warm-up {args.warmup}; app pid {app.pid}"
                  f"{'; tracemalloc ' + str(args.tracemalloc) + ' frames' if args.tracemalloc else ''}", flush=True)
            driver = CallDriver(sandbox, args.calls, args.concurrency, formats=args.caller_formats,
                                agent_seconds=args.agent_seconds, max_seconds=60, call_timeout=args.call_timeout)
            sampler = AppSampler(app.pid, app_log, driver, snapshots_dir)
            print(HEADER + "   (MiB: RSS, RssAnon, SQLite, malloc in use / free, "
                  "pymalloc arenas / in use)", flush=True)
            try:
                print_sample(sampler.sample(0))
                driver.start()
                next_sample = args.sample_every
                next_snapshot = args.warmup
                while driver.running():
                    if args.tracemalloc and driver.ended >= next_snapshot and driver.placed < args.calls:
                        snapshots.append(take_snapshot(driver, sampler, sandbox, snapshots_dir))
                        next_snapshot += args.snapshot_every
                    if driver.ended >= next_sample:
                        print_sample(sampler.sample())
                        next_sample += args.sample_every
                    time.sleep(0.2)
                driver.join()
                figures_db = wait_after_call_work(run_dir / "callproof.db", driver.placed, args.completion_timeout)
                print("after the last call:")
                print_sample(sampler.sample())
                if args.tracemalloc:
                    snapshots.append(take_snapshot(driver, sampler, sandbox, snapshots_dir))
                time.sleep(args.idle_seconds)
                print(f"after {args.idle_seconds:.0f} s idle:")
                idle = sampler.sample()
                print_sample(idle)
                samples = sampler.samples
            finally:
                app.stop()
    finally:
        app_log.poll()
        if not (args.keep or args.out):
            shutil.rmtree(run_dir, ignore_errors=True)
    wall = time.monotonic() - started

    in_run = samples[:-1]  # the idle sample is not on the line
    figures = slopes(in_run, args.warmup)
    errors = [e for e in app_log.entries if str(e.get("level", "")).lower() in ("error", "critical")]
    warnings = [e for e in app_log.entries if str(e.get("level", "")).lower() == "warning"]
    rss = figures.get("rss", {})
    print(f"\ncalls placed {driver.placed}, originate errors {len(driver.errors)}, stuck {len(driver.stuck)}; "
          f"wall {wall:.0f} s ({driver.placed / max(1.0, samples[-2].at_s if len(samples) > 1 else wall):.1f} "
          f"calls/s)")
    print(f"rows: calls {figures_db['calls']}; recordings {figures_db['recordings']}; sms {figures_db['sms']}")
    for name in ("rss", "rss_anon"):
        if name in figures:
            f = figures[name]
            print(f"{name:>9}: {f['mib_per_1000_calls']:+.3f} MiB per 1,000 calls after {args.warmup} "
                  f"(residual {f['residual_mib']:.3f} MiB; second half {f['second_half_mib_per_1000_calls']:+.3f}); "
                  f"{f['first_mib']} -> {f['last_mib']} MiB")
    if "rss_anon_less_sqlite" in figures:
        f = figures["rss_anon_less_sqlite"]
        print(f"anon-sqlite: {f['mib_per_1000_calls']:+.3f} MiB per 1,000 calls (residual {f['residual_mib']:.3f})")
    for name in ("sqlite", "malloc_used", "malloc_free", "py_arenas", "py_used", "traced"):
        if name in figures:
            f = figures[name]
            print(f"{name:>11}: {f['mib_per_1000_calls']:+.3f} MiB per 1,000 calls; "
                  f"{f['first_mib']} -> {f['last_mib']} MiB")
    if "py_blocks" in figures:
        f = figures["py_blocks"]
        print(f"  py blocks: {f['per_1000_calls']:+d} per 1,000 calls; {f['first']} -> {f['last']}")
    classes = [s.memory.get("object_subclasses") for s in in_run if s.memory.get("object_subclasses")]
    if classes:
        print(f"  classes (object.__subclasses__, garbage included): first {classes[0]}, max {max(classes)}, "
              f"last {classes[-1]}")
    if "malloc_arenas" in figures:
        f = figures["malloc_arenas"]
        print(f"  glibc arenas [KiB from the system, KiB free]: {f['first']} -> {f['last']}")
    for name in ("fds", "threads", "asyncio_tasks"):
        if name in figures:
            f = figures[name]
            print(f"{name:>9}: first {f['first']}, last {f['last']}, max {f['max']}")
    print(f"     idle: RSS {idle.rss_kib / 1024:.1f} MiB after {args.idle_seconds:.0f} s; app.stats {idle.app}")
    print(f"target: <= {TARGET_MIB_PER_1000} MiB per 1,000 calls (RSS slope after warm-up); app log: "
          f"{len(app_log.entries)} lines, {len(errors)} error, {len(warnings)} warning")
    for entry in (errors + warnings)[:10]:
        print("  " + json.dumps(entry, ensure_ascii=False)[:300])
    if len(snapshots) >= 2:
        (c0, first), (c1, last) = snapshots[0], snapshots[-1]
        print()
        print("\n".join(compare_snapshots(first, last, c1 - c0)))
    print(json.dumps({"calls": driver.placed, "concurrency": args.concurrency, "warmup": args.warmup,
                      "wall_s": round(wall, 1), "originate_errors": len(driver.errors), "stuck": len(driver.stuck),
                      "rows": figures_db, "figures": figures, "idle": asdict(idle),
                      "log_errors": len(errors), "log_warnings": len(warnings),
                      "target_mib_per_1000_calls": TARGET_MIB_PER_1000,
                      "ok": bool(rss) and rss["mib_per_1000_calls"] <= TARGET_MIB_PER_1000}))
    return 0


def take_snapshot(driver: CallDriver, sampler: AppSampler, sandbox: Sandbox, directory: Path) -> tuple[int, Path]:
    """Pause the callers, let every call end, snapshot the app: (calls ended, snapshot)."""
    driver.pause()
    try:
        while ari_request(sandbox, "GET", "channels", timeout=30):
            time.sleep(0.5)
        time.sleep(3.0)  # the app's after-call work (recording finalised, completed, SMS sent)
        path = sampler.snapshot(directory)
        if path is None:
            raise RuntimeError("no tracemalloc snapshot written")
        print(f"  snapshot {path.name} at {driver.ended} calls", flush=True)
        return driver.ended, path
    finally:
        driver.resume()


if __name__ == "__main__":
    sys.exit(main())
