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
