"""Copying an install's SQLite database into an empty PostgreSQL one (``callproof storage import``).

An install that began on SQLite and moves to ``[storage] url = postgresql://...`` keeps its
history: every table copied with its ids, so a protocol already given (read aloud, sent by
SMS) is never given again and the next one continues the year's sequence.

* The SQLite file is only read: opened with ``mode=ro`` (never created, never migrated).
* Both databases must be at the same schema version (the PostgreSQL one is migrated to this
  code's version when it is opened, like any callproof command does): an older SQLite file is
  refused, naming both versions; starting the old file once with this version migrates it.
* The PostgreSQL database must hold no data yet: the first table with rows is named.
* One transaction: the tables in an order the foreign keys accept (a cycle, ``calls`` <->
  ``protocols``, is broken by inserting the nullable column of the table without UPDATE
  triggers as NULL and setting it once the other side is in), each identity sequence set
  past the highest id, ``protocol_sequences`` copied as it is (the allocator's row-locked
  counter), then checked: per-table counts, the append-only tables row for row, the audit
  chain (:func:`storage.audit.verify_chain_sync`); a ``storage.imported`` entry is appended
  and the chain checked again.  Any failure rolls all of it back.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import audit
from .errors import StorageError
from .schema import schema_version

#: Tables not copied: the schema's own bookkeeping, which the PostgreSQL migrations wrote.
NOT_COPIED = frozenset({"schema_migrations"})
#: Tables compared row for row after the copy (append-only evidence), besides the counts.
COMPARED = ("audit_log", "evidence_records")
_BATCH = 1000


class ImportRefused(StorageError):
    """The import cannot start or did not verify; nothing was written."""


@dataclass
class ImportResult:
    counts: dict[str, int] = field(default_factory=dict)  # rows copied, per table
    schema_version: int = 0
    audit_entry: int = 0  # the id of the ``storage.imported`` entry


def open_source(path: str | Path) -> sqlite3.Connection:
    """The SQLite file, read-only; refuses a missing file or one that is not a SQLite database."""
    p = Path(path)
    if not p.is_file():
        raise ImportRefused(f"{p}: no such file")
    conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
                        ).fetchone() is None:
            raise ImportRefused(f"{p}: a SQLite database, but not callproof's (no schema_migrations table)")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ImportRefused(f"{p}: not a SQLite database ({exc})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _pg_tables(pg: sqlite3.Connection) -> list[str]:
    rows = pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                      " AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()
    return [r[0] for r in rows if r[0] not in NOT_COPIED]


def _columns(src: sqlite3.Connection, pg: sqlite3.Connection, table: str) -> list[str]:
    theirs = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
    ours = {r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns"
                                     " WHERE table_schema = current_schema() AND table_name = ?", (table,))}
    if set(theirs) != ours:
        raise ImportRefused(f"table {table}: the columns differ between SQLite ({sorted(theirs)}) and "
                            f"PostgreSQL ({sorted(ours)}) although both claim the same schema version")
    return theirs


def _foreign_keys(pg: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(table, column, referenced table) of every single-column foreign key."""
    rows = pg.execute(
        "SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _has_update_triggers(pg: sqlite3.Connection, table: str) -> bool:
    row = pg.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = ?::regclass AND NOT tgisinternal"
                     " AND (tgtype & 16) <> 0", (table,)).fetchone()  # TRIGGER_TYPE_UPDATE
    return bool(row[0])


def _nullable(pg: sqlite3.Connection, table: str, column: str) -> bool:
    row = pg.execute("SELECT is_nullable FROM information_schema.columns WHERE table_schema = current_schema()"
                     " AND table_name = ? AND column_name = ?", (table, column)).fetchone()
    return row is not None and row[0] == "YES"


