"""The web tests' storage engine."""

from __future__ import annotations

import pytest


@pytest.fixture
def engine() -> str:
    """The ``site`` fixture's storage engine (tests/unit/web/test_app.py): SQLite unless the
    test is marked ``both_engines`` there."""
    return "sqlite"
