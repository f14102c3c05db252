"""Run the project's sync storage functions from aiohttp handlers without
blocking the event loop.

Why not :class:`storage.Database`: it has one connection on one thread, so
an export (ffmpeg, seconds) or an SMTP delivery would stall every other page
behind it.  Here a few threads each borrow a connection from a small pool;
SQLite in WAL mode lets the readers run side by side while writers queue on
``busy_timeout`` as in every other callproof process.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from callproof.storage import connect_sync
from callproof.storage.db import configure

T = TypeVar("T")


class DbPool:
    def __init__(self, path: Path | str, *, size: int = 4, busy_timeout_ms: int = 5000) -> None:
        # The first connection creates the file with the right mode and migrates;
        # the others only need the pragmas.
        first = connect_sync(path, busy_timeout_ms=busy_timeout_ms)
        first.close()
        self._conns: list[sqlite3.Connection] = []
        self._free: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        for _ in range(size):
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            configure(conn, busy_timeout_ms)
            self._conns.append(conn)
            self._free.put(conn)
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="callproof-web-db")

    def _call(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        conn = self._free.get()
        try:
            return fn(conn, *args, **kwargs)
        finally:
            if conn.in_transaction:  # a function that raised half-way must not leak its transaction
                conn.execute("ROLLBACK")
            self._free.put(conn)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` on a pool thread with a borrowed connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, args, kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for conn in self._conns:
            conn.close()
        self._conns.clear()
