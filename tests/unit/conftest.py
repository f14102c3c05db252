"""Fixtures the call-flow unit tests share: the flows' configuration and a database
opened from it (``[storage] target``: the file, or the PostgreSQL URL of a module
that runs on both engines). A test module that needs another configuration defines its own
``config`` (pytest takes the module's over this one); ``db`` then opens that one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callproof.config import Config
from callproof.storage import Database
from tests.fakes.flow_config import flow_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return flow_config(tmp_path)


@pytest.fixture
async def db(config: Config) -> AsyncIterator[Database]:
    database = await Database.open(config.storage.target)
    yield database
    await database.close()
