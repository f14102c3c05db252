"""PostgreSQL schema migrations: ``storage/migrations_pg``, applied under an advisory lock.

The files are numbered like SQLite's (``storage/migrations``): ``0014_baseline.sql`` is
the schema SQLite reaches with 0001..0014, in one file, and every later SQLite migration
``NNNN_name.sql`` has its PostgreSQL counterpart ``NNNN_name.sql`` here, so one schema
version means the same tables on both engines.  The versions, names and checksums are
kept in ``schema_migrations`` as on SQLite: an edited or unknown migration is refused.

Several nodes starting at once: each takes ``pg_advisory_lock`` (a session lock, held
across the transaction) before looking at the version table, so one migrates and the
others, once it is done, find nothing to apply.  The migrations themselves run in one
transaction: PostgreSQL's DDL is transactional, a failure leaves the schema as it was.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from datetime import datetime
from importlib import resources

from .errors import MigrationError
from .pg import PgConnection
from .schema import Migration
from .timefmt import to_db_time, utc_now

log = logging.getLogger(__name__)

Clock = Callable[[], "str | datetime"]

#: ``pg_advisory_lock`` key of the migrations (an arbitrary constant, fixed forever).
MIGRATION_LOCK = 0x63700000
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def load_pg_migrations() -> list[Migration]:
    """The numbered files of ``storage/migrations_pg``, in order, without gaps after the first."""
    found: list[Migration] = []
    for entry in resources.files(__package__).joinpath("migrations_pg").iterdir():
        m = _NAME.match(entry.name)
        if m is not None:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if not versions or versions != list(range(versions[0], versions[0] + len(versions))):
        raise MigrationError(f"PostgreSQL migration files must be numbered without gaps: {versions}")
    return found


def _check_collation(conn: PgConnection) -> None:
    collation = conn.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()").fetchone()[0]
    if collation not in ("C", "POSIX"):
        raise MigrationError(
            f"the PostgreSQL database uses the collation {collation!r}; callproof compares stored times as"
            " text and needs \"C\": CREATE DATABASE ... TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
            " (docs/scale-out.md)")


def migrate_pg(conn: PgConnection, migrations: list[Migration] | None = None,
               now: Clock = utc_now) -> list[int]:
    """Bring the schema up to date; returns the versions applied now."""
    if migrations is None:
        migrations = load_pg_migrations()
    if _up_to_date(conn, migrations):
        return []
    _check_collation(conn)
    applied_now: list[int] = []
    conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    try:
        conn.execute("BEGIN")
        try:
            applied_now = _apply(conn, migrations, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if not conn.closed:
            conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
    if applied_now:
        log.info("applied PostgreSQL schema migrations %s", applied_now)
    return applied_now


def _apply(conn: PgConnection, migrations: list[Migration], now: Clock) -> list[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)")
    done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    known = {mig.version: mig for mig in migrations}
    newer = sorted(v for v in done if v not in known)
    if newer:
        raise MigrationError(f"database has schema version(s) {newer} unknown to this code "
                             f"(latest known: {max(known, default=0)}); upgrade callproof")
    applied: list[int] = []
    for mig in migrations:
        if mig.version in done:
            if done[mig.version] != mig.checksum:
                raise MigrationError(f"PostgreSQL migration {mig.version:04d}_{mig.name}.sql was changed after"
                                     " it was applied; add a new migration instead of editing an old one")
            continue
        if done and mig.version > max(done) + 1:
            raise MigrationError(f"PostgreSQL migration {mig.version:04d} follows {max(done):04d}: one is missing")
        try:
            conn.raw.execute(mig.sql.encode("utf-8"))  # a whole script: one simple query
        except Exception as exc:
            raise MigrationError(f"PostgreSQL migration {mig.version:04d}_{mig.name}.sql failed: {exc}") from exc
        conn.execute("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                     (mig.version, mig.name, mig.checksum, to_db_time(now())))
        applied.append(mig.version)
        done[mig.version] = mig.checksum
    return applied


def _up_to_date(conn: PgConnection, migrations: list[Migration]) -> bool:
    try:
        done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    except sqlite3.OperationalError:  # no table yet (a new database)
        return False
    return done == {mig.version: mig.checksum for mig in migrations}
