"""PostgreSQL transactions through the sqlite3-shaped connection: ``BEGIN`` goes to the server
with the transaction's first statement, and the commands without rows skip psycopg's cursor;
what a transaction does, and what its failures say, are as before."""

from __future__ import annotations

import re
import sqlite3
import tempfile

import pytest
from psycopg import pq

from callproof.storage import connect_sync
from callproof.storage._sqlutil import immediate, row_locked


@pytest.fixture
def conn(pg_cluster):
    url = pg_cluster.new_database("tx")
    made = connect_sync(url)
    made.execute("CREATE TABLE scratch (id BIGSERIAL PRIMARY KEY, k INTEGER UNIQUE, v TEXT)")
    try:
        yield made
    finally:
        made.close()
        pg_cluster.drop(url)


_SENT = re.compile(r'F\t\d+\t(Query|Parse)\t (?:"[^"]*" )?"(.*?)"')


def _sent(conn, fn) -> list[str]:
    """The messages the client sends the server while ``fn()`` runs (libpq's trace)."""
    with tempfile.TemporaryFile("w+") as trace:
        pgconn = conn.raw.pgconn
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            fn()
        finally:
            pgconn.untrace()
        trace.seek(0)
        # "F <length> Query "<text>"" or "F <length> Parse "<name>" "<text>" <types>"
        return [f"{m[1]} {m[2]}" for m in map(_SENT.match, trace) if m]


def test_begin_travels_with_the_first_statement_and_an_empty_transaction_is_not_sent(conn):
    def empty():
        conn.execute("BEGIN")
        assert conn.in_transaction
        conn.execute("COMMIT")

    assert _sent(conn, empty) == [] and not conn.in_transaction

    def write():
        with immediate(conn):  # BEGIN + the write lock: one round trip
            conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (1, "one"))

    assert _sent(conn, write) == [
        "Query BEGIN; SELECT pg_advisory_xact_lock(1668284417)",
        "Parse INSERT INTO scratch (k, v) VALUES ($1, $2) RETURNING id",
        "Query COMMIT"]
    assert conn.execute("SELECT v FROM scratch WHERE k = 1").fetchone() == ("one",)


def test_a_rolled_back_transaction_leaves_nothing_whichever_statement_began_it(conn):
    with pytest.raises(RuntimeError), row_locked(conn):  # BEGIN sent before a statement with parameters
        conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (2, "two"))
        raise RuntimeError("the caller gave up")
    with pytest.raises(RuntimeError), immediate(conn):
        conn.execute("INSERT INTO scratch (k, v) VALUES (3, 'three')")
        raise RuntimeError("the caller gave up")
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


def test_a_refused_first_statement_leaves_the_transaction_to_roll_back(conn):
    conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (4, "four"))
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (4, "again"))
    assert conn.in_transaction  # the server refuses everything until ROLLBACK
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT v FROM scratch WHERE k = ?", (4,)).fetchall() == [("four",)]


def test_the_write_lock_held_elsewhere_is_still_database_is_locked(conn, pg_cluster):
    other = connect_sync(pg_cluster.url(conn.raw.info.dbname))
    try:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(1668284417)")  # another writer holds it
        conn.execute("SET lock_timeout = 100")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"), immediate(conn):
            conn.execute("INSERT INTO scratch (k, v) VALUES (5, 'five')")
        assert not conn.in_transaction
        other.execute("COMMIT")
        with immediate(conn):
            conn.execute("INSERT INTO scratch (k, v) VALUES (5, 'five')")
        assert conn.execute("SELECT v FROM scratch WHERE k = 5").fetchone() == ("five",)
    finally:
        other.close()


def test_a_commit_the_server_refuses_raises_as_sqlite_would_and_keeps_nothing(conn):
    conn.execute("CREATE TABLE deferred (id BIGSERIAL PRIMARY KEY, k INTEGER,"
                 " UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)")
    conn.execute("INSERT INTO deferred (k) VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"), row_locked(conn):
        conn.execute("INSERT INTO deferred (k) VALUES (?)", (1,))  # checked at COMMIT
        conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (6, "six"))
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM scratch").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM deferred").fetchone() == (1,)


def test_a_connection_the_server_drops_fails_its_statement_as_storage_trouble_then_reopens(conn, pg_cluster):
    other = connect_sync(pg_cluster.url(conn.raw.info.dbname))
    try:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        other.execute("SELECT pg_terminate_backend(?)", (pid,))
    finally:
        other.close()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (7, "seven"))
    assert not conn.in_transaction
    conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (7, "seven"))  # on a new connection
    assert conn.execute("SELECT v FROM scratch WHERE k = ?", (7,)).fetchall() == [("seven",)]


def test_a_connection_cut_without_a_word_from_the_server_is_storage_trouble_too(conn):
    """A server stopped at once (or a network cut) sends nothing: libpq's own error, with no
    SQLSTATE, is a lost server like the one the server announces (here the socket is shut)."""
    import os
    import socket

    with socket.socket(fileno=os.dup(conn.raw.pgconn.socket)) as sock:
        sock.shutdown(socket.SHUT_RD)  # what we send goes; what comes back is the end
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        conn.execute("UPDATE scratch SET v = ? WHERE k = ?", ("x", 1))
    conn.execute("INSERT INTO scratch (k, v) VALUES (?, ?)", (8, "eight"))  # on a new connection
    assert conn.execute("SELECT v FROM scratch WHERE k = 8").fetchone() == ("eight",)
