"""Debian's ``age`` and ``age-keygen``: the independent implementation callproof's files are checked against."""

from __future__ import annotations

import shutil
from typing import NoReturn

import pytest

from .conftest import in_ci


def age_unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"Debian's age is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"age unavailable: {reason}")


def age_binaries() -> tuple[str, str]:
    """Paths of ``age`` and ``age-keygen`` (Debian package age)."""
    age, keygen = shutil.which("age"), shutil.which("age-keygen")
    if age is None or keygen is None:
        age_unavailable("no `age` / `age-keygen` on PATH (Debian package age; scripts/setup installs it)")
    return age, keygen
