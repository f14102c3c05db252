"""`callproof demo` from a plain `pip install` of the built wheel, in a fresh virtual
environment outside the repository: the installed namespace holds everything a call needs
(the dialplan, the migrations, the sandbox), nothing is read from the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, sandbox_rootfs

pytestmark = pytest.mark.integration


def _run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{command[:3]} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def test_demo_call_from_the_installed_wheel(tmp_path: Path) -> None:
    sandbox_rootfs()  # built (or failed under CI) before the timed steps
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO_ROOT)],
         cwd=tmp_path, timeout=300)
    (wheel,) = wheels.glob("callproof-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"callproof"}

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, timeout=120)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=tmp_path, timeout=600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    where = _run([str(venv / "bin" / "python"), "-c", "import callproof.storage, callproof.dialplan as d; "
                  "print(callproof.storage.__file__); print(d.directory())"], cwd=tmp_path, timeout=60, env=env)
    assert str(REPO_ROOT) not in where and str(venv) in where

    out = _run([str(venv / "bin" / "callproof"), "demo"], cwd=tmp_path, timeout=300, env=env)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert len(summary["protocol"]) == 17 and summary["protocol"].isdigit()
    assert summary["recording_bytes"] > 10_000 and len(summary["recording_sha256"]) == 64
    assert summary["sms_status"] in ("logged",)
