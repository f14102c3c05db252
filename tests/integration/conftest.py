"""Fixtures for tests that run against the real Asterisk 22 sandbox (sandbox/ (callproof.sandbox)).

Rule: under CI (``CI=true``) a sandbox that cannot be provisioned or started
FAILS the tests that need it -- a silently skipped integration suite would look
green.  Elsewhere (e.g. a developer without root) those tests are skipped with
the reason.

Parallel runs (``scripts/test`` runs ``pytest -n 6 --dist loadfile``): each
pytest-xdist worker has its own session sandbox and applications; how the
tests are shared out is in tests/conftest.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from callproof.demo import SANDBOX_AGENTS_DIALPLAN
from callproof.dialplan import directory as dialplan_directory
from callproof.sandbox import Sandbox, SandboxError, provision

REPO_ROOT = Path(__file__).resolve().parents[2]
DIALPLAN_DIR = dialplan_directory()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def sandbox_unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"the Asterisk sandbox is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"Asterisk sandbox unavailable: {reason}")


def sandbox_rootfs() -> Path:
    """The provisioned (cached) rootfs, built on first use (~1 min)."""
    try:
        return provision()
    except SandboxError as exc:
        sandbox_unavailable(str(exc))


def start_sandbox(run_dir: Path, **options: Any) -> Sandbox:
    """A started Sandbox with the repository's dialplan; ``options`` go to ``Sandbox``."""
    options.setdefault("dialplan_dir", DIALPLAN_DIR)
    rootfs = sandbox_rootfs()
    try:
        return Sandbox(rootfs, run_dir, **options).start()
    except SandboxError as exc:
        sandbox_unavailable(str(exc))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One Asterisk for the whole test session, with the project's dialplan included.

    Under pytest-xdist "session" means one worker: every worker has its own
    Asterisk (own ports, credentials and run dir under the worker's own temp
    dir), its own applications and databases, so tests on different workers
    share nothing but the cached rootfs and the prompts' source copy below.
    """
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), extra_dialplan=SANDBOX_AGENTS_DIALPLAN)
    yield running
    running.stop()


# --------------------------------------------------------------------------
# the callproof application, connected to the session sandbox
# --------------------------------------------------------------------------
import asyncio  # noqa: E402

from panoramisk import Manager  # noqa: E402

from callproof.config import Config  # noqa: E402
from callproof.demo import load_sandbox_config, write_config  # noqa: E402
from callproof.prompts import generate_prompts  # noqa: E402

from .harness import AmiEvents, CallHarness, ObservedApplication, running  # noqa: E402


def worker_prompts(tmp_path_factory: pytest.TempPathFactory, dest: Path) -> None:
    """The default prompts in ``dest``: generated once per test run (espeak-ng, a few
    seconds of CPU), then copied for each xdist worker, so that a test changing a
    prompt file changes only its own worker's copy."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        run_root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this run
        shared = run_root / "prompts-source"
        with open(run_root / "prompts-source.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            generate_prompts(shared)
            shutil.copytree(shared, dest, dirs_exist_ok=True)
    generate_prompts(dest)  # keeps the copied files: their manifest matches


@pytest.fixture(scope="session")
def app_config(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """callproof.toml for the session sandbox, written the way an admin would."""
    prompts_dir = sandbox.run_dir / "prompts"
    worker_prompts(tmp_path_factory, prompts_dir)
    return load_sandbox_config(write_config(sandbox, sandbox.run_dir, prompts_dir))


@pytest.fixture(scope="session")
async def harness(app_config: Config, sandbox: Sandbox):
    async with running(ObservedApplication(app_config)) as app:
        yield CallHarness(app, sandbox, sandbox.run_dir)


#: The Stasis application of the session's PostgreSQL twin (letters only: the entry
#: dialplan's FILTER keeps letters, digits and "_" of CALLPROOF_APP).
PG_APP = "callproof_pgsuite"
ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_app_config(sandbox: Sandbox, app_config: Config, pg_cluster: Any) -> Config:
    """The session application's twin on PostgreSQL: ``[storage] url`` a database of the
    session's throw-away cluster (tests/pg_cluster.py), its own Stasis application and run
    folder (callproof.toml, recordings), and 40 ms prompts for what only takes time, so a
    test run on both engines adds seconds, not the minute of the full announcement."""
    from .test_call_state import short_prompts

    run_dir = sandbox.run_dir / "pg-suite"
    run_dir.mkdir()
    return load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": PG_APP},
        storage={"url": pg_cluster.new_database("suite")},
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0}))


