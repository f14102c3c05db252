"""How a parallel run shares the tests out (``scripts/test``: ``pytest -n 4 --dist loadfile``).

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
"""

from __future__ import annotations

from typing import Any

import pytest

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
