"""Keep N calls up at once through the sandbox Asterisk, and sample the app process.

Each of N worker threads places a call (the sandbox's customer leg into
``callproof-entry``), waits for its channel to be gone, and places the next,
until the total is reached.  The main thread samples the app between calls:
RSS (VmRSS and RssAnon, from /proc), open file descriptors, threads, and the
app's own ``app.stats`` line (asyncio tasks, per-call dicts) asked for with
SIGUSR1.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callproof.sandbox import Sandbox, SandboxError, ari_request, originate_call


@dataclass
class Sample:
    calls: int  # calls ended (Asterisk side) when the sample was taken
    at_s: float  # seconds since the first call was placed
    rss_kib: int
    rss_anon_kib: int
    fds: int
    threads: int
    app: dict[str, Any] = field(default_factory=dict)  # the app.stats line (asyncio_tasks, flows, ...)
    memory: dict[str, Any] = field(default_factory=dict)  # app_main.py's breakdown (SQLite, malloc, Python)


def proc_figures(pid: int) -> tuple[int, int, int, int]:
    """VmRSS and RssAnon (KiB), open fds and threads of a process."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    kib = lambda key: int(status.get(key, "0 kB").split()[0])  # noqa: E731
    return kib("VmRSS"), kib("RssAnon"), len(os.listdir(f"/proc/{pid}/fd")), int(status.get("Threads", "0"))


class CallDriver:
    def __init__(self, sandbox: Sandbox, total: int, concurrency: int, *, formats: str | None,
                 agent_seconds: int, max_seconds: int, call_timeout: float):
        self.sandbox, self.total, self.concurrency = sandbox, total, concurrency
        self.formats, self.agent_seconds, self.max_seconds = formats, agent_seconds, max_seconds
        self.call_timeout = call_timeout
        self.placed = self.ended = 0
        self.errors: list[str] = []
        self.stuck: list[str] = []  # channels still up after call_timeout
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._go = threading.Event()  # cleared: workers place no new call (a tracemalloc snapshot)
        self._go.set()
        self.started = 0.0

    # -- the calls ------------------------------------------------------------
    def start(self) -> None:
        self.started = time.monotonic()
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._worker, name=f"soak-caller-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def _next(self) -> int | None:
        self._go.wait()
        with self._lock:
            if self.placed >= self.total:
                return None
            self.placed += 1
            return self.placed

    def _worker(self) -> None:
        while (n := self._next()) is not None:
            caller = f"11987{n % 1_000_000:06d}"  # BR mobiles: SMS-able
            try:
                channel = originate_call(self.sandbox, caller, record_path=None, max_seconds=self.max_seconds,
                                         formats=self.formats,
                                         variables={"SANDBOX_AGENT_SECONDS": str(self.agent_seconds)})
                self._wait_gone(channel["id"])
            except Exception as exc:
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.5)
            with self._lock:
                self.ended += 1

    def _wait_gone(self, channel_id: str) -> None:
        deadline = time.monotonic() + self.call_timeout
        path = f"channels/{urllib.parse.quote(channel_id, safe='')}"
        time.sleep(1.0)  # a call lasts ~2 s
        while time.monotonic() < deadline:
            try:
                ari_request(self.sandbox, "GET", path)
            except SandboxError as exc:
                if "HTTP 404" in str(exc):
                    return
                raise
            time.sleep(0.25)
        with self._lock:
            self.stuck.append(channel_id)


class AppSampler:
    """Samples of the app process: /proc figures and its app.stats line (SIGUSR1)."""

    def __init__(self, pid: int, app_log: Any, driver: CallDriver, memory_dir: Path):
        self.pid, self.app_log, self.driver, self.memory_dir = pid, app_log, driver, memory_dir
        self.samples: list[Sample] = []

    def memory(self, timeout: float = 3.0) -> dict[str, Any]:
        """app_main.py's memory line (SIGUSR2)."""
        path = self.memory_dir / "memory.jsonl"
        before = path.stat().st_size if path.exists() else 0
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > before:
                with open(path, "rb") as fh:
                    fh.seek(before)
                    line = fh.readline()
                if line.endswith(b"\n"):
                    return dict(json.loads(line))
            time.sleep(0.05)
        return {}

    def app_stats(self, timeout: float = 3.0) -> dict[str, Any]:
        mark = self.app_log.mark()
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries, _ = self.app_log.since(mark)
            for entry in entries:
                if entry.get("msg") == "app.stats":
                    return {k: v for k, v in entry.items() if k not in ("at", "level", "logger", "msg")}
            time.sleep(0.05)
        return {}

    def sample(self, calls: int | None = None) -> Sample:
        rss, anon, fds, threads = proc_figures(self.pid)
        at_s = time.monotonic() - self.driver.started if self.driver.started else 0.0
        taken = Sample(calls=self.driver.ended if calls is None else calls, at_s=at_s, rss_kib=rss,
                       rss_anon_kib=anon, fds=fds, threads=threads, app=self.app_stats(), memory=self.memory())
        self.samples.append(taken)
        return taken

    def snapshot(self, directory: Path, timeout: float = 120.0) -> Path | None:
        """Ask the launcher for a tracemalloc snapshot (SIGRTMIN); its path once written."""
        before = set(directory.glob("snapshot-*.done"))
        os.kill(self.pid, signal.SIGRTMIN)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = set(directory.glob("snapshot-*.done")) - before
            if new:
                return max(new).with_suffix(".pickle")
            time.sleep(0.2)
        return None