@pytest.fixture(scope="session")
async def pg_harness(pg_app_config: Config, sandbox: Sandbox):
    async with running(ObservedApplication(pg_app_config)) as app:
        yield CallHarness(app, sandbox, pg_app_config.storage.database.parent, variables={"CALLPROOF_APP": PG_APP})


@pytest.fixture(params=ENGINES)
def harness_on(request: pytest.FixtureRequest) -> CallHarness:
    """The session's application on SQLite (``harness``), then its twin on PostgreSQL
    (``pg_harness``): a test taking this runs once on each engine.  Its configuration is
    ``harness_on.app.config``; its callproof.toml is in ``harness_on.run_dir``."""
    return request.getfixturevalue("harness" if request.param == "sqlite" else "pg_harness")


@pytest.fixture(scope="session")
def pg_tcp(pg_cluster: Any) -> Iterator[Any]:
    """A second throw-away cluster that also listens on loopback TCP with a random password
    (``start_cluster(tcp_password=...)``, scram): the classic AGI script runs inside the
    sandbox's chroot (Debian's python3-psycopg there), which does not see the session
    cluster's socket folder.  ``pg_cluster`` first: it fails under CI, or skips, when
    PostgreSQL is not installed.  Databases come from :func:`pg_tcp_storage`."""
    import secrets

    from tests.pg_cluster import start_cluster

    cluster = start_cluster(tcp_password=secrets.token_urlsafe(18))
    try:
        cluster.create_template()
        yield cluster
    finally:
        cluster.stop()


def pg_tcp_storage(cluster: Any, run_dir: Path, prefix: str) -> dict[str, str]:
    """The ``[storage]`` section of a new database on ``pg_tcp``, reached over TCP, whose
    password goes where an admin puts it: ``secrets.env`` (0600) beside the callproof.toml
    that ``write_config`` then writes in ``run_dir``.  The database's socket URL (what a test
    reads rows with, no password) is ``cluster.url(name)``, name the URL's last part."""
    name = cluster.new_database(prefix).rsplit("/", 1)[1]
    secrets_file = run_dir / "secrets.env"
    secrets_file.touch(mode=0o600)
    secrets_file.write_text(f"CALLPROOF_STORAGE_PASSWORD={cluster.tcp_password}\n")
    return {"url": cluster.tcp_url(name)}


@pytest.fixture(params=ENGINES)
def calls_on(request: pytest.FixtureRequest) -> tuple[dict[str, dict], Config, Path]:
    """For a module with one call per transport on each engine (test_evidence.py,
    test_encrypted_calls.py): (calls, config, config path) of its ``calls`` / ``config`` /
    ``config_path`` fixtures (SQLite), then of its ``pg_calls`` (its PostgreSQL twin)."""
    if request.param == "sqlite":
        return request.getfixturevalue("calls"), request.getfixturevalue("config"), \
            request.getfixturevalue("config_path")
    return request.getfixturevalue("pg_calls")


@pytest.fixture(scope="session")
async def ami_events(sandbox: Sandbox):
    """Every UserEvent Asterisk emits (the sandbox agents report each hand-off)."""
    manager = Manager(host=sandbox.ami_host, port=sandbox.ami_port, username=sandbox.ami_username,
                      secret=sandbox.ami_password, events="on")
    events = AmiEvents(manager)
    manager.register_event("UserEvent", lambda _m, message: events.user_events.append(dict(message)))
    await manager.connect()
    for _ in range(100):
        if manager.authenticated:
            break
        await asyncio.sleep(0.05)
    assert manager.authenticated, "AMI login failed"
    yield events
    manager.close()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory):
    """callproof's wheel installed into a fresh virtual environment (tests/integration/wheel_venv.py)."""
    from .wheel_venv import installed_wheel

    return installed_wheel(tmp_path_factory)