def copy_order(pg: sqlite3.Connection, tables: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The tables parents first, and the columns inserted as NULL and set afterwards (a cycle's)."""
    fks = [fk for fk in _foreign_keys(pg) if fk[0] in tables and fk[2] in tables and fk[0] != fk[2]]
    order: list[str] = []
    deferred: dict[str, list[str]] = {}
    left = set(tables)
    while left:
        ready = sorted(t for t in left if not any(
            fk[0] == t and fk[2] in left and fk[1] not in deferred.get(t, []) for fk in fks))
        if ready:
            order.extend(ready)
            left -= set(ready)
            continue
        # a cycle: the table whose pending references are nullable and whose rows no UPDATE trigger checks
        for t in sorted(left):
            pending = [fk[1] for fk in fks if fk[0] == t and fk[2] in left]
            if all(_nullable(pg, t, c) for c in pending) and not _has_update_triggers(pg, t):
                deferred.setdefault(t, []).extend(pending)
                break
        else:
            raise ImportRefused(f"the foreign keys of {sorted(left)} form a cycle that cannot be broken")
    return order, deferred


def _refuse_unless_empty(pg: sqlite3.Connection, tables: Iterable[str]) -> None:
    for table in tables:
        if pg.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None:
            raise ImportRefused(f"the PostgreSQL database is not empty: table {table} has rows; "
                                "import only into a new database (docs/scale-out.md)")


def _primary_key(pg: sqlite3.Connection, table: str) -> str:
    """The table's (first) primary-key column: the copy's order and the deferred updates' key."""
    row = pg.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                     " AND a.attnum = i.indkey[0] WHERE i.indrelid = ?::regclass AND i.indisprimary",
                     (table,)).fetchone()
    if row is None:
        raise ImportRefused(f"table {table} has no primary key in PostgreSQL")
    return str(row[0])


def _copy_table(src: sqlite3.Connection, pg: sqlite3.Connection, table: str, columns: list[str],
                key: str, deferred: list[str]) -> tuple[int, list[tuple[Any, ...]]]:
    """The rows copied, and the updates that set the ``deferred`` columns once all tables are in."""
    names = ", ".join(f'"{c}"' for c in columns)
    insert = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    nulled = [columns.index(c) for c in deferred]
    later: list[tuple[Any, ...]] = []
    copied = 0
    cur = src.execute(f'SELECT {names} FROM "{table}" ORDER BY "{key}"')
    while True:
        rows = cur.fetchmany(_BATCH)
        if not rows:
            break
        if nulled:
            later.extend((*(r[i] for i in nulled), r[columns.index(key)]) for r in rows
                         if any(r[i] is not None for i in nulled))
            rows = [tuple(None if i in nulled else v for i, v in enumerate(r)) for r in rows]
        pg.executemany(insert, rows)
        copied += len(rows)
    return copied, later


def _set_deferred(pg: sqlite3.Connection, table: str, key: str, deferred: list[str],
                  later: list[tuple[Any, ...]]) -> None:
    sets = ", ".join(f'"{c}" = ?' for c in deferred)
    pg.executemany(f'UPDATE "{table}" SET {sets} WHERE "{key}" = ?', later)


def _advance_sequences(pg: sqlite3.Connection, tables: list[str]) -> None:
    """Each identity column's sequence past the highest id copied (the next INSERT gets max + 1)."""
    rows = pg.execute("SELECT table_name, column_name FROM information_schema.columns"
                      " WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall()
    for table, column in rows:
        if table in tables:
            pg.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), max(\"{column}\")) FROM \"{table}\""
                       f" HAVING max(\"{column}\") IS NOT NULL", (table, column))


def _digest(conn: sqlite3.Connection, table: str, columns: list[str]) -> str:
    h = hashlib.sha256()
    names = ", ".join(f'"{c}"' for c in columns)
    for row in conn.execute(f'SELECT {names} FROM "{table}" ORDER BY id'):
        h.update(repr(tuple(row)).encode("utf-8"))
    return h.hexdigest()


def _verify(src: sqlite3.Connection, pg: sqlite3.Connection, counts: dict[str, int],
            columns: dict[str, list[str]]) -> None:
    for table, n in counts.items():
        (got,) = pg.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        if got != n:
            raise ImportRefused(f"table {table}: {n} rows in SQLite, {got} in PostgreSQL after the copy")
    for table in COMPARED:
        if table in columns and _digest(src, table, columns[table]) != _digest(pg, table, columns[table]):
            raise ImportRefused(f"table {table}: the rows in PostgreSQL differ from SQLite's after the copy")
    broken = audit.verify_chain_sync(pg)
    if broken is not None:
        raise ImportRefused(f"the audit chain does not verify after the copy (entry {broken})")


def import_sqlite(src: sqlite3.Connection, pg: sqlite3.Connection, *, source_name: str, actor: str,
                  at: str) -> ImportResult:
    """Copy ``src`` (read-only SQLite) into ``pg`` (an open PostgreSQL connection, migrated)."""
    src_version, pg_version = schema_version(src), schema_version(pg)
    if src_version != pg_version:
        raise ImportRefused(
            f"schema versions differ: the SQLite file is at {src_version}, PostgreSQL (this callproof) at "
            f"{pg_version}; " + ("open the SQLite file once with this version to migrate it (with it as [storage]"
                                 " database and no url, any command that opens the database, e.g. 'callproof"
                                 " hold list'), then import"
                                 if src_version < pg_version else "import with the callproof version that "
                                 "wrote the SQLite file, or upgrade this one"))
    tables = _pg_tables(pg)
    theirs = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                        " AND name NOT LIKE 'sqlite_%'")} - NOT_COPIED
    if theirs != set(tables):
        raise ImportRefused(f"the tables differ: only in SQLite {sorted(theirs - set(tables))}, "
                            f"only in PostgreSQL {sorted(set(tables) - theirs)}")
    columns = {t: _columns(src, pg, t) for t in tables}
    order, deferred = copy_order(pg, tables)
    result = ImportResult(schema_version=src_version)
    src.execute("BEGIN")  # one read snapshot of the source
    pg.execute("BEGIN")
    try:
        from .dialect import dialect_of

        dialect_of(pg).lock_chain(pg, "audit_log")
        _refuse_unless_empty(pg, order)
        keys = {t: _primary_key(pg, t) for t in order}
        pending: dict[str, list[tuple[Any, ...]]] = {}
        for table in order:
            result.counts[table], pending[table] = _copy_table(src, pg, table, columns[table], keys[table],
                                                               deferred.get(table, []))
        for table, later in pending.items():
            if later:
                _set_deferred(pg, table, keys[table], deferred[table], later)
        _advance_sequences(pg, tables)
        _verify(src, pg, result.counts, columns)
        result.audit_entry = audit.append_in_transaction_sync(
            pg, "storage.imported", actor, at, subject=source_name,
            details={"schema_version": src_version, "rows": {t: n for t, n in result.counts.items() if n}},
            chain_locked=True)
        if audit.verify_chain_sync(pg) is not None:
            raise ImportRefused("the audit chain does not verify after the import's own entry")
        pg.execute("COMMIT")
    except BaseException:
        if pg.in_transaction:
            pg.execute("ROLLBACK")
        raise
    finally:
        if src.in_transaction:
            src.execute("ROLLBACK")
    return result


def import_file(source: str | Path, target: str, *, password: str = "", busy_timeout_ms: int = 5000,
                actor: str, at: str) -> ImportResult:
    """``callproof storage import``: the SQLite file ``source`` (read only) into the PostgreSQL
    database ``target``; every failure an :class:`ImportRefused` (nothing written), its message
    with any password masked."""
    from .pg_url import masked

    src = open_source(source)
    try:
        pg = _open_target(target, password, busy_timeout_ms)
        try:
            return import_sqlite(src, pg, source_name=Path(source).name, actor=actor, at=at)
        except ImportRefused:
            raise
        except (StorageError, sqlite3.Error) as exc:
            raise ImportRefused(f"import refused, nothing written: {masked(str(exc))}") from None
        finally:
            pg.close()
    finally:
        src.close()


def _open_target(target: str, password: str, busy_timeout_ms: int) -> sqlite3.Connection:
    from .connect import connect_sync
    from .pg_url import masked

    try:
        return connect_sync(target, busy_timeout_ms=busy_timeout_ms, password=password)
    except (StorageError, sqlite3.Error) as exc:
        raise ImportRefused(f"cannot open {masked(target)}: {masked(str(exc))}") from None
