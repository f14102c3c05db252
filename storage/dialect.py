"""What differs between the two engines, in one place.

The table modules are written once, against the subset of the DB-API that
``sqlite3.Connection`` offers (``execute(sql, params)`` with ``?``
placeholders, ``fetchone``/``fetchall``, ``in_transaction``).  A PostgreSQL
connection is wrapped to speak the same (:class:`storage.pg.PgConnection`);
what cannot be the same SQL goes through the connection's dialect:

* how a write transaction starts: SQLite's ``BEGIN IMMEDIATE`` (one writer at a
  time, for the whole file) vs PostgreSQL's ``BEGIN`` plus a transaction-level
  advisory lock that gives the same one-writer order (:meth:`Dialect.begin_write`),
  or ``BEGIN`` alone for the hot paths that lock their own rows
  (:meth:`Dialect.begin_rows`: the protocol counter, the SMS claim);
* serialising one chain (the audit log's head): nothing to do under SQLite's
  write lock, an advisory transaction lock on PostgreSQL;
* the wait for a lock: ``PRAGMA busy_timeout`` vs ``SET lock_timeout``;
* seconds between two stored ISO-8601 times (``julianday`` vs ``extract(epoch)``).

A plain ``sqlite3.Connection`` has no ``dialect`` attribute: :func:`dialect_of`
answers :data:`SQLITE` for it, so the SQLite path pays one ``getattr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol


class _Executes(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


class Dialect:
    """SQLite's answers (the default engine)."""

    name = "sqlite"
    #: appended to a SELECT whose rows the transaction is about to change (SQLite: the
    #: write lock already covers them)
    for_update = ""
    #: a join whose left table the planner must read first (SQLite's CROSS JOIN)
    ordered_join = "CROSS JOIN"

    def begin_write(self, conn: _Executes, chains: tuple[str, ...] = ()) -> None:
        """A write transaction; ``chains``: the chains it appends to, serialised from its start
        (:meth:`lock_chain` then needs no statement of its own; here the write lock does it)."""
        conn.execute("BEGIN IMMEDIATE")

    def begin_rows(self, conn: _Executes) -> None:
        """A transaction that takes its own row locks (``FOR UPDATE``, ``UPDATE ... RETURNING``)."""
        conn.execute("BEGIN IMMEDIATE")

    def lock_chain(self, conn: _Executes, chain: str) -> None:
        """Serialise appends to ``chain`` until the transaction ends (the write lock does here)."""

    def set_lock_wait(self, conn: _Executes, ms: int) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(ms)}")

    def seconds_between(self, end: str, start: str) -> str:
        """SQL for the seconds from ``start`` to ``end`` (two ISO-8601 TEXT columns)."""
        return f"(julianday({end}) - julianday({start})) * 86400.0"

    def greatest(self, a: str, b: str) -> str:
        return f"max({a}, {b})"


class PostgresDialect(Dialect):
    name = "postgresql"
    for_update = " FOR UPDATE"
    ordered_join = "JOIN"
    #: ``pg_advisory_xact_lock`` keys: one for "the database's writer" (what BEGIN IMMEDIATE
    #: means on SQLite), one per serialised chain.  Arbitrary constants, fixed forever.
    WRITE_LOCK = 0x63700001
    CHAIN_LOCKS: Mapping[str, int] = MappingProxyType({"audit_log": 0x63700002})

    def begin_write(self, conn: _Executes, chains: tuple[str, ...] = ()) -> None:
        conn.execute("BEGIN")
        # the writer's lock, then the chains' (the order every transaction takes them in), in
        # the one round trip that also carries the BEGIN (storage.pg.PgConnection)
        conn.execute("; ".join(f"SELECT pg_advisory_xact_lock({key})"
                               for key in (self.WRITE_LOCK, *(self.CHAIN_LOCKS[c] for c in chains))))

    def begin_rows(self, conn: _Executes) -> None:
        conn.execute("BEGIN")

    def lock_chain(self, conn: _Executes, chain: str) -> None:
        conn.execute(f"SELECT pg_advisory_xact_lock({self.CHAIN_LOCKS[chain]})")

    def set_lock_wait(self, conn: _Executes, ms: int) -> None:
        """Here a statement (a round trip), where SQLite's PRAGMA is a call in the process:
        rounded down to whole tenths of a second, so that a call's steps, each bounded by what
        is left of the same wait, ask for the same value and the connection sets it once
        (:meth:`storage.pg.PgConnection.set_lock_timeout`; bench/bench_pg_calls.py)."""
        ms = max(1, int(ms))
        if ms >= 100:
            ms -= ms % 100
        setter = getattr(conn, "set_lock_timeout", None)
        if setter is not None:
            setter(ms)
        else:
            conn.execute(f"SET lock_timeout = {ms}")

    def seconds_between(self, end: str, start: str) -> str:
        return (f"(extract(epoch FROM CAST({end} AS timestamptz))"
                f" - extract(epoch FROM CAST({start} AS timestamptz)))")

    def greatest(self, a: str, b: str) -> str:
        return f"greatest({a}, {b})"


SQLITE = Dialect()
POSTGRESQL = PostgresDialect()


def dialect_of(conn: object) -> Dialect:
    return getattr(conn, "dialect", SQLITE)
