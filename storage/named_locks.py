"""A name one process holds at a time, on PostgreSQL: a session advisory lock.

On SQLite a process holds a name with an ``flock`` on a file beside the database
(callproof/sms/identity.py); a ``postgresql://`` database has no file to put it
beside, and its processes may run on several hosts.  There the name is held with
``pg_try_advisory_lock`` on a connection of its own, kept open while the process
lives: the server releases the lock when that session ends, however the process
ended (``kill -9`` closes its socket), so holding the lock is the fact that the
name's earlier owner is gone -- the same fact the ``flock`` gives.

Unlike the ``flock``, the lock also goes when the server restarts or drops the session
while the process lives on: the process keeps calling itself by the name, and a second
process started with the same host and instance in that window would take the name too.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .connect import connect_pg

#: The first key of the two-key advisory locks on names (the second: the name's hashtext).
#: Distinct from the transaction locks of storage/dialect.py (one-key), fixed forever.
NAME_LOCK_SPACE = 0x6370


class HeldName:
    """A name held by this process until :meth:`release` (or its end)."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.name = name

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # the session ends: the server drops its lock
            except sqlite3.Error:
                pass
            self._conn = None


def try_hold_name(url: str, name: str, *, password: str = "") -> HeldName | None:
    """``name`` held by this process alone (None: another session holds it).  Raises the
    storage error of a server that cannot be reached."""
    conn = connect_pg(url, password=password, migrate_schema=False)
    try:
        row = conn.execute(f"SELECT pg_try_advisory_lock({NAME_LOCK_SPACE}, hashtext(?))", (name,)).fetchone()
    except BaseException:
        conn.close()
        raise
    if not row[0]:
        conn.close()
        return None
    return HeldName(conn, name)


def hold_name_for(db: Any, name: str) -> HeldName | None:
    """:func:`try_hold_name` on the database of a :class:`storage.db.Database` handle."""
    return try_hold_name(db.path, name, password=getattr(db, "_password", ""))
