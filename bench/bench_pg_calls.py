"""CPU per call of ``callproof run`` on PostgreSQL vs SQLite: the same calls, one run (#14 item 8).

    sudo .venv/bin/python bench/bench_pg_calls.py [--calls 50] [--rounds 1] [--agent-seconds 2]

Needs root (the sandbox) and Debian's ``postgresql`` (a throw-away cluster, tests/pg_cluster.py,
unix socket only, fsync off as in the tests).  One sandbox Asterisk; for each engine a
``callproof --config <toml> run`` process of its own (the same configuration but for
``[storage]``: a SQLite file, or ``[storage] url`` on a fresh database of the cluster), driven
by the call benchmark's runner (bench/calls/runner.py, its "callproof" mode): a warm-up call,
an idle window, then ``--calls`` real calls through ``callproof-entry`` spread over
``--ramp-seconds``, with the full prompts (~30 s a call), until every channel is gone and
the app has logged each call completed and its SMS sent.  The engines alternate which goes
first from one round to the next.

Figures, per engine: the callproof process's CPU (utime+stime, all threads) over the window
divided by the calls placed, raw and with its idle rate subtracted ("net"); for PostgreSQL
also the server's CPU per call (its processes: postmaster and backends), which runs on the
database host in production, so it is reported beside the ratio, not in it.

    ratio = callproof CPU per call on PostgreSQL / on SQLite     (target <= 1.05)

Printed, never asserted: one line per engine and round, then one JSON line.

Finding where the CPU goes (the figures of such a run are not the benchmark's):
``--profile py-spy`` samples each engine's callproof process over its window (py-spy from the
virtual environment or the PATH; the analysis of bench/bench_calls.py: ms per call by
component, thread and function), ``--profile perf`` records it with ``perf record -g``;
``--statements`` has the server log every statement of the bench database and prints the
statements per call of the window, the most frequent first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calls.app_process import AppLog, AppProcess
from calls.common import CLK_TCK, DIALPLAN_DIR, asterisk_pid, fmt
from calls.profile import print_profile
from calls.runner import Bench, ModeResult

from callproof.demo import SANDBOX_AGENTS_DIALPLAN, prompts_cache_dir, write_config
from callproof.prompts import generate_prompts
from callproof.sandbox import Sandbox, provision

TARGET_RATIO = 1.05
ENGINES = ("sqlite", "postgresql")


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU of a PostgreSQL server: its postmaster (with the backends it reaped) and its
    living children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        pid, ppid = int(entry), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class ServerMeter:
    """The PostgreSQL server's CPU over each callproof window (a Bench's cpu() hook), and
    where its log stood (``--statements``: the statements of the window)."""

    def __init__(self, bench: Bench, data_dir: Path, server_log: Path):
        self.windows: list[float] = []
        self.log_windows: list[tuple[int, int]] = []
        self._inner = bench.cpu
        self._data_dir = data_dir
        self._server_log = server_log
        self._last: float | None = None
        self._last_log = 0

        def cpu(with_app: bool) -> tuple[float, float]:
            now = server_cpu_seconds(self._data_dir)
            log_at = self._server_log.stat().st_size if self._server_log.exists() else 0
            if self._last is not None:
                self.windows.append(now - self._last)
                self.log_windows.append((self._last_log, log_at))
            self._last, self._last_log = now, log_at
            return self._inner(with_app)

        bench.cpu = cpu  # type: ignore[method-assign]


_LOGGED = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)")


def statements_between(server_log: Path, span: tuple[int, int]) -> Counter[str]:
    """The statements the server logged between two offsets of its log (first line of each)."""
    with open(server_log, "rb") as fh:
        fh.seek(span[0])
        text = fh.read(span[1] - span[0]).decode(errors="replace")
    found: Counter[str] = Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _LOGGED.search(line)
        if match:
            # a statement written from its own line on (a triple-quoted constant): its first line
            first = match.group(1).strip() or next((ln.strip() for ln in lines[i + 1:i + 3] if ln.strip()), "")
            found[re.sub(r"\s+", " ", first)[:110]] += 1
    return found


def print_statements(found: Counter[str], calls: int, top: int = 40) -> dict[str, Any]:
    total = sum(found.values())
    print(f"    statements: {total} in the window = {total / calls:.1f} per call; the most frequent (per call):")
    for text, count in found.most_common(top):
        print(f"      {count / calls:>6.2f}  {text}")
    return {"statements_per_call": total / calls,
            "top": [[text, round(count / calls, 2)] for text, count in found.most_common(top)]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="calls per engine and round (default 50)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (engines alternate which goes first)")
    parser.add_argument("--agent-seconds", type=int, default=2, help="how long the sandbox agent talks")
    parser.add_argument("--warmup-calls", type=int, default=1, help="calls placed and ended before each window")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle window before each engine's calls")
    parser.add_argument("--settle-seconds", type=float, default=3.0)
    parser.add_argument("--ramp-seconds", type=float, default=10.0, help="spread the calls over this time")
    parser.add_argument("--originate-workers", type=int, default=16)
    parser.add_argument("--min-call-seconds", type=float, default=22.0)
    parser.add_argument("--call-timeout", type=float, default=240.0)
    parser.add_argument("--completion-timeout", type=float, default=60.0)
    parser.add_argument("--caller-formats", default="ulaw", help="the customer leg's formats (a trunk call)")
    parser.add_argument("--caller-max-seconds", type=int, default=180)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--profile", choices=("none", "py-spy", "perf"), default="none",
                        help="sample each engine's callproof process over its window")
    parser.add_argument("--spy-rate", type=int, default=500, help="samples per second (--profile)")
    parser.add_argument("--statements", action="store_true",
                        help="count the statements PostgreSQL runs per call (its statement log)")
    args = parser.parse_args()
    # what the runner reads and this benchmark does not offer
    args.asterisk_stats, args.show_channels = False, 0
    return args


def engine_line(engine: str, r: ModeResult, server_s: float | None) -> dict[str, Any]:
    per_call = r.per_call_ms(r.app_cpu_s)
    idle_rate = r.idle_app_cpu_s / r.idle_s if r.idle_s else 0.0
    net = r.per_call_ms(r.app_cpu_s - idle_rate * r.window_s)
    return {"engine": engine, "placed": r.placed, "completed": r.completed, "sms_sent": r.sms_sent,
            "window_s": round(r.window_s, 1), "app_cpu_ms_per_call": per_call, "app_cpu_ms_per_call_net": net,
            "app_idle_ms_per_s": round(idle_rate * 1000, 2),
            "server_cpu_ms_per_call": None if server_s is None else server_s / r.placed * 1000,
            "errors": len(r.log_errors), "warnings": len(r.log_warnings)}


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("bench_pg_calls.py needs root (the Asterisk sandbox)", file=sys.stderr)
        return 2
    from tests.pg_cluster import start_cluster

    rootfs = provision()
    prompts_dir = prompts_cache_dir()
    generate_prompts(prompts_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="callproof-bench-pg-"))
    cluster = start_cluster()
    lines: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with Sandbox(rootfs, run_dir, DIALPLAN_DIR, extra_dialplan=SANDBOX_AGENTS_DIALPLAN,
                     bind_paths=[prompts_dir]) as sandbox:
            ast_pid = asterisk_pid(sandbox)
            cluster.execute("CREATE DATABASE bench")
            if args.statements:
                cluster.execute("ALTER DATABASE bench SET log_statement = 'all'")
            server_log = cluster.root / "server.log"
            benches: dict[str, tuple[Bench, ServerMeter | None]] = {}
            for engine in ENGINES:
                engine_dir = run_dir / engine
                engine_dir.mkdir()
                storage = {"url": cluster.url("bench")} if engine == "postgresql" else {}
                config = write_config(sandbox, engine_dir, prompts_dir, storage=storage,
                                      logging={"level": "INFO", "format": "json"})
                app_log = AppLog(engine_dir / "callproof.log")
                app = AppProcess(config, app_log, args.profile, engine_dir, args.spy_rate)
                bench = Bench(args, sandbox, ast_pid, app, app_log, {"callproof": engine_dir / "recordings"})
                benches[engine] = (bench, ServerMeter(bench, cluster.data_dir, server_log)
                                   if engine == "postgresql" else None)
            print(f"Asterisk {sandbox.version}; Python {platform.python_version()}; {os.cpu_count()} CPUs; "
                  f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.calls} calls per engine, "
                  f"{args.rounds} round(s); caller formats {args.caller_formats}", flush=True)
            for round_no in range(args.rounds):
                order = ENGINES if round_no % 2 == 0 else ENGINES[::-1]
                for engine in order:
                    bench, meter = benches[engine]
                    callers = [f"11987{round_no:02d}{i:04d}" for i in range(1, args.calls + 1)]
                    print(f"round {round_no + 1}: {engine} ...", flush=True)
                    result = bench.run_mode("callproof", args.calls, callers)
                    # the meter saw: settle->idle start, idle, idle end->window start, window
                    server_s = meter.windows[-1] if meter is not None and meter.windows else None
                    line = {"round": round_no + 1, **engine_line(engine, result, server_s)}
                    lines.append(line)
                    print(f"  {engine:>10}: {line['completed']}/{line['placed']} completed, "
                          f"{line['sms_sent']} SMS; callproof {fmt(line['app_cpu_ms_per_call'], 2)} ms CPU/call "
                          f"(net {fmt(line['app_cpu_ms_per_call_net'], 2)}); PostgreSQL server "
                          f"{fmt(line['server_cpu_ms_per_call'], 2)} ms/call; window {line['window_s']} s; "
                          f"log errors {line['errors']}, warnings {line['warnings']}", flush=True)
                    for message in (result.log_errors + result.log_warnings)[:5]:
                        print(f"      {message[:300]}")
                    if args.profile != "none":
                        print_profile(result, args.spy_rate)
                    if args.statements and meter is not None and meter.log_windows and result.placed:
                        line["statements"] = print_statements(
                            statements_between(server_log, meter.log_windows[-1]), result.placed)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"run directory kept: {run_dir}")

    def total(engine: str, key: str) -> float | None:
        picked = [ln for ln in lines if ln["engine"] == engine and ln[key] is not None]
        placed = sum(ln["placed"] for ln in picked)
        return sum(ln[key] * ln["placed"] for ln in picked) / placed if placed else None

    per_call = {e: total(e, "app_cpu_ms_per_call") for e in ENGINES}
    net = {e: total(e, "app_cpu_ms_per_call_net") for e in ENGINES}
    ratio = per_call["postgresql"] / per_call["sqlite"] if per_call["sqlite"] and per_call["postgresql"] else None
    ratio_net = net["postgresql"] / net["sqlite"] if net["sqlite"] and net["postgresql"] else None
    print(f"\ncallproof CPU per call: SQLite {fmt(per_call['sqlite'], 2)} ms, PostgreSQL "
          f"{fmt(per_call['postgresql'], 2)} ms; ratio {fmt(ratio, 3)} (net {fmt(ratio_net, 3)}), "
          f"target <= {TARGET_RATIO:.2f}; PostgreSQL server {fmt(total('postgresql', 'server_cpu_ms_per_call'), 2)} "
          f"ms/call (on the database host in production)")
    print(json.dumps({"benchmark": "bench_pg_calls", "runs": lines, "ratio": ratio, "ratio_net": ratio_net,
                      "target_ratio_max": TARGET_RATIO, "calls": args.calls, "rounds": args.rounds,
                      "agent_seconds": args.agent_seconds, "caller_formats": args.caller_formats,
                      "python": platform.python_version(), "cpus": os.cpu_count(),
                      "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                      "elapsed_s": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
