"""The PostgreSQL connection, speaking what the table modules expect of a connection.

The table modules' ``*_sync`` functions are written against the part of the DB-API
that ``sqlite3.Connection`` offers; :class:`PgConnection` wraps a psycopg 3
connection to offer the same, so every query has one code path for both engines:

* ``execute(sql, params)`` with ``?`` (or ``:name``) placeholders, rewritten once per
  distinct statement to psycopg's ``%s`` (a ``%`` in the SQL doubled; SQLite's
  ``INDEXED BY`` hints dropped: PostgreSQL's planner picks its indexes; SQLite's
  ``x IS ?`` is ``x IS NOT DISTINCT FROM %s``);
* the cursor's ``fetchone``/``fetchall``/iteration/``description``/``rowcount``, and
  ``lastrowid`` after an ``INSERT`` into a table keyed by ``id`` (the statement gets
  ``RETURNING id``: PostgreSQL has no rowid); a statement runs through libpq itself
  (``PQexecParams``, or ``PQexec`` without parameters), with psycopg's C adapters for the
  parameters and the rows, not through psycopg's cursor (:mod:`storage.pg_results`);
* ``in_transaction`` and explicit ``BEGIN``/``COMMIT``/``ROLLBACK`` statements
  (the connection is in autocommit mode, as ``isolation_level=None`` is for sqlite3);
  ``BEGIN`` goes to the server with the transaction's first statement (one round trip for
  both when that one has no parameters, as the write lock's ``pg_advisory_xact_lock``;
  a transaction that ran nothing is never sent), and the commands without parameters or
  rows (``COMMIT``, ``SAVEPOINT``...) go as they are: each round trip through psycopg's
  cursor was ~50 us of the client's CPU (bench/bench_pg_calls.py);
* the driver's errors surface as the ``sqlite3`` exception the modules catch
  (``IntegrityError`` worded like SQLite's, ``OperationalError``
  for a lock wait that ran out, "database is locked", or a lost server), so the
  callers' error handling is the same for both engines.

Why psycopg 3 (sync) and not asyncpg: the same sync functions serve the CLI, the web
page's pool, the AGI scripts and, on a thread, the async app; asyncpg would need an
async copy of every query.  See README, "Dependencies".
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres
from psycopg.adapt import Dumper, PyFormat, Transformer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ConnStatus, DiagnosticField, ExecStatus, TransactionStatus

from .dialect import POSTGRESQL, Dialect
from .pg_results import NO_ROWS, PgCursor, native
from .pg_url import masked

log = logging.getLogger(__name__)

_INDEX_HINT = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_IS_PARAM = re.compile(r"\bIS\s+\?")  # SQLite's "x IS ?" compares NULLs as equal
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
#: The tables whose key is not an ``id`` column (an INSERT into any other one returns its id).
NOT_ID_KEYED = frozenset({"protocols", "protocol_sequences", "web_sessions", "schema_migrations", "ari_leases"})
_SUCCEEDED = frozenset({ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK, ExecStatus.EMPTY_QUERY})
_AUTO: list[PyFormat] = [PyFormat.AUTO] * 64  # how each parameter is dumped: as psycopg picks
#: commands with neither parameters nor rows, sent through libpq's PQexec without a cursor
_COMMANDS = frozenset({"COMMIT", "ROLLBACK", "RELEASE", "SAVEPOINT", "SET"})
_TRANSLATED: dict[str, tuple[str, bool]] = {}
_MAX_TRANSLATED = 4096


def translate(sql: str) -> tuple[str, bool]:
    """``?`` placeholders outside string literals to ``%s`` (``:name`` to ``%(name)s``), ``%`` doubled, index hints
    dropped, and ``RETURNING id`` added to an INSERT into an id-keyed table; with whether
    it was (the cursor's ``lastrowid``)."""
    done = _TRANSLATED.get(sql)
    if done is not None:
        return done
    text = "".join(_translated_pieces(_IS_PARAM.sub("IS NOT DISTINCT FROM ?", _INDEX_HINT.sub("", sql))))
    insert = _INSERT_INTO.match(text)
    returns_id = (insert is not None and insert.group(1).lower() not in NOT_ID_KEYED
                  and "RETURNING" not in text.upper())
    done = (text.rstrip().rstrip(";") + " RETURNING id" if returns_id else text, returns_id)
    if len(_TRANSLATED) < _MAX_TRANSLATED:  # the statements are constants: a bounded cache
        _TRANSLATED[sql] = done
    return done


def _translated_pieces(sql: str) -> Iterator[str]:
    quoted = False
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            quoted = not quoted
        elif ch == "%":
            ch = "%%"
        elif not quoted and ch == "?":
            ch = "%s"
        elif not quoted and ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") \
                and (i == 0 or sql[i - 1] != ":"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            yield f"%({sql[i + 1:j]})s"  # sqlite3's :name is psycopg's %(name)s
            i = j
            continue
        yield ch
        i += 1


_CONSTRAINT_WORDS = ((pg_errors.CheckViolation, "CHECK"), (pg_errors.UniqueViolation, "UNIQUE"),
                     (pg_errors.ForeignKeyViolation, "FOREIGN KEY"), (pg_errors.NotNullViolation, "NOT NULL"))


def _as_sqlite_error(exc: psycopg.Error) -> sqlite3.Error:
    """The ``sqlite3`` exception the table modules handle for a driver error."""
    diag = getattr(exc, "diag", None)
    text = (diag.message_primary if diag is not None else None) or str(exc)
    if isinstance(exc, pg_errors.IntegrityError | pg_errors.RaiseException):
        # worded like SQLite's ("CHECK constraint failed: ..."): the same text for both engines
        for kind, words in _CONSTRAINT_WORDS:
            if isinstance(exc, kind):
                name = getattr(diag, "constraint_name", None) or getattr(diag, "column_name", None) or ""
                return sqlite3.IntegrityError(f"{words} constraint failed: {name} ({text})")
        return sqlite3.IntegrityError(text)
    if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled | pg_errors.DeadlockDetected):
        return sqlite3.OperationalError(f"database is locked ({text})")
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return sqlite3.OperationalError(f"attempt to write a readonly database ({text})")
    if isinstance(exc, pg_errors.DiskFull):
        return sqlite3.OperationalError(f"database or disk is full ({text})")
    if isinstance(exc, psycopg.OperationalError):
        return sqlite3.OperationalError(f"disk I/O error: the PostgreSQL server is unreachable ({masked(text)})")
    if isinstance(exc, pg_errors.UndefinedTable):
        return sqlite3.OperationalError(f"no such table ({text})")
    return sqlite3.DatabaseError(text)


