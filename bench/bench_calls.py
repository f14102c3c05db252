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
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from callproof.demo import SANDBOX_AGENTS_DIALPLAN, prompts_cache_dir, write_config  # noqa: E402
from callproof.prompts import PromptCatalogue, generate_prompts  # noqa: E402
from callproof.sandbox import Sandbox, SandboxError, ari_request, originate_call, provision  # noqa: E402

DIALPLAN_DIR = REPO_ROOT / "dialplan"
BENCH_CONTEXT = "callproof-bench-dialplan"
CALLPROOF_ENTRY = "callproof-entry"
FAKE_PROTOCOL = "20260000000000001"
LANGUAGE = "pt_BR"  # the app's default language (write_config does not change it)
TIMEZONE = "America/Sao_Paulo"  # the app's default [general] timezone
READINGS = 2  # protocol_reading.repeat = 1 (default): read twice
TARGET_A_P99_MS = 20.0
TARGET_CPU_RATIO = 1.10
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads, living and exited)."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime of each living thread of a process, by thread id."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            data = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(name))
    return found


def asterisk_pid(sandbox: Sandbox) -> int:
    """The real Asterisk process of this sandbox.

    ``Sandbox.pid`` is the process ``start()`` spawned (setpriv -> unshare ->
    sh -> chroot, each exec'ing the next, so it ends up being asterisk); check
    that, fall back to its descendants, and cross-check Asterisk's pid file.
    """
    pid = sandbox.pid
    if pid is None:
        raise SandboxError("sandbox not running")
    candidates = [pid]
    while candidates and _comm(candidates[0]) != "asterisk":
        candidates = candidates[1:] + _children(candidates[0])
    if not candidates:
        raise SandboxError(f"no asterisk process under pid {pid}")
    found = candidates[0]
    try:
        written = int((sandbox.run_dir / "run" / "asterisk.pid").read_text().strip())
    except (OSError, ValueError):
        written = None
    if written is not None and written != found:
        raise SandboxError(f"asterisk pid file says {written}, process tree says {found}")
    return found


