"""CLI: ``callproof storage import --from FILE`` (an install's SQLite database into PostgreSQL).

The configured ``[storage] url`` must name a PostgreSQL database holding no data yet; the
SQLite file (the old ``[storage] database``) is only read.  See storage/engine_import.py
and docs/scale-out.md, "Moving an install from SQLite".
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .actors import cli_actor


def cmd_storage_import(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    config = load(args)
    from callproof.storage import StorageError, utc_now
    from callproof.storage.engine_import import open_source
    from callproof.storage.pg_url import is_postgres_url, masked

    st = config.storage
    if not is_postgres_url(st.target):
        print("callproof: storage import copies into PostgreSQL: set [storage] url = \"postgresql://...\" "
              "first (docs/scale-out.md)", file=sys.stderr)
        return 2
    try:
        src = open_source(args.source)
    except StorageError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 2
    try:
        result = _import(src, st, Path(args.source).name, cli_actor(args.by), str(utc_now()))
    finally:
        src.close()
    if result is None:
        return 1
    if args.json:
        print(json.dumps({"schema_version": result.schema_version, "rows": result.counts,
                          "audit_entry": result.audit_entry}, indent=2))
    else:
        for table, n in result.counts.items():
            print(f"{table:<24} {n:>10}")
        print(f"imported {sum(result.counts.values())} rows (schema version {result.schema_version}) into "
              f"{masked(st.target)}; audit entry {result.audit_entry} (storage.imported)")
    return 0


def _import(src: sqlite3.Connection, st: Any, source_name: str, actor: str, at: str) -> Any:
    """The import's result, or None once the reason it failed is printed."""
    from callproof.storage import StorageError, connect_sync
    from callproof.storage.engine_import import import_sqlite
    from callproof.storage.pg_url import masked

    try:
        pg = connect_sync(st.target, busy_timeout_ms=st.busy_timeout_ms, password=st.password)
    except (StorageError, sqlite3.Error) as exc:
        print(f"callproof: cannot open {masked(st.target)}: {masked(str(exc))}", file=sys.stderr)
        return None
    try:
        return import_sqlite(src, pg, source_name=source_name, actor=actor, at=at)
    except (StorageError, sqlite3.Error) as exc:
        print(f"callproof: import refused, nothing written: {masked(str(exc))}", file=sys.stderr)
        return None
    finally:
        pg.close()


def add_storage_commands(sub: Any, load: Callable[[argparse.Namespace], Any]) -> None:
    storage = sub.add_parser("storage", help="the database").add_subparsers(dest="sub", required=True)
    imp = storage.add_parser("import", help="copy an install's SQLite database into the configured (empty) "
                                            "PostgreSQL database")
    imp.add_argument("--from", dest="source", required=True, help="the SQLite file (read only)")
    imp.add_argument("--by", help="who imports (default: the login name; written to the audit log)")
    imp.add_argument("--json", action="store_true", help="the per-table counts as JSON")
    imp.set_defaults(func=lambda args: cmd_storage_import(args, load))