def _without_nul(params: Any) -> Any:
    """PostgreSQL's text cannot hold U+0000, which SQLite stores: a caller-supplied string
    (a hostile caller ID) with one is stored with U+FFFD in its place rather than refused,
    so the call's row is not lost."""
    values = params.values() if isinstance(params, dict) else params
    if not any(isinstance(v, str) and "\x00" in v for v in values):
        return params
    if isinstance(params, dict):
        return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in params.items()}
    return [v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in params]


#: libpq settings each connection gets unless ``[storage] url`` sets them: a server that stops
#: answering (a network cut, a blocked port, a host gone) fails the connect or the statement
#: within seconds, where TCP alone waits ~15 min -- with the connection's one thread stuck,
#: every later step of every call would go to the journal long after the server was back.
#: (A unix socket ignores them: a stopped server is refused at once there.)
LIVENESS = {"connect_timeout": "5", "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "3",
            "keepalives_count": "3", "tcp_user_timeout": "15000"}


def with_liveness(conninfo: str) -> str:
    given = conninfo_to_dict(conninfo)
    return make_conninfo(conninfo, **{k: v for k, v in LIVENESS.items() if k not in given})


class _BoolAsInteger(Dumper):
    """A Python bool goes to the INTEGER 0/1 columns as SQLite stores it (``sms_dlrs.final``...)."""

    oid = postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


