"""The callproof application as a child process of the benchmark, and its JSON log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import REPO_ROOT


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
                 nice: int = 0, launcher: list[str] | None = None):
        self.config_path = config_path
        # what runs callproof.cli: ["-m", "callproof.cli"], or a wrapper script and its options
        self.launcher = launcher or ["-m", "callproof.cli"]
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
        command = [sys.executable, *self.launcher, "--config", str(self.config_path), "run"]
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


