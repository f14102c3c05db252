"""Small helpers shared by the repository modules (sync, sqlite3-level)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error).

    IMMEDIATE takes the write lock up front, so concurrent writers queue on
    ``busy_timeout`` instead of failing with SQLITE_BUSY when a deferred
    (read) transaction tries to upgrade to a write.  The connection must not
    already be inside a transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
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