_NO_ROWS: Any = NO_ROWS


class PgConnection:
    """A psycopg connection in autocommit mode behind the sqlite3-shaped interface."""

    dialect: Dialect = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[Any], conninfo: str | None = None,
                 setup: Sequence[str] = ()) -> None:
        self._conn = conn
        self._conninfo = conninfo
        self._setup = tuple(setup)  # statements a reconnection replays (SET lock_timeout ...)
        self._lock_timeout: int | None = None  # what set_lock_timeout last set, outside a transaction
        self._begun = False  # BEGIN asked for, not sent yet: it goes with the next statement
        self._tx: Any = None  # a psycopg Transformer (its C class has no stub of its own)
        self._tx_of: psycopg.Connection[Any] | None = None  # the connection self._tx adapts for
        #: the running bounded step's deadline (time.monotonic()), which bounds a reconnection too
        self.deadline: float | None = None

    @classmethod
    def connect(cls, conninfo: str, setup: Sequence[str] = ()) -> PgConnection:
        made = cls(cls._open(conninfo), conninfo)
        for statement in setup:
            made.execute(statement)
        made._setup = tuple(setup)
        return made

    @staticmethod
    def _open(conninfo: str, deadline: float | None = None) -> psycopg.Connection[Any]:
        info = with_liveness(conninfo)
        if deadline is not None:
            # a step's reconnection ends by the step's deadline (+ the watchdog's overrun), not at
            # the URL's connect_timeout: the watchdog cannot cut a socket libpq has not handed out
            # yet.  libpq's own floor is 2 s.
            from .pg_watchdog import OVERRUN_SECONDS

            left = max(2, math.ceil(deadline + OVERRUN_SECONDS - time.monotonic()))
            given = int(str(conninfo_to_dict(info)["connect_timeout"]))
            info = make_conninfo(info, connect_timeout=str(min(left, given)))
        try:
            conn = psycopg.connect(info, autocommit=True)
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from None
        conn.adapters.register_dumper(bool, _BoolAsInteger)
        return conn

    def _reconnect_if_lost(self) -> None:
        """A connection the server dropped (a restart, a failover) is opened again before the
        next statement that does not belong to a transaction: the transaction it was in is
        gone (rolled back by the server) and its caller was told so by the failed statement."""
        if not (self._conn.closed or self._conn.broken) or self._conninfo is None:
            return
        self._conn = self._open(self._conninfo, self.deadline)
        self._lock_timeout = None
        for statement in self._setup:
            self._conn.execute(statement.encode())

    def cut(self) -> None:
        """Shut the connection's socket down, from another thread (:mod:`storage.pg_watchdog`):
        a statement waiting on a silent server returns at once with the connection lost."""
        try:
            fd = self._conn.pgconn.socket
        except psycopg.Error:
            return  # closed or lost already
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the connection itself, whichever descriptor names it
            finally:
                sock.close()  # only the duplicate
        log.warning("a storage step ran past its deadline on a silent PostgreSQL connection: connection cut")

    def set_lock_timeout(self, ms: int) -> None:
        """``SET lock_timeout``, skipped when the session has that value already (a SET inside
        a transaction is undone by its rollback: only one outside is remembered)."""
        if ms == self._lock_timeout and not (self._conn.closed or self._conn.broken):
            return
        self.execute(f"SET lock_timeout = {int(ms)}")
        self._lock_timeout = None if self.in_transaction else int(ms)

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection (a BEGIN asked for is sent first: what runs there is in it)."""
        if self._begun:
            self._begun = False
            self._command(b"BEGIN")
        return self._conn

    @property
    def in_transaction(self) -> bool:
        if self._begun:
            return True
        if self._conn.closed or self._conn.broken:
            return False  # the server rolled it back when the connection went
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> PgCursor:
        begin = self._begun
        if begin:
            self._begun = False
            if sql in ("COMMIT", "ROLLBACK"):
                return _NO_ROWS  # the transaction ran nothing: nothing was sent, nothing to end
        elif sql == "BEGIN" and not self.in_transaction:
            self._begun = True  # sent with the next statement
            return _NO_ROWS
        if self._conn.closed or self._conn.broken:
            word = sql.strip().upper()
            if word == "ROLLBACK":
                return _NO_ROWS  # nothing left to roll back
            if word == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error: the connection to PostgreSQL was lost"
                                               " before COMMIT; the transaction was rolled back")
            self._reconnect_if_lost()
        if not params and sql[:1] in "CRS" and sql.split(None, 1)[0] in _COMMANDS:
            if begin:
                self._command(b"BEGIN")
            self._command(sql.encode())
            return _NO_ROWS
        text, returns_id = translate(sql)
        conn = self._conn
        encoding = conn.info.encoding
        # a failed statement leaves PostgreSQL's transaction refusing every statement until
        # ROLLBACK (which the modules' transaction helper issues): a caller that caught the
        # error and went on would fail loudly, never commit half a change
        try:
            if params:
                query, names = native(text)
                values = _without_nul([params[n] for n in names] if isinstance(params, dict) and names is not None
                                      else params)
                if begin:
                    self._command(b"BEGIN")
                tx = self._transformer()
                dumped = tx.dump_sequence(values, _AUTO[:len(values)] if len(values) <= 64
                                          else [PyFormat.AUTO] * len(values))
                res = conn.pgconn.exec_params(query.encode(encoding), dumped, tx.types, tx.formats)
            else:  # the simple protocol: the text as is, and BEGIN in the same round trip
                query = text.replace("%%", "%")
                res = conn.pgconn.exec_(("BEGIN; " + query if begin else query).encode(encoding))
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from None
        if res.status not in _SUCCEEDED:
            self._raise_for(res)
        return PgCursor.of(res, self._transformer(), encoding, returns_id)

    def _transformer(self) -> Any:
        """psycopg's (C) adapter of the connection's types, made again for a new connection."""
        if self._tx_of is not self._conn:
            self._tx, self._tx_of = Transformer(self._conn), self._conn
        return self._tx

    def _raise_for(self, res: Any) -> NoReturn:
        pgconn = self._conn.pgconn
        if pgconn.status == ConnStatus.BAD or res.error_field(DiagnosticField.SQLSTATE) is None:
            # no SQLSTATE: libpq's own error, not the server's ("server closed the connection
            # unexpectedly"): the connection is in trouble, as psycopg's cursor reports it
            message = res.error_message or pgconn.error_message or b"the connection was lost"
            error: psycopg.Error = psycopg.OperationalError(message.decode(errors="replace").strip())
        else:
            error = pg_errors.error_from_result(res, encoding=self._conn.info.encoding)
        raise _as_sqlite_error(error) from None

    def _command(self, command: bytes) -> None:
        """A statement without parameters or rows through libpq's ``PQexec`` (blocking, the GIL
        released), its failure raised as :meth:`execute` raises it."""
        try:
            res = self._conn.pgconn.exec_(command)
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from None
        if res.status != ExecStatus.COMMAND_OK:
            self._raise_for(res)

    def cursor(self) -> PgConnection:
        """sqlite3's ``conn.cursor().execute(...)``: here every execute has its own cursor."""
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> PgCursor:
        if self._begun:
            self._begun = False
            self._reconnect_if_lost()
            self._command(b"BEGIN")
        cur = self._conn.cursor()
        try:
            cur.executemany(translate(sql)[0].removesuffix(" RETURNING id"), rows)
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from None
        return PgCursor([], None, cur.rowcount)

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed
