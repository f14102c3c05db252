"""A caller's step on storage is bounded (Database.run_within): done in time or not at all,
on a connection of its own, and the kind of trouble is named."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from callproof.storage import Database, NewCall
from callproof.storage import calls as calls_table
from callproof.storage.db import CALLS_CONNECTIONS
from callproof.storage.errors import StorageUnavailable, storage_problem

NOW = "2026-11-22T15:30:00.000+00:00"


def new_call(channel: str) -> NewCall:
    return NewCall(channel_id=channel, uniqueid=channel, linkedid=channel, caller_number_raw="1",
                   caller_number=None, caller_name=None, dialled_number=None, language="en", started_at=NOW)


@pytest.fixture
async def db(tmp_path):
    async with Database.open(tmp_path / "cp.db") as database:
        yield database


def lock(path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("UPDATE protocol_sequences SET last_value = last_value WHERE 0")
    return other


async def test_a_write_that_cannot_get_the_lock_in_time_is_not_made(db, tmp_path):
    other = lock(tmp_path / "cp.db")
    try:
        with pytest.raises(StorageUnavailable) as raised:
            await db.run_within(0.2, calls_table.create_sync, new_call("a"), NOW)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert raised.value.problem == "locked"
    assert await db.calls.get_by_channel("a") is None
    await db.run_within(0.5, calls_table.create_sync, new_call("a"), NOW)  # and works again at once
    assert await db.calls.get_by_channel("a") is not None


async def test_reads_go_on_while_another_process_holds_the_write_lock(db, tmp_path):
    await db.calls.create(new_call("a"))
    other = lock(tmp_path / "cp.db")
    try:
        found = await db.run_within(2.0, calls_table.get_by_channel_sync, "a")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert found is not None


async def test_a_slow_transaction_of_the_process_does_not_hold_a_caller_up(db):
    """The SMS sender, a sweep, ... run on the main connection: a stuck one does not queue the calls' steps."""
    release = threading.Event()
    stuck = asyncio.ensure_future(db.run_in_connection(lambda conn: release.wait(10)))
    await asyncio.sleep(0.05)
    try:
        await db.run_within(1.0, calls_table.create_sync, new_call("b"), NOW)
        assert not stuck.done()
    finally:
        release.set()
        await stuck
    assert await db.calls.get_by_channel("b") is not None


async def test_a_step_whose_wait_ran_out_in_the_queue_is_not_started(db):
    release = threading.Event()
    await db.run_within(1.0, calls_table.get_by_channel_sync, "c")  # the calls' connections are open
    stuck = [asyncio.ensure_future(db.run_on_calls_connection(lambda conn: release.wait(10)))
             for _ in range(CALLS_CONNECTIONS)]  # every one of them busy
    await asyncio.sleep(0.05)
    late = asyncio.ensure_future(db.run_within(0.1, calls_table.create_sync, new_call("c"), NOW))
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(*stuck)
    with pytest.raises(StorageUnavailable) as raised:
        await late
    assert raised.value.problem == "timeout"
    assert await db.calls.get_by_channel("c") is None


async def test_a_read_only_database_is_named(db):
    for conn in await db._calls_connections():  # every one of them: a step goes to any
        await conn.execute("PRAGMA query_only = 1")
    with pytest.raises(StorageUnavailable) as raised:
        await db.run_within(0.5, calls_table.create_sync, new_call("d"), NOW)
    assert raised.value.problem == "read_only"


@pytest.mark.parametrize(("error", "problem"), [
    (sqlite3.OperationalError("database is locked"), "locked"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "read_only"),
    (sqlite3.OperationalError("database or disk is full"), "disk_full"),
    (sqlite3.OperationalError("disk I/O error"), "io_error"),
    (sqlite3.DatabaseError("database disk image is malformed"), "corrupt"),
    (OSError(28, "No space left on device"), "disk_full"),
    (OSError(30, "Read-only file system"), "read_only"),
])
def test_the_kind_of_trouble_is_named(error, problem):
    assert storage_problem(error) == problem


async def test_a_call_waiting_on_the_lock_does_not_queue_the_others(db, tmp_path):
    """One call's write waits for another process's lock: another call's read (and write wait)
    runs beside it, on another of the calls' connections, instead of behind it."""
    await db.calls.create(new_call("e"))
    other = lock(tmp_path / "cp.db")
    try:
        waiting = asyncio.ensure_future(db.run_within(5.0, calls_table.create_sync, new_call("f"), NOW))
        await asyncio.sleep(0.05)
        found = await db.run_within(1.0, calls_table.get_by_channel_sync, "e")
        assert found is not None and not waiting.done()
        second = asyncio.ensure_future(db.run_within(5.0, calls_table.create_sync, new_call("g"), NOW))
        await asyncio.sleep(0.05)
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.gather(waiting, second)  # both got the lock once it was free
    assert await db.calls.get_by_channel("f") and await db.calls.get_by_channel("g")


async def test_a_step_queued_behind_others_gives_up_at_its_deadline_and_never_runs(tmp_path):
    """Every calls' connection busy with steps waiting on another process's lock: a step queued
    behind them returns at its own deadline (not after theirs), and never runs later."""
    path = tmp_path / "q.db"
    async with Database.open(path) as db:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        ran: list[str] = []

        def write(conn: sqlite3.Connection, name: str) -> None:
            ran.append(name)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")

        try:
            ahead = range(db.calls_connections * 2)  # two waiting steps queued on every connection
            waiting = [asyncio.ensure_future(db.run_within(1.5, write, f"w{i}")) for i in ahead]
            await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await db.run_within(0.3, write, "late")
            assert time.monotonic() - started < 0.9  # its own bound, not the 1.5 s of those ahead
            results = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(r, StorageUnavailable) for r in results)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await asyncio.sleep(0.1)
        assert "late" not in ran  # abandoned in the queue: never started


async def test_a_cancellation_landing_as_the_step_ends_is_not_lost(db, monkeypatch):
    """A flow cancelled (the app stopping, the ARI link lost) in the loop turn its storage step
    completes stops there: Python 3.11's wait_for returned the result instead, and the flow went
    on to its next step (seen as a resume test waiting 600 s on a step it should never reach)."""
    loop = asyncio.get_running_loop()
    caller: asyncio.Task | None = None

    async def step_that_ends_now(fn, *args, **kwargs):
        # the cancellation is made two turns on: after the step's result has reached the waiter
        loop.call_soon(lambda: loop.call_soon(caller.cancel))
        return "done"

    monkeypatch.setattr(db, "run_on_calls_connection", step_that_ends_now)
    went_on = []

    async def flow():
        await db.run_within(5.0, calls_table.get_by_channel_sync, "a")
        went_on.append("next step")

    caller = asyncio.ensure_future(flow())
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert went_on == []


def test_a_postgresql_connection_the_server_dropped_fails_the_step_as_storage_trouble():
    """On PostgreSQL setting the step's lock wait is a statement: during an outage it is the
    first to meet the dropped connection, and must fail the step (the call goes on, its write
    journalled), not escape as an error that fails the whole call."""
    from callproof.storage.bounded import within
    from callproof.storage.dialect import POSTGRESQL

    class Dropped:
        dialect = POSTGRESQL

        def execute(self, sql, params=None):
            raise sqlite3.OperationalError("disk I/O error: the PostgreSQL server is unreachable (server closed"
                                           " the connection unexpectedly)")

    with pytest.raises(StorageUnavailable) as raised:
        within(Dropped(), time.monotonic() + 1, lambda conn: conn.execute("SELECT 1"))
    assert raised.value.problem == "io_error"
