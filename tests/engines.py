"""What a test does differently on the two storage engines (the ``target`` fixture of
tests/conftest.py gives a SQLite file or a PostgreSQL URL): the configuration that opens
it, and the tamperer's SQL that is not the same on both."""

from __future__ import annotations

from pathlib import Path

from callproof.config import StorageConfig
from callproof.storage.dialect import dialect_of
from callproof.storage.pg_url import is_postgres_url


def storage_config(tmp_path: Path, target: str | None = None, **kw) -> StorageConfig:
    """``[storage]`` opening ``target``: ``url`` for a PostgreSQL one, else the file
    ``<tmp_path>/cp.db`` (the SQLite ``target``); the journal and lock files beside it either way."""
    url = target if target is not None and is_postgres_url(target) else ""
    return StorageConfig(database=tmp_path / "cp.db", url=url, **kw)


def drop_trigger(conn, name: str) -> None:
    """What someone with write access to the database types to silence a trigger
    (PostgreSQL names its table: ``audit_log_no_update`` is on ``audit_log``)."""
    if dialect_of(conn).name == "postgresql":
        table = name.split("_no_")[0].removesuffix("_chain_link")
        conn.execute(f"DROP TRIGGER {name} ON {table}")
    else:
        conn.execute(f"DROP TRIGGER {name}")


def without_check(conn, table: str, column: str) -> None:
    """Let ``table.column`` take a value its CHECK refuses (a state a later version adds):
    SQLite's ``ignore_check_constraints``, PostgreSQL's owner dropping the constraint."""
    if dialect_of(conn).name != "postgresql":
        conn.execute("PRAGMA ignore_check_constraints = ON")
        return
    names = [r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = CAST(? AS regclass) AND contype = 'c'"
        " AND pg_get_constraintdef(oid) LIKE ?", (table, f"%{column}%")).fetchall()]
    for name in names:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')


def everything_stored(conn) -> str:
    """Every value in the database as text (SQLite's dump; every row of every table on
    PostgreSQL): for "this string is stored nowhere"."""
    if dialect_of(conn).name != "postgresql":
        return "\n".join(conn.iterdump())
    tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables"
                                         " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    return "\n".join(repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
