"""The sandbox's one exception and the checks every part of it makes before acting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class SandboxError(RuntimeError):
    """The sandbox could not be provisioned, started or used."""


def require_root(purpose: str) -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            f"{purpose} needs root (debootstrap, chroot and mount); run as root, "
            "e.g. in the CI container or with sudo"
        )


def require_tool(name: str, hint: str) -> None:
    if shutil.which(name) is None:
        raise SandboxError(f"'{name}' is not installed; {hint}")


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
