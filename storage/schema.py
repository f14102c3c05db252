"""Schema migrations: the numbered SQL files in ``storage/migrations`` and
applying them in one BEGIN IMMEDIATE transaction (used by :mod:`storage.db`
when any connection is opened)."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from ._sqlutil import immediate
from .errors import MigrationError
from .timefmt import to_db_time, utc_now

log = logging.getLogger(__name__)

Clock = Callable[[], "str | datetime"]


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations() -> list[Migration]:
    """The numbered SQL files shipped in ``storage/migrations``, in order."""
    found: list[Migration] = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m is None:
            continue
        found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files must be numbered 0001.. without gaps: {versions}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a SQL script into single statements (trigger bodies stay whole).

    ``executescript`` cannot be used: it COMMITs any open transaction first,
    and the migrations must run inside our BEGIN IMMEDIATE.
    """
    statements: list[str] = []
    *pieces, rest = script.split(";")
    buf = ""
    for piece in pieces:
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if _has_code(buf):
                statements.append(buf.strip())
            buf = ""
    if _has_code(buf + rest):
        tail = (buf + rest).strip()[:80]
        raise MigrationError(f"incomplete SQL statement at end of script: {tail!r}")
    return statements


_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*", re.DOTALL)


def _has_code(sql: str) -> bool:
    """False for text that is only whitespace, comments and semicolons."""
    return bool(_COMMENTS.sub("", sql).replace(";", "").strip())


def migrate(
    conn: sqlite3.Connection,
    migrations: list[Migration] | None = None,
    now: Clock = utc_now,
) -> list[int]:
    """Bring the schema up to date; returns the versions applied now.

    Everything happens in one BEGIN IMMEDIATE transaction: two processes that
    open a fresh file at once serialise here, the second one finds the
    migrations already recorded and applies nothing.  A migration that fails
    leaves the database exactly as it was.
    """
    if migrations is None:
        migrations = load_migrations()
    applied_now: list[int] = []
    if _up_to_date(conn, migrations):  # no write lock: a process opens a locked or unwritable database
        return applied_now
    with immediate(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL,"
            " checksum TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        known = {mig.version: mig for mig in migrations}
        newer = sorted(v for v in done if v not in known)
        if newer:
            raise MigrationError(
                f"database has schema version(s) {newer} unknown to this code "
                f"(latest known: {max(known, default=0)}); upgrade callproof"
            )
        for mig in migrations:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name}.sql was changed after it "
                        "was applied; add a new migration instead of editing an old one"
                    )
                continue
            for statement in split_statements(mig.sql):
                try:
                    conn.execute(statement)
                except sqlite3.Error as e:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name}.sql failed: {e}; "
                        f"statement: {statement[:120]!r}"
                    ) from e
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                " VALUES (?, ?, ?, ?)",
                (mig.version, mig.name, mig.checksum, to_db_time(now())),
            )
            applied_now.append(mig.version)
    if applied_now:
        log.info("applied schema migrations %s", applied_now)
    return applied_now


def _up_to_date(conn: sqlite3.Connection, migrations: list[Migration]) -> bool:
    """Every migration applied, unchanged, and none unknown (a read: no lock taken)."""
    try:
        done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    except sqlite3.OperationalError:  # no table yet (a new file)
        return False
    return done == {mig.version: mig.checksum for mig in migrations}


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return row[0] or 0