def ari_timestamp(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z")


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------
# the pure-dialplan flow
# --------------------------------------------------------------------------

def dialplan_flow(prompts: PromptCatalogue, recordings_root: Path) -> str:
    """[callproof-bench-dialplan]: callproof's steps done by the dialplan alone."""
    strip = lambda media: media.removeprefix("sound:")  # noqa: E731
    consent = strip(prompts.prompt("consent", LANGUAGE).media)
    reading = "&".join(strip(m) for m in prompts.protocol_reading_media(LANGUAGE, FAKE_PROTOCOL))
    folder = f"${{STRFTIME(${{EPOCH}},{TIMEZONE},%Y/%m/%d)}}"
    stamp = f"${{STRFTIME(${{EPOCH}},{TIMEZONE},%Y%m%d-%H%M%S)}}"
    return f"""
[{BENCH_CONTEXT}]
; bench/bench_calls.py baseline: consent, protocol read twice, MixMonitor, hand-off; no ARI
exten => s,1,Answer()
 same => n,Playback({consent})
 same => n,Set(BENCH_PROTOCOL={FAKE_PROTOCOL})
 same => n,Set(BENCH_READS=0)
 same => n(read),Playback({reading})
 same => n,Set(BENCH_READS=$[${{BENCH_READS}} + 1])
 same => n,GotoIf($[${{BENCH_READS}} < {READINGS}]?read)
 same => n,Set(BENCH_FILE={recordings_root}/{folder}/${{BENCH_PROTOCOL}}_${{FILTER(0-9,${{CALLERID(num)}})}}_{stamp}.wav)
 same => n,MixMonitor(${{BENCH_FILE}})
 same => n,Set(CALLPROOF_PROTOCOL=${{BENCH_PROTOCOL}})
 same => n,Set(CALLPROOF_RECORDING=${{BENCH_FILE}})
 same => n,Set(CALLPROOF_STATUS=ok)
 same => n,Goto(callproof-handoff,s,1)
"""


# --------------------------------------------------------------------------
# the callproof process and its log
# --------------------------------------------------------------------------

class AppLog:
    """The app's JSON log (its stderr), read incrementally."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self.other_lines: list[str] = []  # not JSON (e.g. a traceback printed raw)
        self._offset = 0
        self._partial = b""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                self.other_lines.append(line)
                continue
            if isinstance(entry, dict):
                self.entries.append(entry)
            else:
                self.other_lines.append(line)

    def mark(self) -> tuple[int, int]:
        self.poll()
        return len(self.entries), len(self.other_lines)

    def since(self, mark: tuple[int, int]) -> tuple[list[dict[str, Any]], list[str]]:
        self.poll()
        return self.entries[mark[0]:], self.other_lines[mark[1]:]

    def count(self, mark: tuple[int, int], msg: str) -> int:
        entries, _ = self.since(mark)
        return sum(1 for e in entries if e.get("msg") == msg)


class AppProcess:
    """``python -m callproof.cli --config <toml> run`` as a child process."""

    def __init__(self, config_path: Path, log: AppLog, profile: str, out_dir: Path, spy_rate: int = 500,
                 nice: int = 0):
        self.config_path = config_path
        self.nice = nice
        self.spy_rate = spy_rate
        self.log = log
        self.profile = profile
        self.out_dir = out_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.spy: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPROOF_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "callproof.cli", "--config", str(self.config_path), "run"]
        self._starts += 1
        if self.profile == "cprofile":
            prof = self.out_dir / f"cprofile-{self._starts}.prof"
            command[1:1] = ["-m", "cProfile", "-o", str(prof)]
        mark = self.log.mark()
        if self.nice:
            command[:0] = ["nice", "-n", str(self.nice)]
        with open(self.log.path, "ab") as out:
            self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while True:
            entries, _ = self.log.since(mark)
            seen = {e.get("msg") for e in entries}
            if {"ari.connected", "ami.ready"} <= seen:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"callproof exited with {self.proc.returncode}; see {self.log.path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"callproof not connected after {timeout} s; see {self.log.path}")
            time.sleep(0.1)

    def start_spy(self, name: str) -> Path | None:
        """Start the chosen sampling profiler on the app (py-spy or perf); None when not profiling."""
        if self.profile == "py-spy":
            spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            output = self.out_dir / f"py-spy-{name}.txt"
            command = [spy_bin, "record", "--pid", str(self.pid), "--rate", str(self.spy_rate), "--nonblocking",
                       "--threads", "--format", "raw", "--output", str(output)]
        elif self.profile == "perf":
            output = self.out_dir / f"perf-{name}.data"
            command = ["perf", "record", "-F", str(self.spy_rate), "-g", "-p", str(self.pid), "-o", str(output)]
        else:
            return None
        self.spy = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach
        return output

    def stop_spy(self) -> None:
        if self.spy is None:
            return
        self.spy.send_signal(signal.SIGINT)
        try:
            _, err = self.spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.spy.kill()
            _, err = self.spy.communicate()
        if self.spy.returncode not in (0, -signal.SIGINT):
            print(f"{self.profile} exited with {self.spy.returncode}: {err.decode(errors='replace')[-500:]}",
                  file=sys.stderr)
        self.spy = None

    def stop(self) -> None:
        self.stop_spy()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --------------------------------------------------------------------------
# driving one mode at one level
# --------------------------------------------------------------------------

@dataclass
class ModeResult:
    mode: str
    level: int
    placed: int = 0
    originate_errors: list[str] = field(default_factory=list)
    originate_spread_s: float = 0.0
    window_s: float = 0.0
    asterisk_cpu_s: float = 0.0
    app_cpu_s: float = 0.0
    idle_s: float = 0.0
    idle_asterisk_cpu_s: float = 0.0
    idle_app_cpu_s: float = 0.0
    reached_agents: int = 0
    reached_agents_ok: int = 0
    recordings: int = 0
    completed: int = 0
    channels_left: int = 0
    calls_up_after_ramp: int = 0
    # callproof only
    a_ms: list[float] = field(default_factory=list)
    a_app_ms: list[float] = field(default_factory=list)
    b_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    sms_sent: int = 0
    recordings_finalised: int = 0
    app_threads_cpu_s: dict[int, float] = field(default_factory=dict)  # by thread id, over the window
    log_warnings: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    profile_file: str | None = None
    app_pid: int = 0

    def per_call_ms(self, cpu_s: float) -> float | None:
        return cpu_s / self.placed * 1000 if self.placed else None

    @property
    def total_cpu_s(self) -> float:
        return self.asterisk_cpu_s + self.app_cpu_s

    @property
    def idle_rate_ms_per_s(self) -> float:
        cpu = self.idle_asterisk_cpu_s + self.idle_app_cpu_s
        return cpu / self.idle_s * 1000 if self.idle_s else 0.0

    @property
    def net_cpu_s(self) -> float:
        return self.total_cpu_s - self.idle_rate_ms_per_s / 1000 * self.window_s


class Bench:
    def __init__(self, args: argparse.Namespace, sandbox: Sandbox, ast_pid: int, app: AppProcess,
                 app_log: AppLog, recordings: dict[str, Path]):
        self.args = args
        self.sandbox = sandbox
        self.ast_pid = ast_pid
        self.app = app
        self.app_log = app_log
        self.recordings = recordings

    # -- observation -----------------------------------------------------
    def console_mark(self) -> int:
        try:
            return self.sandbox.console_log.stat().st_size
        except OSError:
            return 0

    def handoffs_since(self, offset: int) -> Counter[str]:
        """CallproofHandoff UserEvents the sandbox agents logged (status -> count), from the console log."""
        with open(self.sandbox.console_log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        statuses: Counter[str] = Counter()
        for line in text.splitlines():
            if "UserEvent(" in line and "CallproofHandoff" in line:
                match = re.search(r"Status: ([^,\"]*)", line)
                statuses[match.group(1).strip() if match else "?"] += 1
        return statuses

    def recording_files(self, mode: str) -> dict[Path, int]:
        root = self.recordings[mode]
        return {p: p.stat().st_size for p in root.rglob("*.wav")} if root.exists() else {}

    def channel_count(self) -> int:
        return len(ari_request(self.sandbox, "GET", "channels", timeout=30) or [])

    def cpu(self, with_app: bool) -> tuple[float, float]:
        return cpu_seconds(self.ast_pid), cpu_seconds(self.app.pid) if with_app else 0.0

    def wait_channels_gone(self, since: float, timeout: float) -> int:
        """Poll ARI once a second (from --min-call-seconds after ``since``) until no channel is left."""
        time.sleep(max(0.0, since + self.args.min_call_seconds - time.monotonic()))
        while True:
            left = self.channel_count()
            if left == 0 or time.monotonic() > since + timeout:
                return left
            time.sleep(1.0)

    def warm_up(self, mode: str, calls: int) -> None:
        """Calls through the mode's flow before measuring: a fresh app process pays one-time costs
        (imports on first use, phone-number metadata, first connections) on its first call."""
        entry = CALLPROOF_ENTRY if mode == "callproof" else BENCH_CONTEXT
        started = time.monotonic()
        for i in range(calls):
            originate_call(self.sandbox, f"11986{i:06d}", entry_context=entry, record_path=None,
                           max_seconds=self.args.caller_max_seconds,
                           variables={"SANDBOX_AGENT_SECONDS": str(self.args.agent_seconds)})
        self.wait_channels_gone(started, self.args.call_timeout)
        if mode == "callproof":  # and its after-call work
            deadline = time.monotonic() + self.args.completion_timeout
            while time.monotonic() < deadline:
                names = Counter(e.get("msg") for e in self.app_log.since((0, 0))[0])
                if names["call.completed"] >= names["call.handed_off"] and names["call.timings"]:
                    break
                time.sleep(0.2)

    # -- one mode ---------------------------------------------------------
    def run_mode(self, mode: str, level: int, callers: list[str]) -> ModeResult:
        args = self.args
        result = ModeResult(mode=mode, level=level)
        with_app = mode == "callproof"
        if with_app:
            self.app.start()
        try:
            if args.warmup_calls:
                self.warm_up(mode, args.warmup_calls)
            time.sleep(args.settle_seconds)
            # background: the same processes with nothing to do
            c0, t0 = self.cpu(with_app), time.monotonic()
            time.sleep(args.idle_seconds)
            c1, t1 = self.cpu(with_app), time.monotonic()
            result.idle_s = t1 - t0
            result.idle_asterisk_cpu_s, result.idle_app_cpu_s = c1[0] - c0[0], c1[1] - c0[1]

            log_mark = self.app_log.mark()
            console_mark = self.console_mark()
            files_before = self.recording_files(mode)
            if with_app:
                spy = self.app.start_spy(f"L{level}")
                result.profile_file = str(spy) if spy else None
            entry = CALLPROOF_ENTRY if with_app else BENCH_CONTEXT
            variables = {"SANDBOX_AGENT_SECONDS": str(args.agent_seconds)}

            ramp = args.ramp_seconds if level > 1 else 0.0

            def place(job: tuple[int, str]) -> str | None:
                index, caller = job
                time.sleep(max(0.0, t_start + ramp * index / level - time.monotonic()))
                try:
                    originate_call(self.sandbox, caller, entry_context=entry, record_path=None,
                                   max_seconds=args.caller_max_seconds, variables=variables)
                    return None
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    return f"{type(exc).__name__}: {exc}"

            threads_start = thread_cpu_seconds(self.app.pid) if with_app else {}
            c_start, t_start = self.cpu(with_app), time.monotonic()
            with ThreadPoolExecutor(max_workers=min(args.originate_workers, level)) as pool:
                errors = list(pool.map(place, enumerate(callers)))
            result.originate_spread_s = time.monotonic() - t_start
            result.originate_errors = [e for e in errors if e]
            result.placed = len(callers) - len(result.originate_errors)
            # how many calls are up together once all are placed (2 Local channels per call)
            result.calls_up_after_ramp = self.channel_count() // 2

            # wait for every channel to be gone; calls cannot end before the prompts have played
            result.channels_left = self.wait_channels_gone(t_start, args.call_timeout)
            if with_app:  # the app's after-call work: recording finalised, call completed, SMS sent
                wait_until = time.monotonic() + args.completion_timeout
                while time.monotonic() < wait_until:
                    entries, _ = self.app_log.since(log_mark)
                    names = Counter(e.get("msg") for e in entries)
                    if (names["call.completed"] >= names["call.handed_off"]
                            and names["sms.sent"] + names["sms.dead"] >= names["protocol.allocated"]
                            and names["call.timings"] >= result.placed):
                        break
                    time.sleep(0.2)
            c_end, t_end = self.cpu(with_app), time.monotonic()
            if with_app:
                threads_end = thread_cpu_seconds(self.app.pid)
                result.app_pid = self.app.pid
                result.app_threads_cpu_s = {tid: cpu - threads_start.get(tid, 0.0)
                                            for tid, cpu in sorted(threads_end.items())}
                self.app.stop_spy()
            result.window_s = t_end - t_start
            result.asterisk_cpu_s = c_end[0] - c_start[0]
            result.app_cpu_s = c_end[1] - c_start[1]

            statuses = self.handoffs_since(console_mark)
            result.reached_agents = sum(statuses.values())
            result.reached_agents_ok = statuses.get("ok", 0)
            files_after = self.recording_files(mode)
            new_files = {p: s for p, s in files_after.items() if p not in files_before}
            result.recordings = sum(1 for s in new_files.values() if s > 44)
            if with_app:
                self._collect_app_figures(result, log_mark)
            else:
                result.completed = min(result.reached_agents_ok, result.recordings)
        finally:
            if with_app:
                self.app.stop()
        return result

    def _collect_app_figures(self, result: ModeResult, log_mark: tuple[int, int]) -> None:
        entries, other = self.app_log.since(log_mark)
        outcomes: Counter[str] = Counter()
        for e in entries:
            msg = e.get("msg")
            level = str(e.get("level", "")).lower()
            if level in ("error", "critical"):
                result.log_errors.append(json.dumps(e, ensure_ascii=False)[:400])
            elif level == "warning":
                result.log_warnings.append(json.dumps(e, ensure_ascii=False)[:400])
            if msg == "call.completed":
                result.completed += 1
            elif msg == "sms.sent":
                result.sms_sent += 1
            elif msg == "recording.finalised":
                result.recordings_finalised += 1
            elif msg == "call.timings":
                outcomes[str(e.get("outcome"))] += 1
                stamps = e.get("asterisk") or {}
                if "stasis_start" in stamps and "consent_playback_started" in stamps:
                    span = ari_timestamp(stamps["consent_playback_started"]) - ari_timestamp(stamps["stasis_start"])
                    result.a_ms.append(span.total_seconds() * 1000)
                if "consent_playback_started_ms" in e:
                    result.a_app_ms.append(float(e["consent_playback_started_ms"]))
                if "recording_started_ms" in e and "protocol_playback_finished_ms" in e:
                    result.b_ms.append(float(e["recording_started_ms"]) - float(e["protocol_playback_finished_ms"]))
        result.log_errors.extend(f"(not JSON) {line[:400]}" for line in other)
        result.outcomes = dict(outcomes)


# --------------------------------------------------------------------------
# profile analysis (py-spy raw = collapsed stacks)
# --------------------------------------------------------------------------

# Two views of the py-spy samples.  "Component" is exclusive: the innermost
# frame's package (a few split by context), so shares add up to 100 %.
# "Activity" is inclusive: a sample counts for every activity on its stack.
def _where(frame: str) -> str:
    match = re.search(r"\((.*?)(?::\d+)?\)$", frame)
    return match.group(1) if match else ""


# asyncio functions whose self time is mostly the send()/recv() system call itself
SOCKET_CALLS = {"_SelectorSocketTransport.write", "_SelectorSocketTransport._read_ready__data_received",
                "_SelectorSocketTransport._read_ready__get_buffer", "_SelectorSocketTransport._read_ready",
                "BaseSelectorEventLoop._write_to_self", "BaseSelectorEventLoop._read_from_self"}


def component(thread: str, frames: list[str]) -> str:
    stack = ";".join(frames)
    if "_connection_worker_thread" in stack:
        if any(x in _where(frames[-1]) for x in ("aiosqlite/", "queue.py", "threading.py", "asyncio/")):
            return "aiosqlite worker thread: hop overhead (queue, wake-up, call_soon_threadsafe)"
        return "aiosqlite worker thread: SQLite statements (our *_sync functions)"
    if "asyncio_" in thread or "ThreadPoolExecutor" in thread:
        return "to_thread workers: recording sha256 + WAV header"
    if "callproof/logs.py" in stack or "logging/" in stack:
        return "logging (JsonFormatter, json.dumps, handler, write)"
    leaf = _where(frames[-1])
    if frames[-1].startswith(("EpollSelector.select", "select ")) or leaf.startswith("selectors.py"):
        return "event loop: epoll_wait (wake-ups)"
    if leaf.startswith("json/"):
        if "Client.__run" in stack or "process_ws" in stack:
            return "json: decoding ARI events"
        return "json: ARI REST bodies/responses"
    if "TCPConnector._create_connection" in stack or "sock_connect" in frames[-1]:
        return "aiohttp: opening new TCP connections to ARI"
    if frames[-1].split(" (")[0] in SOCKET_CALLS:
        return "socket send/recv syscalls (asyncio transports)"
    for prefix, name in (("aiohttp/", "aiohttp: HTTP client, WebSocket, parsers"),
                         ("yarl/", "aiohttp: URL building (yarl, multidict)"),
                         ("multidict/", "aiohttp: URL building (yarl, multidict)"),
                         ("aioswagger11/", "aioswagger11: operation/parameter handling"),
                         ("aioari/", "aioari: promote responses, model objects, event dispatch"),
                         ("panoramisk/", "panoramisk: AMI parsing, actions, callbacks"),
                         ("aiosqlite/", "aiosqlite: main-thread side of hops"),
                         ("storage/", "storage: our code on the main thread"),
                         ("ari_app/", "callproof: call flow + app code"),
                         ("callproof/", "callproof: call flow + app code"),
                         ("asyncio/", "asyncio: loop, tasks, futures, transports")):
        if leaf.startswith(prefix):
            return name
    return f"other ({leaf.split('/')[0] or '?'})"


ACTIVITIES: list[tuple[str, tuple[str, ...]]] = [
    ("ARI REST requests (aioari -> aioswagger11 -> aiohttp), sending side", ("AsynchronousHttpClient.request",
                                                                            "Client.run_operation")),
    ("ARI events (WebSocket receive, JSON decode, dispatch, route_event)", ("Client.__run", "process_ws")),
    ("socket read callbacks (HTTP responses and WS frames parsed by aiohttp)", ("_read_ready",)),
    ("storage (aiosqlite hops, both threads)", ("_connection_worker_thread", "run_in_connection", "aiosqlite/")),
    ("AMI (panoramisk)", ("panoramisk/",)),
    ("logging", ("callproof/logs.py", "logging/")),
    ("recording finalisation (measure + DB)", ("Recorder.finalise", "measure_recording", "wait_and_measure")),
    ("SMS sender (OutboxSender)", ("OutboxSender",)),
    ("event loop epoll_wait", ("EpollSelector.select",)),
]


EPOLL = "event loop: epoll_wait (wake-ups)"


def analyse_pyspy(path: Path, thread_cpu_ms: dict[int, float], top: int = 25) -> dict[str, Any]:
    """Aggregate py-spy's collapsed stacks; each sample weighs ms per call.

    py-spy counts a thread as busy while it is runnable, including while it
    waits for a CPU, and that shows up as samples in epoll_wait right after a
    wake-up (on a loaded machine: ~40 % of the samples, where perf puts the
    whole kernel side at ~25 %).  So epoll_wait samples get no weight: each
    thread's measured CPU (/proc, ``thread_cpu_ms``: ms per call) is spread
    over its other samples.
    """
    rows: list[tuple[int, str, list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        match = re.match(r"thread \((\d+)\): (.*)", frames[0])
        tid, thread = (int(match.group(1)), match.group(2)) if match else (0, "?")
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if frames:
            rows.append((tid, thread, frames, int(count_text)))
    busy: Counter[int] = Counter()
    names: dict[int, str] = {}
    total = epoll = 0
    for tid, thread, frames, count in rows:
        names[tid] = thread
        total += count
        if component(thread, frames) == EPOLL:
            epoll += count
        else:
            busy[tid] += count
    known = sum(thread_cpu_ms.get(tid, 0.0) for tid in busy)
    unknown_ms = max(0.0, sum(thread_cpu_ms.values()) - known)
    unknown_busy = sum(c for tid, c in busy.items() if tid not in thread_cpu_ms)

    def weight(tid: int) -> float:
        if tid in thread_cpu_ms:
            return thread_cpu_ms[tid] / busy[tid] if busy[tid] else 0.0
        return unknown_ms / unknown_busy if unknown_busy else 0.0

    by_leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    by_activity: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    for tid, thread, frames, count in rows:
        name = component(thread, frames)
        ms = 0.0 if name == EPOLL else count * weight(tid)
        by_component[name] += ms
        by_thread[f"{thread} [{tid}]"] += ms
        by_leaf[_short(frames[-1])] += ms
        for fn in {_short(f) for f in frames}:
            inclusive[fn] += ms
        joined = ";".join(frames)
        for activity, needles in ACTIVITIES:
            if any(n in joined for n in needles):
                by_activity[activity] += ms
    return {"samples": total, "epoll_samples": epoll, "thread_names": names,
            "by_component": by_component.most_common(), "by_activity": by_activity.most_common(),
            "by_leaf": by_leaf.most_common(top), "inclusive": inclusive.most_common(top * 2),
            "by_thread": by_thread.most_common()}


def _short(frame: str) -> str:
    """'send (aiohttp/client.py:123)' -> 'send (aiohttp/client.py)' (line numbers merged)."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, where = match.groups()
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "lib/python3":
                where = where.split("/", 1)[1] if "/" in where else where
    if str(REPO_ROOT) in where:
        where = where.split(str(REPO_ROOT) + "/", 1)[1]
    return f"{func} ({where})"


def print_profile(result: ModeResult, rate: int) -> dict[str, Any] | None:
    if not result.profile_file or not Path(result.profile_file).exists():
        return None
    if result.profile_file.endswith(".data"):
        print_perf(result)
        return None
    per_thread = {tid: cpu / result.placed * 1000 for tid, cpu in result.app_threads_cpu_s.items()} \
        if result.placed else {}
    analysis = analyse_pyspy(Path(result.profile_file), per_thread)
    per_call = result.per_call_ms(result.app_cpu_s) or 0.0
    print(f"  py-spy, level {result.level}: {analysis['samples']} samples at {rate} Hz, "
          f"{analysis['epoll_samples']} of them in epoll_wait (given no weight, see analyse_pyspy); "
          f"callproof CPU {result.app_cpu_s:.2f} s in the window = {per_call:.2f} ms per call, "
          f"spread over the other samples thread by thread; {result.profile_file}")
    for title, key in (("by component (self time; adds up to the measured CPU)", "by_component"),
                       ("by activity (inclusive; a sample may count for several)", "by_activity")):
        print(f"    {title:<78}ms/call  share")
        for name, ms in analysis[key]:
            if name == EPOLL:
                continue
            print(f"      {name:<76}{ms:>7.2f} {ms / per_call if per_call else 0:>6.1%}")
    print("    by thread (ms/call): " + ", ".join(f"{t} {ms:.2f}" for t, ms in analysis["by_thread"]))
    print("    top functions, self time (ms/call):")
    for name, ms in analysis["by_leaf"][:15]:
        print(f"      {ms:>6.2f}  {name}")
    print("    top functions, inclusive (ms/call):")
    runner = {"_run_module_as_main", "_run_code", "<module>", "main", "cmd_run", "run", "Runner.run",
              "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever", "BaseEventLoop._run_once",
              "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "Handle._run"}
    shown = [(n, ms) for n, ms in analysis["inclusive"] if n.split(" (")[0] not in runner]
    for name, ms in shown[:25]:
        print(f"      {ms:>6.2f}  {name}")
    return analysis


def print_perf(result: ModeResult) -> None:
    """perf's on-CPU view of the app: shares by library (kernel vs interpreter vs C extensions) and symbol."""
    print(f"  perf, level {result.level} (on-CPU samples; {result.profile_file}):")
    for sort, limit in (("dso", 12), ("sym", 20)):
        report = subprocess.run(["perf", "report", "-i", result.profile_file, "--no-children", "--sort", sort,
                                 "--stdio", "-g", "none"], capture_output=True, text=True)
        lines = [ln for ln in report.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        print(f"    by {sort}:")
        for line in lines[:limit]:
            print(f"      {line.strip()}")


def print_cprofile(out_dir: Path) -> None:
    import pstats

    for prof in sorted(out_dir.glob("cprofile-*.prof")):
        # cProfile times the whole process life in wall time: epoll's 'poll' is waiting, and
        # imports are start-up; the project's functions by cumulative time are the useful part.
        print(f"  cProfile (main thread only, wall time, whole process life) {prof}:")
        stats = pstats.Stats(str(prof))
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(r"ari_app|callproof/|storage/|aioari|aioswagger11|panoramisk", 25)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def level_figures(cp: ModeResult, dp: ModeResult) -> dict[str, Any]:
    cp_total = cp.per_call_ms(cp.total_cpu_s)
    dp_total = dp.per_call_ms(dp.asterisk_cpu_s)
    cp_net = cp.per_call_ms(cp.net_cpu_s)
    dp_net = dp.per_call_ms(dp.net_cpu_s)
    return {
        "level": cp.level,
        "placed": {"callproof": cp.placed, "dialplan": dp.placed},
        "completed": {"callproof": cp.completed, "dialplan": dp.completed},
        "reached_agents": {"callproof": cp.reached_agents, "dialplan": dp.reached_agents},
        "recordings": {"callproof": cp.recordings, "dialplan": dp.recordings},
        "originate_errors": {"callproof": len(cp.originate_errors), "dialplan": len(dp.originate_errors)},
        "channels_left": {"callproof": cp.channels_left, "dialplan": dp.channels_left},
        "originate_spread_s": {"callproof": round(cp.originate_spread_s, 2), "dialplan": round(dp.originate_spread_s, 2)},
        "calls_up_after_ramp": {"callproof": cp.calls_up_after_ramp, "dialplan": dp.calls_up_after_ramp},
        "window_s": {"callproof": round(cp.window_s, 1), "dialplan": round(dp.window_s, 1)},
        "asterisk_cpus_busy": {"callproof": round(cp.asterisk_cpu_s / cp.window_s, 2) if cp.window_s else None,
                               "dialplan": round(dp.asterisk_cpu_s / dp.window_s, 2) if dp.window_s else None},
        "a_stasis_to_consent_ms": {"n": len(cp.a_ms), "median": rounded(median(cp.a_ms), 1),
                                   "p99": rounded(percentile(cp.a_ms, 99), 1), "max": rounded(max(cp.a_ms, default=None), 1)},
        "a_app_side_ms": {"median": rounded(median(cp.a_app_ms), 1), "p99": rounded(percentile(cp.a_app_ms, 99), 1)},
        "b_digits_to_mixmonitor_ms": {"n": len(cp.b_ms), "median": rounded(median(cp.b_ms), 1),
                                      "p99": rounded(percentile(cp.b_ms, 99), 1), "max": rounded(max(cp.b_ms, default=None), 1)},
        "cpu_ms_per_call": {
            "callproof_asterisk": rounded(cp.per_call_ms(cp.asterisk_cpu_s)),
            "callproof_app": rounded(cp.per_call_ms(cp.app_cpu_s)),
            "callproof_total": rounded(cp_total),
            "dialplan_asterisk": rounded(dp_total),
        },
        "cpu_ratio": rounded(cp_total / dp_total if cp_total and dp_total else None, 3),
        "cpu_ms_per_call_net": {"callproof_total": rounded(cp_net), "dialplan_asterisk": rounded(dp_net)},
        "cpu_ratio_net": rounded(cp_net / dp_net if cp_net and dp_net and dp_net > 0 else None, 3),
        "idle_cpu_ms_per_s": {"callproof_asterisk_plus_app": round(cp.idle_rate_ms_per_s, 2),
                              "callproof_app": round(cp.idle_app_cpu_s / cp.idle_s * 1000, 2) if cp.idle_s else None,
                              "dialplan_asterisk": round(dp.idle_rate_ms_per_s, 2)},
        "idle_window_s": round(cp.idle_s, 1),
        "outcomes": cp.outcomes,
        "sms_sent": cp.sms_sent,
        "recordings_finalised": cp.recordings_finalised,
        "callproof_threads_ms_per_call": thread_breakdown(cp),
        "app_log_errors": len(cp.log_errors),
        "app_log_warnings": len(cp.log_warnings),
    }


def thread_breakdown(result: ModeResult) -> dict[str, float]:
    """Per-thread CPU of the app, ms per call.  main = the event loop; the first other thread
    is aiosqlite's worker (opened before anything else starts a thread); later ones are
    asyncio.to_thread workers (recording measurement)."""
    if not result.app_threads_cpu_s or not result.placed:
        return {}
    others = [tid for tid in result.app_threads_cpu_s if tid != result.app_pid]
    out: dict[str, float] = {}
    for tid, cpu in result.app_threads_cpu_s.items():
        label = ("main (event loop)" if tid == result.app_pid else
                 "aiosqlite worker" if tid == others[0] else "to_thread workers")
        out[label] = out.get(label, 0.0) + cpu / result.placed * 1000
    exited = result.app_cpu_s - sum(result.app_threads_cpu_s.values())
    if exited > 0.005:
        out["unattributed (exited threads, tick rounding)"] = exited / result.placed * 1000
    return {k: round(v, 2) for k, v in out.items()}


def thread_summary(result: ModeResult) -> str:
    parts = [f"{k} {v:.2f}" for k, v in thread_breakdown(result).items()]
    return ", ".join(parts) + " ms/call" if parts else "-"


def print_level(fig: dict[str, Any], cp: ModeResult, dp: ModeResult) -> None:
    level = fig["level"]
    a, b, cpu = fig["a_stasis_to_consent_ms"], fig["b_digits_to_mixmonitor_ms"], fig["cpu_ms_per_call"]
    print(f"\n=== {level} concurrent call{'s' if level != 1 else ''} ===")
    print(f"{'':<34}{'callproof':>12}{'dialplan':>12}")
    for label, key in (("calls placed", "placed"), ("calls completed", "completed"),
                       ("reached the agents", "reached_agents"), ("recordings (non-empty)", "recordings"),
                       ("originate errors", "originate_errors"), ("channels left at the end", "channels_left"),
                       ("originate spread (s)", "originate_spread_s"),
                       ("calls up once all placed", "calls_up_after_ramp"), ("window (s)", "window_s"),
                       ("Asterisk CPUs busy (avg)", "asterisk_cpus_busy")):
        print(f"{label:<34}{fig[key]['callproof']:>12}{fig[key]['dialplan']:>12}")
    print(f"{'CPU per call, Asterisk (ms)':<34}{fmt(cpu['callproof_asterisk'], 2):>12}{fmt(cpu['dialplan_asterisk'], 2):>12}")
    print(f"{'CPU per call, callproof (ms)':<34}{fmt(cpu['callproof_app'], 2):>12}{'-':>12}")
    print(f"{'CPU per call, total (ms)':<34}{fmt(cpu['callproof_total'], 2):>12}{fmt(cpu['dialplan_asterisk'], 2):>12}")
    idle = fig["idle_cpu_ms_per_s"]
    print(f"{'idle CPU (ms per s)':<34}{idle['callproof_asterisk_plus_app']:>12.2f}{idle['dialplan_asterisk']:>12.2f}"
          f"   (over {fig['idle_window_s']} s idle; callproof's own {fmt(idle['callproof_app'], 2)})")
    net = fig["cpu_ms_per_call_net"]
    print(f"{'CPU per call, total, net of idle':<34}{fmt(net['callproof_total'], 2):>12}{fmt(net['dialplan_asterisk'], 2):>12}")
    ratio = fig["cpu_ratio"]
    verdict = "-" if ratio is None else ("OK" if ratio <= TARGET_CPU_RATIO else "ABOVE TARGET")
    print(f"CPU ratio callproof/dialplan: {fmt(ratio, 2)} raw (target <= {TARGET_CPU_RATIO:.2f}: {verdict}), "
          f"{fmt(fig['cpu_ratio_net'], 2)} net of idle")
    a_verdict = ""
    if level >= 200 and a["p99"] is not None:
        a_verdict = f" (target p99 <= {TARGET_A_P99_MS:.0f} ms: {'OK' if a['p99'] <= TARGET_A_P99_MS else 'ABOVE TARGET'})"
    print(f"(a) StasisStart -> consent PlaybackStarted, Asterisk stamps: median {fmt(a['median'])} ms, "
          f"p99 {fmt(a['p99'])} ms, max {fmt(a['max'])} ms, n={a['n']}{a_verdict}")
    print(f"    same span, app-side clock: median {fmt(fig['a_app_side_ms']['median'])} ms, "
          f"p99 {fmt(fig['a_app_side_ms']['p99'])} ms")
    print(f"(b) last protocol digit finished -> MixMonitorStart: median {fmt(b['median'])} ms, "
          f"p99 {fmt(b['p99'])} ms, max {fmt(b['max'])} ms, n={b['n']}")
    print(f"callproof outcomes {fig['outcomes']}, SMS sent {fig['sms_sent']}, "
          f"recordings finalised {fig['recordings_finalised']}")
    print("callproof CPU by thread: " + thread_summary(cp))
    print(f"app log: {len(cp.log_errors)} error line(s), {len(cp.log_warnings)} warning line(s)")
    for line in (cp.log_errors + cp.log_warnings)[:10]:
        print(f"    {line}")
    for err in (cp.originate_errors + dp.originate_errors)[:5]:
        print(f"    originate: {err}")


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
    parser.add_argument("--caller-max-seconds", type=int, default=180, help="the customer leg hangs up after this")
    parser.add_argument("--profile", choices=("none", "py-spy", "perf", "cprofile"), default="none")
    parser.add_argument("--spy-rate", type=int, default=500, help="py-spy / perf samples per second")
    parser.add_argument("--app-nice", type=int, default=0,
                        help="run callproof at this nice value (e.g. -10: what a CPUWeight= or its own cgroup "
                             "gives it in production, where it does not share a cgroup with Asterisk)")
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
    keep = args.keep or args.out is None and args.profile != "none"
    recordings = {"callproof": run_dir / "recordings", "dialplan": run_dir / "recordings-dialplan"}
    extra = SANDBOX_AGENTS_DIALPLAN + dialplan_flow(prompts, recordings["dialplan"])
    app_log = AppLog(out_dir / "callproof.log")
    results: list[tuple[ModeResult, ModeResult]] = []
    started = time.monotonic()
    try:
        with Sandbox(rootfs, run_dir, DIALPLAN_DIR, extra_dialplan=extra, bind_paths=[prompts_dir]) as sandbox:
            ast_pid = asterisk_pid(sandbox)
            config = write_config(sandbox, run_dir, prompts_dir, logging={"level": "INFO", "format": "json"})
            app = AppProcess(config, app_log, args.profile, out_dir, args.spy_rate, args.app_nice)
            bench = Bench(args, sandbox, ast_pid, app, app_log, recordings)
            print(f"Asterisk {sandbox.version} (pid {ast_pid}, Sandbox.pid {sandbox.pid}); "
                  f"Python {platform.python_version()}; {os.cpu_count()} CPUs; "
                  f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; levels {args.levels}; "
                  f"agent talks {args.agent_seconds} s; ramp {args.ramp_seconds} s; app nice {args.app_nice}",
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
        "app_nice": args.app_nice,
        "warmup_calls": args.warmup_calls,
        "ramp_seconds": args.ramp_seconds,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(time.monotonic() - started, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
