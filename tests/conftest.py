"""How a parallel run shares the tests out (``scripts/test``: ``pytest -n 6 --dist loadfile``).

Every pytest-xdist worker is a test session of its own: its own session
fixtures, so its own sandbox Asterisk and applications (tests/integration/
conftest.py).  With ``--dist loadfile`` a test file runs whole on one worker,
so its module fixtures are set up once and its tests keep their order --
except the files in ``SPREAD_FILES``, whose tests share nothing but session
fixtures and cheap module ones, and each of which waits up to a minute on
real-time audio: they go one by one to whichever worker is free.  Files are
handed out in collection order (the integration tests first, the slowest of
them near the front), not largest-first, so the long calls start early and the
short unit tests fill the end.

A parallel run keeps its temporary files out of /tmp (``RUNS_ROOT``): tests
that watch /tmp for files named after hostile caller IDs would otherwise see
what the other workers write at the same time (an Asterisk call-back
recording is named after its channel, ``...;2.wav``).  The run's folder is
removed when every test passed and kept, with its path printed, otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

# Commands started as root act as the service user ([general] service_user, default
# 'asterisk'; callproof/service_user.py).  The suite runs as root on CI and its files are
# root's, so its commands and their subprocesses act as the user running the suite; the
# tests of that rule (tests/integration/test_service_user.py) name a user of their own.
os.environ.setdefault("CALLPROOF_GENERAL_SERVICE_USER", pwd.getpwuid(os.geteuid()).pw_name)

RUNS_ROOT = Path("/var/tmp") / f"callproof-tests-{os.getuid()}"
_OWN_BASETEMP = pytest.StashKey[Path]()
_EXIT_STATUS = pytest.StashKey[int]()

SPREAD_FILES = {
    "tests/integration/test_call_flow.py",
    "tests/integration/test_ivr_request.py",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ProjectScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPREAD_FILES else path

    config.option.loadscopereorder = False
    return ProjectScheduling(config, log)


def _is_parallel_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if _is_parallel_controller(config) and not config.option.basetemp:
        RUNS_ROOT.mkdir(mode=0o700, exist_ok=True)
        # the workers get <basetemp>/popen-gwN from the controller
        config.option.basetemp = tempfile.mkdtemp(prefix="run-", dir=RUNS_ROOT)
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    basetemp = config.stash.get(_OWN_BASETEMP, None)
    if basetemp is None:
        return
    if config.stash.get(_EXIT_STATUS, 1) == 0:
        shutil.rmtree(basetemp, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    basetemp = config.stash.get(_OWN_BASETEMP, None)
    if basetemp is not None and exitstatus != 0:
        terminalreporter.write_line(f"this run's test files are kept in {basetemp}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


# --- the storage backends (storage tests run on SQLite and on a real PostgreSQL) ----------

@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One throw-away PostgreSQL cluster per test session (tests/pg_cluster.py); skipped
    when Debian's postgresql package is missing, except under CI=true, where it fails."""
    from tests.pg_cluster import pg_bin_dir, start_cluster

    if pg_bin_dir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (scripts/setup installs it)")
        pytest.skip("PostgreSQL is not installed (scripts/setup installs it)")
    cluster = start_cluster()
    try:
        cluster.create_template()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """What the storage under test opens: a new SQLite file, or a new PostgreSQL database
    (a copy of the migrated template) on the session's cluster."""
    if request.param == "sqlite":
        yield str(tmp_path / "cp.db")
        return
    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.new_database()
    try:
        yield url
    finally:
        cluster.drop(url)
