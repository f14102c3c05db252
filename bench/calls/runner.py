"""Driving one mode (callproof or dialplan) at one level of concurrent calls."""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from callproof.sandbox import Sandbox, ari_request, originate_call

from .app_process import AppLog, AppProcess
from .asterisk_stats import AsteriskPerf, context_switches, taskprocessor_delta, taskprocessors
from .common import BENCH_CONTEXT, CALLPROOF_ENTRY, ari_timestamp, cpu_seconds, thread_cpu_seconds

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
    # Asterisk side: stasis/AMI/ARI messages per call by taskprocessor, perf samples
    taskprocessors_per_call: dict[str, float] = field(default_factory=dict)
    asterisk_perf_file: str | None = None
    # app side: ARI requests/events and AMI actions/events over the app's life in this mode
    link_counts: dict[str, int] = field(default_factory=dict)
    link_calls: int = 0
    channel_probe: list[str] = field(default_factory=list)
    asterisk_ctx_switches: tuple[int, int] = (0, 0)  # voluntary, involuntary (living threads only)

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
        # *.wav and *.wav.age: with --encryption a finalised recording is its age file
        return {p: p.stat().st_size for p in root.rglob("*.wav*")} if root.exists() else {}

    def channel_count(self) -> int:
        return len(ari_request(self.sandbox, "GET", "channels", timeout=30) or [])

    def cpu(self, with_app: bool) -> tuple[float, float]:
        return cpu_seconds(self.ast_pid), cpu_seconds(self.app.pid) if with_app else 0.0

    def probe_channels(self, times: int, every: float = 7.0) -> list[str]:
        """Formats, translation paths and the application of the oldest call's channels, ``times``
        times ``every`` seconds apart (--show-channels: what Asterisk transcodes, in each mode)."""
        lines: list[str] = []
        for i in range(times):
            if i:
                time.sleep(every)
            channels = sorted(ari_request(self.sandbox, "GET", "channels", timeout=30) or [],
                              key=lambda c: c.get("creationtime", ""))[:2]
            for channel in channels:
                try:
                    text = self.sandbox.cli(f"core show channel {channel['name']}")
                except Exception as exc:
                    text = f"({exc})"
                keep = [ln.strip() for ln in text.splitlines()
                        if any(k in ln for k in ("ormat", "ranslat", "Application", "Data:", "Framing"))]
                lines.append(f"t+{i * every:.0f}s {channel['name']}: " + " | ".join(keep))
        return lines

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
                           max_seconds=self.args.caller_max_seconds, formats=self.args.caller_formats,
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

            tp_before = taskprocessors(self.sandbox) if args.asterisk_stats else None
            asterisk_perf = None
            if args.profile == "perf-asterisk":
                asterisk_perf = AsteriskPerf(self.ast_pid, self.app.out_dir / f"perf-asterisk-{mode}-L{level}.data",
                                             args.spy_rate)
                asterisk_perf.start()
                result.asterisk_perf_file = str(asterisk_perf.output)
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
                                   max_seconds=args.caller_max_seconds, variables=variables,
                                   formats=args.caller_formats)
                    return None
                except Exception as exc:
                    return f"{type(exc).__name__}: {exc}"

            threads_start = thread_cpu_seconds(self.app.pid) if with_app else {}
            cs_start = context_switches(self.ast_pid)
            c_start, t_start = self.cpu(with_app), time.monotonic()
            with ThreadPoolExecutor(max_workers=min(args.originate_workers, level)) as pool:
                errors = list(pool.map(place, enumerate(callers)))
            result.originate_spread_s = time.monotonic() - t_start
            if args.show_channels:
                result.channel_probe = self.probe_channels(args.show_channels)
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
                            # (sms.logged: the default "log" backend's send, nothing to wait for)
                            and names["sms.sent"] + names["sms.logged"] + names["sms.dead"]
                            >= names["protocol.allocated"]
                            and names["call.timings"] >= result.placed):
                        break
                    time.sleep(0.2)
            c_end, t_end = self.cpu(with_app), time.monotonic()
            cs_end = context_switches(self.ast_pid)
            result.asterisk_ctx_switches = (cs_end[0] - cs_start[0], cs_end[1] - cs_start[1])
            if asterisk_perf is not None:
                asterisk_perf.stop()
            if with_app:
                threads_end = thread_cpu_seconds(self.app.pid)
                result.app_pid = self.app.pid
                result.app_threads_cpu_s = {tid: cpu - threads_start.get(tid, 0.0)
                                            for tid, cpu in sorted(threads_end.items())}
                self.app.stop_spy()
            result.window_s = t_end - t_start
            result.asterisk_cpu_s = c_end[0] - c_start[0]
            result.app_cpu_s = c_end[1] - c_start[1]

            if tp_before is not None:
                result.taskprocessors_per_call = taskprocessor_delta(tp_before, taskprocessors(self.sandbox),
                                                                     result.placed)
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
        if with_app:  # logged by the app as it closes its ARI and AMI links (start-up and warm-up included)
            entries, _ = self.app_log.since(log_mark)
            for e in entries:
                if e.get("msg") in ("ari.counts", "ami.counts"):
                    link = e["msg"].split(".")[0]
                    for name, count in (e.get("counts") or {}).items():
                        result.link_counts[f"{link} {name}"] = result.link_counts.get(f"{link} {name}", 0) + count
            result.link_calls = result.placed + args.warmup_calls
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
            elif msg in ("sms.sent", "sms.logged"):
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


