"""Commands typed as root act as the service user, with real users and real files: a
command run as root before the service ever started leaves a database (and its WAL, and
the sweep's lock file) owned by the service user, so the service and the shipped retention
unit, running as that user, can open them; a file root left behind earlier gives one line
naming it and the fix, never a traceback.  ``nobody`` stands in for ``asterisk``."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER = "nobody"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                                reason="changing user needs root (CI runs the suite as root)")


@pytest.fixture
def site() -> Iterator[dict]:
    """/etc/callproof-like config (root's, 0640) and a data folder owned by the service user."""
    top = Path(tempfile.mkdtemp(prefix="callproof-user-", dir="/var/tmp"))  # the user can reach it
    top.chmod(0o755)
    nobody = pwd.getpwnam(USER)
    data = top / "lib"
    data.mkdir()
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    rec = top / "spool"
    rec.mkdir()
    os.chown(rec, nobody.pw_uid, nobody.pw_gid)
    cfg = top / "callproof.toml"
    cfg.write_text(f'[general]\nservice_user = "{USER}"\n[storage]\ndatabase = "{data / "callproof.db"}"\n'
                   f'[recording]\nroot = "{rec}"\n[rights]\nexport_dir = "{data / "exports"}"\n'
                   f'history_dir = "{data / "history"}"\n')
    cfg.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPROOF_")}
    env["PYTHONPATH"] = str(REPO)
    try:
        yield {"top": top, "data": data, "cfg": cfg, "env": env, "uid": nobody.pw_uid}
    finally:
        shutil.rmtree(top, ignore_errors=True)


@functools.cache
def _python() -> list[str]:
    """An interpreter the service user can run after root dropped to it: this one, unless its
    standard library sits where that user cannot read (a Python built under /root); then the
    system's Python of the same version with this environment's packages."""
    lib = Path(sys.base_prefix) / "lib"
    if subprocess.run(["runuser", "-u", USER, "--", "test", "-r", str(lib)]).returncode == 0:
        return [sys.executable]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    assert system.exists(), f"{USER} cannot read {lib} and there is no {system}"
    site_dir = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    return [str(system), "-c", f"import runpy, site, sys; site.addsitedir({site_dir!r}); sys.argv[0] = 'callproof';"
                               " runpy.run_module('callproof.cli', run_name='__main__')"]


def callproof(site: dict, *args: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    python = _python()
    command = [*python, *([] if len(python) > 1 else ["-m", "callproof.cli"]), "--config", str(site["cfg"]), *args]
    if as_user:
        command = ["runuser", "-u", as_user, "--", *command]
    return subprocess.run(command, env=site["env"], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_root_before_the_service_leaves_files_the_service_can_use(site):
    first = callproof(site, "hold", "list")  # as root, before anything else ever opened the database
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "no active holds"
    made = sorted(p.name for p in site["data"].iterdir())
    assert "callproof.db" in made
    assert {p.name: p.stat().st_uid for p in site["data"].iterdir()} == dict.fromkeys(made, site["uid"])

    sweep = callproof(site, "retention", "sweep", "--dry-run")
    assert sweep.returncode == 0, sweep.stderr
    lock = site["data"] / "callproof.db.retention.lock"
    assert lock.stat().st_uid == site["uid"]
    again = callproof(site, "retention", "sweep", "--dry-run", as_user=USER)  # as the shipped unit runs it
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr


def test_a_lock_file_root_left_behind_is_one_line_naming_it(site):
    lock = site["data"] / "callproof.db.retention.lock"
    lock.write_text("")
    lock.chmod(0o600)  # what a sweep as root left before commands dropped to the service user
    result = callproof(site, "retention", "sweep", "--dry-run", as_user=USER)
    assert result.returncode == 77
    assert "Traceback" not in result.stderr
    assert f"permission denied: {lock}" in result.stderr and f"{lock} is root:root 0600" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_service_user_is_refused(site):
    site["cfg"].write_text(site["cfg"].read_text().replace(f'service_user = "{USER}"',
                                                           'service_user = "no-such-callproof-user"'))
    result = callproof(site, "hold", "list")
    assert result.returncode == 77
    assert "'no-such-callproof-user' ([general] service_user) does not exist" in result.stderr
    assert not (site["data"] / "callproof.db").exists()
