"""A call's storage step on PostgreSQL ends by its deadline (plus the watchdog's overrun) even
when the server goes silent with the connection open -- a hung backend here (SIGSTOP: its
socket still accepts what is sent, nothing comes back), which libpq's keepalives never see --
and the connection works again on the next step once the server answers."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from callproof.storage import connect_sync
from callproof.storage.bounded import within
from callproof.storage.errors import StorageUnavailable
from callproof.storage.pg_watchdog import Watchdog


def test_an_armed_cut_runs_at_its_time_and_a_disarmed_one_never():
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    kept = dog.arm(time.monotonic() + 0.2, lambda: fired.append("late step"))
    gone = dog.arm(time.monotonic() + 0.1, lambda: fired.append("finished step"))
    dog.disarm(gone)
    dog.arm(time.monotonic() + 0.3, done.set)
    assert done.wait(10)
    dog.disarm(kept)  # too late: it ran
    assert fired == ["late step"] and dog.cuts == 2


def _in_thread(fn):
    """``fn()`` on a thread; its result or exception, or None if it is still running after 10 s
    (a hang must fail the test, not stall it)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    return None if thread.is_alive() else box


def test_a_step_on_a_hung_server_fails_as_storage_trouble_and_the_next_one_reconnects(pg_cluster):
    url = pg_cluster.new_database("hung")
    conn = connect_sync(url)
    try:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        os.kill(backend, signal.SIGSTOP)
        try:
            began = time.monotonic()
            outcome = _in_thread(lambda: within(conn, time.monotonic() + 0.3,
                                                lambda c: c.execute("SELECT count(*) FROM calls").fetchone()))
            took = time.monotonic() - began
        finally:
            os.kill(backend, signal.SIGCONT)
        assert outcome is not None, "the step hung on the silent server"
        assert isinstance(outcome.get("error"), StorageUnavailable), outcome
        assert outcome["error"].problem == "io_error"
        print(f"step failed {took:.2f} s after it began (deadline 0.3 s + overrun 1 s)")
        # the server answers again: the next step opens a new connection and is made
        assert within(conn, time.monotonic() + 5, lambda c: c.execute("SELECT count(*) FROM calls").fetchone()) == (0,)
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != backend
    finally:
        conn.close()
        pg_cluster.drop(url)


def test_a_reconnection_inside_a_step_ends_with_the_step_not_at_connect_timeout(pg_cluster):
    """The connection was lost and the server's address now leads nowhere that answers (a port
    whose SYNs are taken by a listen queue nobody reads): the step's reconnect gives up at the
    step's deadline (libpq's floor: 2 s), not at the URL's connect_timeout of 30 s."""
    url = pg_cluster.new_database("reconnect")
    conn = connect_sync(url)
    silent = socket.socket()
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        conn.cut()
        with pytest.raises(Exception):  # noqa: B017 -- the lost connection, whatever psycopg calls it
            conn.execute("SELECT 1")
        conn._conninfo = f"host=127.0.0.1 port={silent.getsockname()[1]} dbname=x user=x connect_timeout=30"
        outcome = _in_thread(lambda: within(conn, time.monotonic() + 0.5, lambda c: c.execute("SELECT 1").fetchone()))
        assert outcome is not None, "the reconnection waited for connect_timeout"
        assert isinstance(outcome.get("error"), StorageUnavailable), outcome
    finally:
        silent.close()
        conn.close()
        pg_cluster.drop(url)
