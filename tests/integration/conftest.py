"""Fixtures for tests that run against the real Asterisk 22 sandbox (callproof/sandbox.py).

Rule: under CI (``CI=true``) a sandbox that cannot be provisioned or started
FAILS the tests that need it -- a silently skipped integration suite would look
green.  Elsewhere (e.g. a developer without root) those tests are skipped with
the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from callproof.sandbox import Sandbox, SandboxError, provision

REPO_ROOT = Path(__file__).resolve().parents[2]
DIALPLAN_DIR = REPO_ROOT / "dialplan"


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
    """One Asterisk for the whole test session, with the project's dialplan included."""
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()
