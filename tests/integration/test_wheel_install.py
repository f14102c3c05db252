"""`callproof demo` from a plain `pip install` of the built wheel, in a fresh virtual
environment outside the repository: the installed namespace holds everything a call needs
(the dialplan, the migrations, the sandbox), nothing is read from the source tree."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, sandbox_rootfs
from .wheel_venv import InstalledWheel, run

pytestmark = pytest.mark.integration


def test_demo_call_from_the_installed_wheel(tmp_path: Path, wheel: InstalledWheel) -> None:
    sandbox_rootfs()  # built (or failed under CI) before the timed steps
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel.wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"callproof"}

    env = wheel.env
    where = run([str(wheel.python), "-c", "import callproof.storage, callproof.dialplan as d; "
                 "print(callproof.storage.__file__); print(d.directory())"], cwd=tmp_path, timeout=60, env=env).stdout
    assert str(REPO_ROOT) not in where and str(wheel.venv) in where

    out = run([str(wheel.callproof), "demo"], cwd=tmp_path, timeout=300, env=env).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert len(summary["protocol"]) == 17 and summary["protocol"].isdigit()
    assert summary["recording_bytes"] > 10_000 and len(summary["recording_sha256"]) == 64
    assert summary["sms_status"] in ("logged",)
