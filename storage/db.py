"""The :class:`Database` handle: the aiosqlite connection (or, on PostgreSQL, a connection
driven by its own thread: :mod:`storage.pg_thread`), the connections of the calls' bounded
steps, and the repositories that use them.  Opening one connection -- the file's permissions,
the pragmas, the migrations, the same for async and sync callers -- is :mod:`storage.connect`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

import aiosqlite

from .ari_leases import AriLeases
from .audit import AuditLog
from .bounded import QueuedStep, within, within_unless_abandoned
from .calls import Calls
from .connect import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_FILE_MODE,
    MEMORY,
    Clock,
    _check_file_mode,
    _prepare_file,
    _setup,
    configure,
    connect_pg,
    connect_sync,
)
from .errors import StorageError, StorageUnavailable
from .evidence import EvidenceRecords
from .figures import FiguresReader
from .outbox import Outbox
from .pg_thread import _ThreadConnection
from .pg_url import is_postgres_url
from .protocols import Protocols
from .queue_wait import QueueWait
from .recordings import Recordings
from .schema import Migration, load_migrations, migrate, schema_version, split_statements
from .timefmt import to_db_time, utc_now

if TYPE_CHECKING:
    from .sync import SyncDatabase

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_FILE_MODE",
    "MEMORY",
    "Database",
    "Migration",
    "configure",
    "connect_sync",
    "load_migrations",
    "migrate",
    "schema_version",
    "split_statements",
    "within",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Connections for the calls' bounded steps (Database.run_within): calls waiting on a locked
#: database wait side by side on them; more than this many at once queue, each still bounded.
CALLS_CONNECTIONS = 3


# --------------------------------------------------------------------------
# Async handle
# --------------------------------------------------------------------------

class Database:
    """One aiosqlite connection plus the repositories that use it.

    All statements of one repository call run as a single sync function on
    aiosqlite's worker thread (see :meth:`run_in_connection`), so a
    multi-statement transaction can never interleave with statements from
    other coroutines sharing this connection.
    """

    def __init__(self, conn: aiosqlite.Connection, path: str, now: Clock = utc_now, password: str = "") -> None:
        self._conn = conn
        self.path = path
        #: "sqlite" or "postgresql" (``path`` is then the URL, without its password)
        self.engine = "postgresql" if is_postgres_url(path) else "sqlite"
        self._password = password
        self._now = now
        self._busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS
        self._call_conns: list[aiosqlite.Connection] = []  # the calls' bounded steps (run_within)
        self._in_flight: list[int] = []  # steps queued or running, per calls' connection
        self._call_conn_lock: asyncio.Lock | None = None
        self.calls_connections = CALLS_CONNECTIONS  # 1 in a process that serves one call (classic AGI)
        self.calls = Calls(self)
        self.protocols = Protocols(self)
        self.recordings = Recordings(self)
        self.outbox = Outbox(self)
        self.audit = AuditLog(self)
        self.evidence = EvidenceRecords(self)
        self.queue_wait = QueueWait(self)
        self.ari_leases = AriLeases(self)
        self.figures = FiguresReader(self)
        #: told ``(operation, seconds)`` after each storage call (the metrics' storage latency)
        self.latency_observer: Callable[[str, float], None] | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        file_mode: int = DEFAULT_FILE_MODE,
        now: Clock = utc_now,
        password: str = "",
    ) -> _Opening:
        """Open (creating if needed) and migrate.  Use as ``await Database.open(p)``,
        ``async with await Database.open(p)`` or ``async with Database.open(p)``.
        ``path`` may be a ``postgresql://`` URL (``password`` from the secrets).
        """
        path = os.fspath(path)
        if is_postgres_url(path):
            return _Opening(cls._open_pg(path, busy_timeout_ms, now, password))
        return _Opening(cls._open(path, busy_timeout_ms, file_mode, now))

    @classmethod
    async def _open_pg(cls, url: str, busy_timeout_ms: int, now: Clock, password: str) -> Database:
        conn = await _ThreadConnection.connect(url, password, busy_timeout_ms, now, True)
        db = cls(cast("aiosqlite.Connection", conn), url, now, password)
        db._busy_timeout_ms = busy_timeout_ms
        return db

    async def _connect_more(self) -> aiosqlite.Connection:
        """One more connection to the same database (the calls' connections)."""
        if self.engine == "postgresql":
            return cast("aiosqlite.Connection", await _ThreadConnection.connect(
                self.path, self._password, self._busy_timeout_ms, self._now, False))
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn._execute(lambda c=conn: configure(c._conn, self._busy_timeout_ms))
        return conn

    def open_reader_sync(self) -> sqlite3.Connection:
        """A read-only connection of its own (:class:`storage.figures.FiguresReader`)."""
        if self.engine == "postgresql":
            conn = connect_pg(self.path, password=self._password, busy_timeout_ms=self._busy_timeout_ms,
                              now=self._now, migrate_schema=False)
            conn.execute("SET default_transaction_read_only = on")
            return conn
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA query_only = ON")
        return conn

    @classmethod
    async def _open(cls, path: str, busy_timeout_ms: int, file_mode: int, now: Clock) -> Database:
        _check_file_mode(file_mode)
        if path != MEMORY:
            _prepare_file(path, file_mode)
        conn = await aiosqlite.connect(path, isolation_level=None)
        if not callable(getattr(conn, "_execute", None)):  # pragma: no cover
            await conn.close()
            raise StorageError("unsupported aiosqlite version: Connection._execute is missing")
        db = cls(conn, path, now)
        db._busy_timeout_ms = busy_timeout_ms
        try:
            await db.run_in_connection(_setup, path, busy_timeout_ms, now)
        except BaseException:
            await conn.close()
            raise
        return db

    def now(self) -> str:
        """Current time from the injected clock, in the stored format."""
        return to_db_time(self._now())

    async def run_in_connection(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(sqlite3_connection, *args, **kwargs)`` on aiosqlite's worker thread.

        Why the private ``aiosqlite.Connection._execute``: the public API
        (``execute``, ``commit``...) costs one thread hop *per statement*, and
        between two awaits another coroutine on the same connection can slip
        its own statements into our open transaction.  ``_execute`` queues one
        callable on the thread that owns the sqlite3 connection, so a whole
        transaction (e.g. protocol allocation: 6 statements) is one hop and
        atomic with respect to the connection.  It also lets the async API
        run exactly the same sync functions that AGI scripts and the CLI call
        directly.  ``fn`` must not block on anything but SQLite.
        """
        aconn = self._conn

        def call() -> T:
            return fn(aconn._conn, *args, **kwargs)

        if self.latency_observer is None:
            return await aconn._execute(call)
        began = time.monotonic()
        try:
            return await aconn._execute(call)
        finally:
            self._observed(fn, began)

    def _observed(self, fn: Callable[..., Any], began: float) -> None:
        observer = self.latency_observer
        if observer is not None:
            try:
                observer(getattr(fn, "__name__", "other"), time.monotonic() - began)
            except Exception:  # a metrics bug never fails a storage call
                log.exception("storage latency observer failed")

    async def run_within(
        self,
        seconds: float,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like :meth:`run_in_connection`, for a step a caller is waiting on: done within
        ``seconds`` or not at all (:func:`within`; :class:`StorageUnavailable` otherwise).

        These steps run on connections (and threads) of their own, so a slow transaction of
        the SMS sender, the call-back scheduler or a sweep never holds a caller up; there
        are :data:`CALLS_CONNECTIONS` of them, each step going to the least busy, so calls
        waiting on a lock wait side by side, not one after the other, and a read is not
        queued behind them."""
        return await self.run_by(time.monotonic() + seconds, fn, *args, **kwargs)

    async def run_by(self, deadline: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`run_within` with a ``time.monotonic()`` deadline (several steps sharing one bound).

        The caller waits until the deadline, not behind the steps queued on the connection
        before its own (other calls waiting on a lock): a step still queued then is abandoned
        and never runs; one that started ends by the deadline anyway (its busy wait is cut; on
        PostgreSQL, a silent server's connection is cut just after it, storage/pg_watchdog.py)."""
        step = QueuedStep()
        job = asyncio.ensure_future(
            self.run_on_calls_connection(within_unless_abandoned, step, deadline, fn, *args, **kwargs))
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result and loses
            # the caller's cancellation when both land in the same loop turn (a stopping app's flow
            # would then go on to its next step)
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await asyncio.shield(job)
        except TimeoutError:
            if step.abandon():
                job.add_done_callback(_retrieve)
                raise StorageUnavailable("timeout", "the wait ran out while queued behind other calls' steps") from None
            return await job
        except asyncio.CancelledError:  # the caller went away: the step runs (or not) as before
            job.add_done_callback(_retrieve)
            raise

    async def run_on_calls_connection(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(sqlite3_connection, ...)`` on the least busy calls' connection; ``fn`` bounds its own wait."""
        conns = await self._calls_connections()
        # the first idle one: in the normal run that is always the first (one writer, no lock
        # contention between our own connections); the others take over while it waits
        index = min(range(len(conns)), key=self._in_flight.__getitem__)
        aconn = conns[index]

        def call() -> T:
            return fn(aconn._conn, *args, **kwargs)

        self._in_flight[index] += 1
        began = time.monotonic()
        try:
            return await aconn._execute(call)
        finally:
            self._in_flight[index] -= 1
            if self.latency_observer is not None:
                # the step itself (fn is within_unless_abandoned: the real one is its 3rd argument)
                self._observed(args[2] if fn is within_unless_abandoned and len(args) > 2 else fn, began)

    async def _calls_connections(self) -> list[aiosqlite.Connection]:
        if self._call_conns:
            return self._call_conns
        if self.path == MEMORY:  # one in-memory database: the same connection
            self._in_flight = [0]
            return [self._conn]
        if self._call_conn_lock is None:
            self._call_conn_lock = asyncio.Lock()
        async with self._call_conn_lock:
            if not self._call_conns:
                opened: list[aiosqlite.Connection] = []
                try:
                    for _ in range(max(1, self.calls_connections)):
                        opened.append(await self._connect_more())
                except BaseException:
                    for conn in opened:
                        await conn.close()
                    raise
                self._in_flight = [0] * len(opened)
                self._call_conns = opened
        return self._call_conns

    async def run_sync(
        self,
        fn: Callable[Concatenate[SyncDatabase, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(sync_handle, *args, **kwargs)`` on the worker thread: business code
        written against :class:`storage.SyncDatabase` (e.g. filing a request)
        runs on this connection as one hop, like :meth:`run_in_connection`."""
        from .sync import SyncDatabase

        def call(conn: sqlite3.Connection) -> T:
            return fn(SyncDatabase(conn), *args, **kwargs)

        return await self.run_in_connection(call)

    async def schema_version(self) -> int:
        return await self.run_in_connection(schema_version)

    async def close(self) -> None:
        await asyncio.to_thread(self.figures.close)
        conns, self._call_conns = self._call_conns, []
        for conn in conns:
            if conn is not self._conn:
                await conn.close()
        await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Opening:
    """Awaitable and async context manager returned by :meth:`Database.open`."""

    __slots__ = ("_coro", "_db")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._db: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return self._coro.__await__()

    async def __aenter__(self) -> Database:
        self._db = await self._coro
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()


def _retrieve(job: asyncio.Future[Any]) -> None:
    """An abandoned step's result (it raises StorageUnavailable when its turn comes): read, so
    asyncio does not report it as never retrieved."""
    if not job.cancelled():
        job.exception()
