"""Where Asterisk's CPU goes, per mode: stasis/AMI message counts and perf samples.

* ``taskprocessors()`` reads ``core show taskprocessors``: how many messages each
  taskprocessor (a stasis subscription, the manager, an ARI application's
  WebSocket, a channel's control queue, ...) processed.  The difference over a
  mode's window, divided by the calls placed, is "messages per call" by
  subscriber; taken outside the CPU window (the CLI command itself costs
  Asterisk a little CPU).
* ``AsteriskPerf`` records on-CPU samples of the Asterisk process
  (``perf record -e cpu-clock -g``) over a mode's window;
  ``perf_by_symbol()`` turns them into ms per call by shared object and
  symbol (Debian ships Asterisk stripped of static symbols: those show as
  addresses inside their module).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from callproof.sandbox import Sandbox

_UNIQUE_SUFFIX = re.compile(r"(-[0-9a-f]{8}|:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|-[0-9a-f]{6,}|/\d+)$")


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's living threads."""
    vol = invol = 0
    for tid in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (tid / "status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def taskprocessors(sandbox: Sandbox) -> Counter[str]:
    """Messages processed so far by each taskprocessor, summed over names that differ only
    by a unique suffix (one per channel, per subscription, ...)."""
    try:
        text = sandbox.cli("core show taskprocessors", timeout=30)
    except Exception as exc:
        print(f"core show taskprocessors failed: {exc}", file=sys.stderr)
        return Counter()
    found: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit():
            name = parts[0]
            while _UNIQUE_SUFFIX.search(name):
                name = _UNIQUE_SUFFIX.sub("", name)
            found[name] += int(parts[1])
    return found


def taskprocessor_delta(before: Counter[str], after: Counter[str], calls: int) -> dict[str, float]:
    """Messages per call by taskprocessor group, largest first (groups gone or new count as 0)."""
    if not calls:
        return {}
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in set(before) | set(after)}
    # per-channel taskprocessors vanish with their channel: their count is in 'after' only if alive,
    # so a group that shrank shows the messages of the channels still alive; clamp at 0.
    rows = sorted(((n, max(0, d) / calls) for n, d in delta.items() if d > 0), key=lambda r: -r[1])
    return {n: round(v, 1) for n, v in rows}


class AsteriskPerf:
    """``perf record`` on the Asterisk process for one window."""

    def __init__(self, pid: int, output: Path, rate: int):
        self.pid, self.output, self.rate = pid, output, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", str(self.rate), "-g", "-p", str(self.pid),
             "-o", str(self.output)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.proc = None


def perf_by_symbol(path: Path, cpu_ms_per_call: float, sort: str = "dso,sym",
                   top: int = 40) -> list[tuple[str, float]]:
    """(name, ms per call) of the samples in ``path``, self time, by ``sort``: each sample weighs
    the measured CPU per call spread evenly over all samples."""
    report = subprocess.run(["perf", "report", "-i", str(path), "--no-children", "--sort", sort, "--stdio",
                             "-g", "none", "--percent-limit", "0.3"], capture_output=True, text=True)
    rows = []
    for line in report.stdout.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if match:
            name = re.sub(r"\s+", " ", match.group(2).strip())
            rows.append((name, float(match.group(1)) / 100 * cpu_ms_per_call))
    return rows[:top]
