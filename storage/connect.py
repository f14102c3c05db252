"""Opening one connection: the SQLite file's permissions and pragmas, or a PostgreSQL
connection, then the migrations.  The same setup for every caller: the async
:class:`storage.db.Database` (whose connections are opened here) and sync callers such as
AGI scripts and the CLI (:func:`connect_sync`), so every process sees identical pragmas and
schema version.  The migrations themselves are in :mod:`storage.schema`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from datetime import datetime
from typing import cast

from .errors import StorageError
from .pg_url import is_postgres_url
from .schema import migrate
from .timefmt import utc_now

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_FILE_MODE = 0o600
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
