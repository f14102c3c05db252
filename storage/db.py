"""Opening the database: file permissions, pragmas, migrations, and the
:class:`Database` handle that owns the aiosqlite connection.

The same setup runs for the async app (:meth:`Database.open`) and for sync
callers such as AGI scripts and the CLI (:func:`connect_sync`), so every
process sees identical pragmas and schema version.  The migrations themselves
are in :mod:`storage.schema`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Generator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

import aiosqlite

from .ari_leases import AriLeases
from .audit import AuditLog
from .bounded import QueuedStep, within, within_unless_abandoned
from .calls import Calls
from .errors import StorageError, StorageUnavailable
from .evidence import EvidenceRecords
from .figures import FiguresReader
from .outbox import Outbox
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

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_FILE_MODE = 0o600
#: Connections for the calls' bounded steps (Database.run_within): calls waiting on a locked
#: database wait side by side on them; more than this many at once queue, each still bounded.
CALLS_CONNECTIONS = 3
MEMORY = ":memory:"
_SIDECARS = ("", "-wal", "-shm", "-journal")

Clock = Callable[[], "str | datetime"]


# --------------------------------------------------------------------------
# File permissions
# --------------------------------------------------------------------------

def _check_file_mode(file_mode: int) -> None:
    if file_mode & ~0o660 or (file_mode & 0o600) != 0o600:
        raise ValueError(
            f"file_mode {file_mode:#o} must be rw for the owner, at most rw for "
            "the group and nothing for others (e.g. 0o600 or 0o640)"
        )


def _prepare_file(path: str, file_mode: int) -> None:
    """Create the database file with ``file_mode`` before SQLite touches it.

    SQLite creates the -wal/-shm/-journal files with the permissions of the
    main file, so creating that one right is enough (and avoids changing the
    process-wide umask, which would race with other threads).  An existing
    file that is accessible to "others" is tightened.

    An existing file is never opened here: closing any descriptor of the
    database file drops every POSIX lock this process holds on it, including
    those of SQLite connections already open in other threads (the web
    server's pool, an app with a CLI helper in the same process).  Another
    process then believes it is the last one, checkpoints and resets the WAL
    under those connections, and they read a torn image ("database disk image
    is malformed").  See sqlite.org/howtocorrupt.html, 2.2.1.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), file_mode)
    except FileExistsError:
        pass
    else:
        os.close(fd)  # a brand-new file: nobody can hold a lock on it yet
    _tighten(path)


def _tighten(path: str) -> None:
    """Remove any permission bits for "others" from the db and its sidecars."""
    for suffix in _SIDECARS:
        name = path + suffix
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if mode & 0o007:
                os.chmod(name, mode & ~0o007)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("cannot remove world access from %s (not the owner)", name)


# --------------------------------------------------------------------------
# Pragmas
# --------------------------------------------------------------------------

def configure(conn: sqlite3.Connection, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
    """Per-connection pragmas.  Must run outside a transaction."""
    if not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be a non-negative int, got {busy_timeout_ms!r}")
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    # WAL: readers never block the writer and vice versa; persistent in the file.
    mode = _switch_to_wal(conn, busy_timeout_ms)
    if mode.lower() not in ("wal", "memory"):
        raise StorageError(f"could not switch the database to WAL mode (got {mode!r})")
    # NORMAL is durable across application crashes in WAL mode; only an OS
    # crash / power loss can lose the last commits (never corrupts).
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
        raise StorageError("this SQLite build cannot enforce foreign keys")


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> str:
    """``PRAGMA journal_mode = WAL``, retried within the busy timeout.

    Processes opening a fresh (rollback-journal) file at once each take a shared lock and then
    want the exclusive one to switch it: SQLite breaks that deadlock by failing one of them with
    "database is locked" at once, without its busy handler.  The switch is idempotent, so the
    loser tries again until the file is in WAL mode (the winner's switch persists) or the busy
    timeout has passed."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.005
    while True:
        try:
            mode: str = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            return mode
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


# --------------------------------------------------------------------------
# Sync entry point (AGI scripts, CLI, benchmarks)
# --------------------------------------------------------------------------

def _setup(
    conn: sqlite3.Connection, path: str, busy_timeout_ms: int, now: Clock
) -> None:
    configure(conn, busy_timeout_ms)
    migrate(conn, now=now)
    if path != MEMORY:
        _tighten(path)  # the -wal/-shm files exist now


def connect_sync(
    path: str | os.PathLike[str],
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    file_mode: int = DEFAULT_FILE_MODE,
    now: Clock = utc_now,
    password: str = "",
) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same pragmas and schema as
    :meth:`Database.open`.  Autocommit mode (``isolation_level=None``): the
    storage functions issue their own ``BEGIN IMMEDIATE``.

    ``path`` may be a ``postgresql://`` URL (``[storage] url``, with ``password``):
    the connection is then a :class:`storage.pg.PgConnection`, which the storage
    functions use exactly as a sqlite3 one (see :mod:`storage.dialect`).
    """
    path = os.fspath(path)
    if is_postgres_url(path):
        return connect_pg(path, password=password, busy_timeout_ms=busy_timeout_ms, now=now)
    _check_file_mode(file_mode)
    if path != MEMORY:
        _prepare_file(path, file_mode)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _setup(conn, path, busy_timeout_ms, now)
    except BaseException:
        conn.close()
        raise
    return conn


def _pg_setup(busy_timeout_ms: int) -> tuple[str, ...]:
    if not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be a non-negative int, got {busy_timeout_ms!r}")
    # busy_timeout's meaning on PostgreSQL: how long a statement waits for a row or advisory lock
    return (f"SET lock_timeout = {busy_timeout_ms}", "SET TIME ZONE 'UTC'")


def connect_pg(url: str, *, password: str = "", busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
               now: Clock = utc_now, migrate_schema: bool = True) -> sqlite3.Connection:
    """A :class:`storage.pg.PgConnection` to ``url`` (migrated), typed as what it stands in for."""
    from .pg import PgConnection
    from .pg_schema import migrate_pg
    from .pg_url import conninfo

    conn = PgConnection.connect(conninfo(url, password), _pg_setup(busy_timeout_ms))
    try:
        if migrate_schema:
            migrate_pg(conn, now=now)
    except BaseException:
        conn.close()
        raise
    return cast("sqlite3.Connection", conn)


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
