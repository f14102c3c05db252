"""The PostgreSQL side of the storage boundary that needs no server: SQL translation, URL
masking, and the PostgreSQL migrations keeping up with SQLite's."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from callproof.storage.pg import translate, with_liveness
from callproof.storage.pg_schema import load_pg_migrations
from callproof.storage.pg_url import check_url, conninfo, masked
from callproof.storage.schema import load_migrations


def test_placeholders_are_translated_outside_string_literals_only():
    sql = "SELECT id FROM t INDEXED BY t_due WHERE a = ? AND b LIKE '%,?%' AND c IS ? AND d <= :now LIMIT :n"
    assert translate(sql) == (
        "SELECT id FROM t WHERE a = %s AND b LIKE '%%,?%%' AND c IS NOT DISTINCT FROM %s AND d <= %(now)s"
        " LIMIT %(n)s", False)


def test_an_insert_into_an_id_keyed_table_returns_its_id():
    assert translate("INSERT INTO calls (a) VALUES (?)") == ("INSERT INTO calls (a) VALUES (%s) RETURNING id", True)
    assert translate("INSERT INTO protocols (a) VALUES (?)")[1] is False
    assert translate("INSERT INTO sms_attempts (a) VALUES (?) RETURNING outbox_id, id")[1] is False


def test_passwords_are_masked_in_every_message():
    assert masked("cannot reach postgresql://cp:S3cret@db1/cp") == "cannot reach postgresql://cp:***@db1/cp"
    assert "S3cret" not in masked("connection to server failed: host=db1 password=S3cret user=cp")
    assert conninfo("postgresql://cp@db1/cp?sslmode=verify-full", "a b&c") == (
        "postgresql://cp@db1/cp?sslmode=verify-full&password=a%20b%26c")
    assert check_url("postgresql://cp@%2Fvar%2Frun%2Fpostgresql/cp") is None


def test_a_connection_gives_up_on_a_silent_server_within_seconds_unless_the_url_says_otherwise():
    params = conninfo_to_dict(with_liveness("postgresql://cp@db1/cp?connect_timeout=2&password=x"))
    assert params["connect_timeout"] == "2" and params["password"] == "x"  # the URL's own kept
    assert (params["keepalives"], params["keepalives_idle"], params["tcp_user_timeout"]) == ("1", "10", "15000")


def test_the_postgresql_migrations_reach_the_same_version_as_sqlites():
    # a new SQLite migration NNNN needs its PostgreSQL counterpart storage/migrations_pg/NNNN_*.sql
    assert load_pg_migrations()[-1].version == load_migrations()[-1].version


def test_the_postgresql_schema_has_sqlites_tables_columns_and_triggers(pg_cluster):
    import psycopg

    from callproof.storage import connect_sync

    conn = connect_sync(":memory:")
    try:
        sqlite_cols = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")}
                       for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        sqlite_triggers = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        conn.close()
    url = pg_cluster.new_database("parity")
    try:
        with psycopg.connect(url) as pg:
            pg_cols: dict[str, set[str]] = {}
            for table, column in pg.execute("SELECT table_name, column_name FROM information_schema.columns"
                                            " WHERE table_schema = 'public'"):
                pg_cols.setdefault(table, set()).add(column)
            pg_triggers = {n for (n,) in pg.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    finally:
        pg_cluster.drop(url)
    assert pg_cols == sqlite_cols
    assert sqlite_triggers <= pg_triggers, sqlite_triggers - pg_triggers


def test_a_connection_the_server_dropped_fails_its_transaction_then_reopens(pg_cluster):
    import sqlite3

    import psycopg
    import pytest

    from callproof.storage import allocate_sync, connect_sync, is_storage_error

    url = pg_cluster.new_database("dropped")
    conn = connect_sync(url)
    try:
        assert allocate_sync(conn, year=2026, allocated_at="2026-03-10T14:00:00Z").protocol.endswith("1")
        conn.execute("BEGIN")
        conn.execute("UPDATE protocol_sequences SET last_value = 99")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(url, autocommit=True) as other:  # what a restart or a failover does
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(sqlite3.Error) as cut:
            conn.execute("COMMIT")
        assert is_storage_error(cut.value) and not conn.in_transaction
        # the next call opens a new connection; the cut transaction left nothing behind
        assert allocate_sync(conn, year=2026, allocated_at="2026-03-10T14:00:00Z").protocol == "20260000000000002"
    finally:
        conn.close()
        pg_cluster.drop(url)


def test_the_tables_without_an_id_column_are_the_ones_the_translation_knows(tmp_path):
    """An INSERT gets ``RETURNING id`` unless its table is listed as having no ``id``: a new
    table keyed otherwise must be listed, or every INSERT into it fails on PostgreSQL."""
    from callproof.storage import connect_sync
    from callproof.storage.pg import NOT_ID_KEYED

    conn = connect_sync(tmp_path / "schema.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                             " AND name NOT LIKE 'sqlite_%'")]
        without_id = {t for t in tables
                      if "id" not in [c[1] for c in conn.execute(f"PRAGMA table_info({t})")]}
    finally:
        conn.close()
    assert without_id == set(NOT_ID_KEYED)


def test_a_calls_steps_set_their_lock_wait_once_not_a_round_trip_each(pg_cluster):
    """Each bounded step sets its lock wait (what is left of the call's wait): on PostgreSQL a
    statement, so it is rounded down to tenths of a second and sent only when it changes."""
    from callproof.storage import connect_sync
    from callproof.storage.dialect import POSTGRESQL

    conn = connect_sync(pg_cluster.new_database("lockwait"))
    sent: list[str] = []
    execute = conn.execute
    conn.execute = lambda sql, params=None: (sent.append(sql), execute(sql, params))[1]  # type: ignore[method-assign]
    try:
        for left_ms in (2999, 2990, 2951, 2900):
            POSTGRESQL.set_lock_wait(conn, left_ms)
        assert sent == ["SET lock_timeout = 2900"]
        assert execute("SHOW lock_timeout").fetchone()[0] == "2900ms"
        POSTGRESQL.set_lock_wait(conn, 40)  # under a tenth: as asked
        execute("BEGIN")
        POSTGRESQL.set_lock_wait(conn, 1500)  # inside a transaction: undone by its rollback ...
        execute("ROLLBACK")
        POSTGRESQL.set_lock_wait(conn, 1500)  # ... so set again after it
        assert sent[1:] == ["SET lock_timeout = 40", "SET lock_timeout = 1500", "SET lock_timeout = 1500"]
    finally:
        conn.close()


def test_a_statement_goes_to_libpq_with_numbered_parameters_a_name_used_twice_being_one():
    from callproof.storage.pg_results import native

    assert native(translate("SELECT a FROM t WHERE b = ? AND c LIKE '%x' AND d = ?")[0]) == (
        "SELECT a FROM t WHERE b = $1 AND c LIKE '%x' AND d = $2", None)
    assert native(translate("SELECT 1 WHERE a <= :now OR b <= :now LIMIT :limit")[0]) == (
        "SELECT 1 WHERE a <= $1 OR b <= $1 LIMIT $2", ("now", "limit"))
