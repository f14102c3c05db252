"""Profile analysis for bench/bench_calls.py: py-spy collapsed stacks, perf reports, cProfile."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from .common import REPO_ROOT
from .runner import ModeResult

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


