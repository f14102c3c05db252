"""The built wheel installed with plain pip into a fresh virtual environment outside the
repository, once per test run: every xdist worker of the run shares it (the build takes a
lock in the run's temporary root), and each test that needs "another machine's view" uses it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO_ROOT


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path
    env: dict[str, str]   # PATH first to the venv's bin, no PYTHON* variables

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def callproof(self) -> Path:
        return self.venv / "bin" / "callproof"


def run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None,
        expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if expect is not None:
        assert done.returncode == expect, (f"{command[:3]} exited {done.returncode}:\n"
                                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's root, shared by its workers
    where = root / "installed-wheel"
    with open(root / "installed-wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wheels, venv = where / "wheels", where / "venv"
        if not (where / "done").exists():
            where.mkdir(exist_ok=True)
            run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO_ROOT)],
                cwd=where, timeout=300)
            (wheel,) = wheels.glob("callproof-*.whl")
            run([sys.executable, "-m", "venv", str(venv)], cwd=where, timeout=120)
            run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=where, timeout=600)
            (where / "done").touch()
    (wheel,) = wheels.glob("callproof-*.whl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return InstalledWheel(wheel, venv, env)
