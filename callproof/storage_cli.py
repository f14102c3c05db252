"""CLI: ``callproof storage import --from FILE`` (an install's SQLite database into PostgreSQL).

The configured ``[storage] url`` must name a PostgreSQL database holding no data yet; the
SQLite file (the old ``[storage] database``) is only read.  See storage/engine_import.py
and docs/scale-out.md, "Moving an install from SQLite".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .actors import cli_actor


def cmd_storage_import(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    config = load(args)
    from callproof.storage import StorageError, utc_now
    from callproof.storage.engine_import import import_file
    from callproof.storage.pg_url import is_postgres_url, masked

    st = config.storage
    if not is_postgres_url(st.target):
        print("callproof: storage import copies into PostgreSQL: set [storage] url = \"postgresql://...\" "
              "first (docs/scale-out.md)", file=sys.stderr)
        return 2
    try:
        result = import_file(args.source, st.target, password=st.password, busy_timeout_ms=st.busy_timeout_ms,
                             actor=cli_actor(args.by), at=str(utc_now()))
    except StorageError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
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


def add_storage_commands(sub: Any, load: Callable[[argparse.Namespace], Any]) -> None:
    storage = sub.add_parser("storage", help="the database").add_subparsers(dest="sub", required=True)
    imp = storage.add_parser("import", help="copy an install's SQLite database into the configured (empty) "
                                            "PostgreSQL database")
    imp.add_argument("--from", dest="source", required=True, help="the SQLite file (read only)")
    imp.add_argument("--by", help="who imports (default: the login name; written to the audit log)")
    imp.add_argument("--json", action="store_true", help="the per-table counts as JSON")
    imp.set_defaults(func=lambda args: cmd_storage_import(args, load))
