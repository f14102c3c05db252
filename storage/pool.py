"""A small pool of sync handles for a threaded server (the ops web page).

Why not :class:`storage.Database`: it has one connection on one thread, so an
export (ffmpeg, seconds) or an SMTP delivery would stall every other page
behind it.  Here a few threads each borrow a :class:`SyncDatabase` from the
pool; SQLite in WAL mode lets the readers run side by side while writers
queue on ``busy_timeout`` as in every other callproof process.

The first connection is opened with :func:`connect_sync` (creates the file
with the right mode, migrates); the others only get the pragmas.  Neither
opens the database file outside SQLite.  With a ``postgresql://`` URL the
handles are :class:`storage.pg.PgConnection` (MVCC: readers and writers run
side by side on the server); each reopens itself when the server drops it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from .connect import DEFAULT_BUSY_TIMEOUT_MS, configure, connect_pg, connect_sync
from .pg_url import is_postgres_url
from .sync import SyncDatabase

P = ParamSpec("P")
T = TypeVar("T")


class SyncPool:
    def __init__(self, path: str | os.PathLike[str], *, size: int = 4,
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, password: str = "") -> None:
        path = os.fspath(path)
        connect_sync(path, busy_timeout_ms=busy_timeout_ms, password=password).close()
        self._conns: list[sqlite3.Connection] = []
        self._free: queue.SimpleQueue[SyncDatabase] = queue.SimpleQueue()
        for _ in range(size):
            if is_postgres_url(path):  # each reconnects by itself when the server drops it
                conn = connect_pg(path, password=password, busy_timeout_ms=busy_timeout_ms, migrate_schema=False)
            else:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                configure(conn, busy_timeout_ms)
            self._conns.append(conn)
            self._free.put(SyncDatabase(conn))
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="callproof-web-db")

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        db = self._free.get()
        try:
            return fn(db, *args, **kwargs)
        finally:
            db.rollback()  # a function that raised half-way must not leak its transaction
            self._free.put(db)

    async def run(self, fn: Callable[Concatenate[SyncDatabase, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(db, *args, **kwargs)`` on a pool thread with a borrowed :class:`SyncDatabase`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, args, kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for conn in self._conns:
            conn.close()
        self._conns.clear()
