"""Opening the database named by the configuration: the one place that reads
``[storage] database`` and ``busy_timeout_ms``.

* :func:`open_database` -- the async :class:`Database` (``await`` it or use
  ``async with``), for the ARI app, FastAGI, the SMS and call-back commands.
* :func:`open_sync` -- a :class:`SyncDatabase` (use ``with``), for CLI
  commands.
* :func:`open_pool` -- the web page's pool of sync handles.

``[storage] url`` (a ``postgresql://`` URL, the password from ``[storage] password``,
i.e. the secrets file) takes the place of ``database`` when it is set.

All of them go through :func:`storage.connect.connect_sync` / :meth:`Database.open`,
which create a missing file with the right mode and never open an existing
database file outside SQLite (see :func:`storage.connect._prepare_file`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .db import Database, _Opening
from .pool import SyncPool
from .sync import SyncDatabase

if TYPE_CHECKING:
    from pathlib import Path


class _StorageSection(Protocol):
    @property
    def database(self) -> Path: ...
    @property
    def busy_timeout_ms(self) -> int: ...
    @property
    def target(self) -> str: ...
    @property
    def password(self) -> str: ...


class _HasStorage(Protocol):
    """What is read of :class:`callproof.config.Config`."""

    @property
    def storage(self) -> _StorageSection: ...


def open_database(config: _HasStorage) -> _Opening:
    """``await open_database(config)`` or ``async with open_database(config) as db``."""
    st = config.storage
    return Database.open(st.target, busy_timeout_ms=st.busy_timeout_ms, password=st.password)


async def open_for_one_call(config: _HasStorage) -> Database:
    """The database of a process that serves one call (the classic AGI script): one calls'
    connection instead of a pool."""
    db = await open_database(config)
    db.calls_connections = 1
    return db


def open_sync(config: _HasStorage) -> SyncDatabase:
    """A sync handle; ``with open_sync(config) as db:`` closes it."""
    st = config.storage
    return SyncDatabase.open(st.target, busy_timeout_ms=st.busy_timeout_ms, password=st.password)


def open_pool(config: _HasStorage, *, size: int = 4) -> SyncPool:
    st = config.storage
    return SyncPool(st.target, size=size, busy_timeout_ms=st.busy_timeout_ms, password=st.password)
