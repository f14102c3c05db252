"""Shared pieces of bench/bench_calls.py: constants, /proc CPU readers, small formatters,
and the pure-dialplan flow that callproof mode is compared with."""

from __future__ import annotations

import math
import os
import statistics
import sys
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from callproof.prompts import PromptCatalogue  # noqa: E402
from callproof.sandbox import Sandbox, SandboxError  # noqa: E402

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
"""  # noqa: E501 (a dialplan line cannot be wrapped)


