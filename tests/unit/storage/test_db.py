"""storage.db: pragmas, migrations, file permissions, open/close, time format."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from datetime import datetime, timedelta, timezone

import pytest

from callproof.storage import Database, MigrationError, connect_sync, migrate, to_db_time
from callproof.storage.db import Migration, load_migrations, split_statements


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_pragmas_on_open(tmp_path):
    async with Database.open(tmp_path / "cp.db", busy_timeout_ms=1234) as db:
        def pragmas(conn):
            return {
                name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }

        got = await db.run_in_connection(pragmas)
    assert got == {"journal_mode": "wal", "busy_timeout": 1234, "foreign_keys": 1,
                   "synchronous": 1}  # 1 == NORMAL


async def test_default_busy_timeout(tmp_path):
    async with Database.open(tmp_path / "cp.db") as db:
        got = await db.run_in_connection(
            lambda conn: conn.execute("PRAGMA busy_timeout").fetchone()[0])
    assert got == 5000


def test_sync_connection_same_pragmas(tmp_path):
    conn = connect_sync(tmp_path / "cp.db", busy_timeout_ms=777)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 777
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert conn.isolation_level is None
    finally:
        conn.close()


def test_migrations_recorded_and_idempotent(tmp_path):
    path = tmp_path / "cp.db"
    connect_sync(path).close()
    conn = connect_sync(path)  # second open: nothing to do
    try:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
        assert rows == [(m.version, m.name) for m in load_migrations()]
        assert rows[0] == (1, "initial")
        assert migrate(conn) == []
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"protocol_sequences", "protocols", "calls", "recordings", "sms_outbox",
                "audit_log", "schema_migrations"} <= tables
    finally:
        conn.close()


def test_migration_files_numbered_without_gaps():
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_new_migration_applied_once_in_order(tmp_path):
    conn = connect_sync(tmp_path / "cp.db")
    try:
        nxt = len(load_migrations()) + 1
        extra = Migration(nxt, "add_thing", "CREATE TABLE thing (x INTEGER);\n"
                                           "INSERT INTO thing VALUES (1);")
        assert migrate(conn, [*load_migrations(), extra]) == [nxt]
        assert migrate(conn, [*load_migrations(), extra]) == []
        assert conn.execute("SELECT count(*) FROM thing").fetchone()[0] == 1
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == nxt
    finally:
        conn.close()


def test_failing_migration_leaves_nothing(tmp_path):
    conn = connect_sync(tmp_path / "cp.db")
    try:
        nxt = len(load_migrations()) + 1
        bad = Migration(nxt, "bad", "CREATE TABLE half (x);\nINSERT INTO no_such_table VALUES (1);")
        with pytest.raises(MigrationError, match=f"{nxt:04d}_bad.sql"):
            migrate(conn, [*load_migrations(), bad])
        assert not conn.in_transaction
        assert conn.execute("SELECT name FROM sqlite_master WHERE name='half'").fetchone() is None
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == nxt - 1
    finally:
        conn.close()


def test_edited_migration_refused(tmp_path):
    path = tmp_path / "cp.db"
    conn = connect_sync(path)
    conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        connect_sync(path)


async def test_newer_schema_refused_and_connection_closed(tmp_path):
    path = tmp_path / "cp.db"
    conn = connect_sync(path)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', 'now')")
    conn.close()
    threads_before = {t.ident for t in threading.enumerate()}
    with pytest.raises(MigrationError, match="unknown to this code"):
        await Database.open(path)
    # The aiosqlite thread opened for this database must be gone (other tests' threads
    # may come and go meanwhile, so look only at threads this open started).
    for _ in range(100):
        leftover = [t for t in threading.enumerate() if t.ident not in threads_before
                    and "_connection_worker_thread" in t.name]
        if not leftover:
            break
        await asyncio.sleep(0.02)
    assert not leftover, leftover  # aiosqlite thread stopped


def test_concurrent_first_open_migrates_once(tmp_path):
    path = tmp_path / "cp.db"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def opener():
        try:
            barrier.wait()
            connect_sync(path, busy_timeout_ms=30_000).close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(
        load_migrations())
    conn.close()


def test_split_statements_keeps_trigger_bodies_and_literals():
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr BEFORE DELETE ON t
    BEGIN
        SELECT RAISE(ABORT, 'no; really');
    END;
    /* trailing; block */
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert "'a;b'" in statements[0]
    assert statements[1].rstrip().endswith("END;")


def test_split_statements_rejects_incomplete():
    with pytest.raises(MigrationError, match="incomplete"):
        split_statements("CREATE TABLE a (x); CREATE TABLE b (")


async def test_files_not_world_readable(tmp_path, umask_022):
    path = tmp_path / "cp.db"
    async with Database.open(path) as db:
        await db.audit.append("test", "unit")  # make sure -wal has content
        for name in (path, f"{path}-wal", f"{path}-shm"):
            assert os.path.exists(name)
            assert _mode(name) == 0o600, name


async def test_group_readable_mode(tmp_path, umask_022):
    path = tmp_path / "cp.db"
    async with Database.open(path, file_mode=0o640):
        for name in (path, f"{path}-wal", f"{path}-shm"):
            assert _mode(name) == 0o640, name


def test_existing_world_readable_file_is_tightened(tmp_path, umask_022):
    path = tmp_path / "cp.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    connect_sync(path).close()
    assert _mode(path) == 0o640


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o700, 0o400])
def test_bad_file_mode_rejected(tmp_path, mode):
    with pytest.raises(ValueError, match="file_mode"):
        connect_sync(tmp_path / "cp.db", file_mode=mode)
    assert not (tmp_path / "cp.db").exists()


async def test_open_forms_and_close(tmp_path):
    path = tmp_path / "cp.db"
    db = await Database.open(path)
    await db.close()
    await db.close()  # idempotent
    async with await Database.open(path) as db2:
        assert await db2.schema_version() == len(load_migrations())
    with pytest.raises(ValueError):
        await db2.calls.get(1)


async def test_injected_clock(tmp_path):
    async with Database.open(tmp_path / "cp.db", now=lambda: "2026-05-01T09:00:00-03:00") as db:
        assert db.now() == "2026-05-01T12:00:00.000000Z"
        entry = await db.audit.append("x", "unit")
        row = await db.run_in_connection(
            lambda c, i: c.execute("SELECT at FROM audit_log WHERE id=?", (i,)).fetchone(), entry)
        assert row[0] == "2026-05-01T12:00:00.000000Z"


def test_time_format():
    assert to_db_time("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00.000000Z"
    assert to_db_time("2025-12-31T21:00:00.5-03:00") == "2026-01-01T00:00:00.500000Z"
    assert to_db_time(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-01-01T00:00:00.000000Z")
    with pytest.raises(ValueError, match="naive"):
        to_db_time("2026-01-01T00:00:00")
    with pytest.raises(ValueError, match="ISO-8601"):
        to_db_time("yesterday")
    with pytest.raises(TypeError):
        to_db_time(1700000000)


def test_opening_an_existing_database_never_opens_and_closes_its_file(tmp_path, monkeypatch):
    """Closing any descriptor of the database file drops every POSIX lock this
    process holds on it, including those of connections open in other threads;
    another process may then reset the WAL under them (a torn, "malformed" image).
    So a second connection must leave the file's descriptors to SQLite."""
    import os as os_module

    path = str(tmp_path / "cp.db")
    first = connect_sync(path)
    opened = []
    real_open = os_module.open

    def spy(name, *args, **kwargs):
        fd = real_open(name, *args, **kwargs)
        opened.append(os_module.fspath(name))  # only descriptors that were really opened
        return fd

    monkeypatch.setattr(os_module, "open", spy)
    second = connect_sync(path)
    try:
        assert path not in opened
        assert second.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 4
    finally:
        second.close()
        first.close()
