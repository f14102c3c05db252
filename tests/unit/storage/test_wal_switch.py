"""Opening a fresh database file from several processes at once: every one ends in WAL mode.

Each opener takes a shared lock and then wants the exclusive one to switch the file to WAL;
SQLite resolves that deadlock by failing one of them with "database is locked" at once, without
the busy handler (seen as a worker dying in the allocator's multi-process test)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from callproof.storage.connect import _switch_to_wal, configure


def _open(path: str, barrier, results) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    barrier.wait()
    try:
        configure(conn, 5000)
        results.put("wal")
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))
    finally:
        conn.close()


def test_processes_racing_on_a_fresh_file_all_open_it(tmp_path):
    ctx = mp.get_context("fork")
    outcomes = []
    for round_ in range(12):
        path = str(tmp_path / f"fresh-{round_}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes += [results.get(timeout=10) for _ in procs]
    assert outcomes == ["wal"] * len(outcomes)


class _LockedTwice:
    """A connection whose first two journal-mode switches lose the deadlock."""

    def __init__(self, conn: sqlite3.Connection, failures: int) -> None:
        self.conn, self.failures, self.tries = conn, failures, 0

    def execute(self, sql: str):
        if sql.startswith("PRAGMA journal_mode"):
            self.tries += 1
            if self.tries <= self.failures:
                raise sqlite3.OperationalError("database is locked")
        return self.conn.execute(sql)


def test_a_lost_switch_is_tried_again(tmp_path):
    conn = _LockedTwice(sqlite3.connect(tmp_path / "db", isolation_level=None), failures=2)
    assert _switch_to_wal(conn, 5000) == "wal"  # type: ignore[arg-type]
    assert conn.tries == 3


def test_a_lock_that_outlasts_the_busy_timeout_is_reported(tmp_path):
    conn = _LockedTwice(sqlite3.connect(tmp_path / "db", isolation_level=None), failures=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _switch_to_wal(conn, 50)  # type: ignore[arg-type]


def test_other_errors_are_not_retried(tmp_path):
    class _Broken(_LockedTwice):
        def execute(self, sql: str):
            self.tries += 1
            raise sqlite3.OperationalError("disk I/O error")

    conn = _Broken(sqlite3.connect(tmp_path / "db", isolation_level=None), failures=0)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _switch_to_wal(conn, 5000)  # type: ignore[arg-type]
    assert conn.tries == 1
