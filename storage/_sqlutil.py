"""Small helpers shared by the repository modules (sync, sqlite3-level)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from .dialect import dialect_of


def immediate(conn: sqlite3.Connection, chains: tuple[str, ...] = ()) -> AbstractContextManager[sqlite3.Connection]:
    """Run the block in ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error).

    IMMEDIATE takes the write lock up front, so concurrent writers queue on
    ``busy_timeout`` instead of failing with SQLITE_BUSY when a deferred
    (read) transaction tries to upgrade to a write.  The connection must not
    already be inside a transaction.  On PostgreSQL the same one-writer order
    comes from an advisory transaction lock (:meth:`storage.dialect.Dialect.begin_write`);
    ``chains``: the chains the transaction appends to, locked with it (the audit log's).
    """
    dialect = dialect_of(conn)
    return _transaction(conn, lambda c: dialect.begin_write(c, chains))


def row_locked(conn: sqlite3.Connection) -> AbstractContextManager[sqlite3.Connection]:
    """A write transaction whose statements lock the rows they need themselves (the
    protocol counter's ``UPDATE``, the SMS claim's ``FOR UPDATE SKIP LOCKED``): on
    PostgreSQL it waits for no other writer; on SQLite it is :func:`immediate`."""
    return _transaction(conn, dialect_of(conn).begin_rows)


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: Callable[[sqlite3.Connection], None]
                 ) -> Iterator[sqlite3.Connection]:
    try:
        begin(conn)
    except BaseException:
        # PostgreSQL's write lock is a statement after BEGIN: its lock wait running out leaves
        # the transaction open and refusing every statement, the connection's next step included
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def recoverable(conn: sqlite3.Connection) -> Iterator[None]:
    """A statement whose failure the caller handles and then reads on in the same transaction
    (an INSERT refused as a duplicate, then the row that was there): a failed statement
    leaves SQLite's transaction usable, but aborts PostgreSQL's -- every later statement
    refused until ROLLBACK.  Inside a PostgreSQL transaction the statement runs under a
    savepoint, rolled back to when it fails; elsewhere nothing is added."""
    if dialect_of(conn).name == "sqlite" or not conn.in_transaction:
        yield
        return
    conn.execute("SAVEPOINT recoverable")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK TO SAVEPOINT recoverable")
        raise
    conn.execute("RELEASE SAVEPOINT recoverable")


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid of the row the cursor's INSERT just wrote."""
    rowid = cur.lastrowid
    if rowid is None:  # only before any INSERT on the cursor
        raise sqlite3.InterfaceError("the cursor has inserted no row")
    return rowid


def _names(cur: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cur.description]


def fetch_one(cur: sqlite3.Cursor) -> dict[str, Any] | None:
    """Next row as a dict, whatever the connection's row_factory is."""
    row = cur.fetchone()
    return None if row is None else dict(zip(_names(cur), row, strict=True))


def fetch_all(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = _names(cur)
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
