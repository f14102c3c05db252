"""A PostgreSQL connection driven by a thread of its own, for :class:`storage.db.Database`."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .connect import Clock, connect_pg

T = TypeVar("T")


class _ThreadConnection:
    """What :class:`Database` needs of an aiosqlite connection (``_conn``, ``_execute``,
    ``close``), for a PostgreSQL connection: one thread of its own runs its statements.

    The thread takes its jobs from a queue and hands each result back to the caller's loop,
    as aiosqlite's does: a hop through ``run_in_executor`` (futures of both kinds chained,
    a work item per call) cost ~30 us more of the process's CPU (bench/bench_pg_calls.py)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._jobs: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        # a daemon: a process that exits with its database still open is not held up by it
        # (the server rolls back what the connection had not committed)
        self._thread = threading.Thread(target=self._work, name="callproof-pg", daemon=True)
        self._thread.start()

    @classmethod
    async def connect(cls, url: str, password: str, busy_timeout_ms: int, now: Clock,
                      migrate_schema: bool) -> _ThreadConnection:
        conn = await asyncio.to_thread(connect_pg, url, password=password, busy_timeout_ms=busy_timeout_ms,
                                       now=now, migrate_schema=migrate_schema)
        return cls(conn)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            result, error = None, None
            try:
                result = fn()
            except BaseException as exc:
                error = exc
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the caller's loop is closed: nobody waits for it
                pass

    async def _execute(self, fn: Callable[[], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn))
        return await future

    async def close(self) -> None:
        try:
            await self._execute(self._conn.close)
        finally:
            self._jobs.put(None)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # its caller was cancelled: the job ran all the same
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
