"""Who is acting, for the audit log, when a person runs a command."""

from __future__ import annotations

import getpass
import os


def login_name() -> str:
    """The person behind the command: the sudo caller if any, else the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def cli_actor(by: str | None) -> str:
    """``--by`` when given, else :func:`login_name`."""
    return by or login_name()
