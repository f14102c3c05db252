"""``callproof doctor`` and ``callproof run`` against the real sandbox Asterisk 22: a set-up
that works is checked line by line; a wrong ARI or AMI password is a FAIL naming the
account and the Asterisk file to check, and ``callproof run`` with one stops with exit 3
after ``max_login_failures`` refusals instead of retrying for ever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callproof.config import Config
from callproof.demo import write_config

REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLPROOF_")}
    return {**clean, "PYTHONPATH": str(REPO), "CALLPROOF_GENERAL_SERVICE_USER":
            os.environ["CALLPROOF_GENERAL_SERVICE_USER"]}


def callproof(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config), *args], env=env(),
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def doctor(sandbox, config: Path) -> tuple[int, dict[str, str]]:
    done = callproof(config, "doctor", "--asterisk-root", str(sandbox.rootfs))
    assert "Traceback" not in done.stderr, done.stderr
    print(done.stdout)  # what an admin reads (pytest -s)
    lines = {}
    for line in done.stdout.splitlines()[:-1]:
        status, rest = line.split(None, 1)
        check = rest[:14].strip()
        lines[check] = f"{status} {rest[14:].strip()}"
    return done.returncode, lines


@pytest.fixture(scope="module")
def site(sandbox, app_config: Config, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("doctor")
    return {"run_dir": run_dir, "prompts": app_config.prompts.directory}


def config_with(sandbox, site, name: str, **sections) -> Path:
    folder = site["run_dir"] / name
    folder.mkdir(exist_ok=True)
    return write_config(sandbox, folder, site["prompts"], **sections)


def test_a_working_set_up(sandbox, site):
    config = config_with(sandbox, site, "good", retention={"sweep_in_run": True})
    status, lines = doctor(sandbox, config)
    assert lines["recordings"].startswith("FAIL recordings root") and "does not exist -- fix: install -d" \
        in lines["recordings"]
    (config.parent / "recordings").mkdir()
    status, lines = doctor(sandbox, config)
    assert lines["config"].startswith(f"OK valid; read {config}")
    assert lines["ari-login"].startswith(f"OK logged in to ARI at {sandbox.ari_url} as {sandbox.ari_username!r}")
    assert lines["ami-login"].startswith("OK logged in to AMI")
    assert lines["dialplan"].startswith("OK contexts of callproof")
    assert lines["prompts pt_BR"].startswith("OK 2 prompts and 10 digits")
    assert lines["prompts en"].startswith("OK"), lines["prompts en"]
    assert lines["database"].startswith("OK") and lines["recordings"].startswith("OK")
    assert lines["retention"].startswith("OK [retention] sweep_in_run")
    assert lines["sms"].startswith("WARN [sms] backend is 'log'")  # the sandbox's SMS go nowhere
    assert status == 2  # only warnings


def test_wrong_passwords_are_named(sandbox, site):
    config = config_with(sandbox, site, "wrong", ari={"password": "Wrong-ari-pass-7c1d"},
                         ami={"password": "Wrong-ami-pass-9e2f"})
    status, lines = doctor(sandbox, config)
    assert status == 1
    assert lines["ari-login"].startswith(f"FAIL HTTP 401 from {sandbox.ari_url}ari/asterisk/info")
    assert f"Asterisk refused the ARI login of account {sandbox.ari_username!r}: check that ari.conf" \
           in lines["ari-login"]
    assert lines["ami-login"].startswith("FAIL AMI at")
    assert f"Asterisk refused the AMI login of account {sandbox.ami_username!r}: check that manager.conf" \
           in lines["ami-login"]
    assert "Wrong-ari-pass" not in str(lines) and "Wrong-ami-pass" not in str(lines)


def test_run_stops_after_ami_refusals(sandbox, site):
    config = config_with(sandbox, site, "ami", ami={"password": "Wrong-ami-pass-9e2f", "max_login_failures": 2},
                         ari={"app": "doctor_ami_refused"})
    done = callproof(config, "run")
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"Asterisk refused the AMI login of account {sandbox.ami_username!r}" in done.stderr
    assert "manager.conf" in done.stderr and "2 refusals in a row; giving up" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_stops_after_ari_refusals(sandbox, site):
    config = config_with(sandbox, site, "ari", ari={"password": "Wrong-ari-pass-7c1d", "max_login_failures": 2,
                                                    "app": "doctor_ari_refused"})
    done = callproof(config, "run")
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"Asterisk refused the ARI login of account {sandbox.ari_username!r}" in done.stderr
    assert "ari.conf" in done.stderr and "Traceback" not in done.stderr
