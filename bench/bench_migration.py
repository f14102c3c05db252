"""Upgrade cost of schema migration 0012 (the sms_outbox and recordings rebuild for the
'logged' and 'empty' states): how long the first process to open an upgraded database
holds its write lock.

    .venv/bin/python bench/bench_migration.py [--calls 100000]

A database at schema version 11 is filled with ``--calls`` calls, each with its protocol,
SMS (and one attempt) and recording row; then migration 0012 is applied and timed.  The
baseline, in the same run on the same file, is ``VACUUM INTO`` a copy: SQLite copying every
table and index of the database once.  Printed: both times and their ratio (how many full
copies of the database the rebuild costs).  No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from callproof.storage.schema import load_migrations, migrate


def fill(conn: sqlite3.Connection, calls: int) -> None:
    conn.execute("BEGIN")
    for i in range(1, calls + 1):
        protocol = f"2026{i:013d}"
        conn.execute("INSERT INTO protocols VALUES (?, 2026, ?, 't', 'call', NULL)", (protocol, i))
        conn.execute("INSERT INTO calls (id, channel_id, caller_number_raw, started_at, updated_at, protocol)"
                     " VALUES (?, ?, 'x', 't', 't', ?)", (i, f"ch{i}", protocol))
        conn.execute("INSERT INTO sms_outbox (id, protocol, call_id, destination, language, body, state,"
                     " created_at, updated_at) VALUES (?, ?, ?, '+5511987654321', 'pt_BR', ?, 'sent', 't', 't')",
                     (i, protocol, i, f"Atendimento: protocolo {protocol}"))
        conn.execute("INSERT INTO sms_attempts (outbox_id, attempt_no, idempotency_key, backend, owner,"
                     " started_at, finished_at, outcome) VALUES (?, 1, 'k', 'smpp', 'o', 't', 't', 'accepted')",
                     (i,))
        conn.execute("INSERT INTO recordings (id, call_id, protocol, path, started_at, state, size_bytes,"
                     " duration_ms) VALUES (?, ?, ?, ?, 't', 'finalised', 1000, 60000)",
                     (i, i, protocol, f"/var/spool/asterisk/callproof/{i}.wav"))
    conn.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    migrations = load_migrations()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cp.db"
        conn = sqlite3.connect(path)
        conn.isolation_level = None
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, migrations[:11])
        fill(conn, args.calls)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
        t0 = time.perf_counter()
        conn.execute(f"VACUUM INTO '{Path(tmp) / 'copy.db'}'")
        copy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        applied = migrate(conn, migrations[:12])
        migrate_s = time.perf_counter() - t0
        assert applied == [12] and conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()
    print(f"database: {args.calls} calls, {size / 1e6:.0f} MB")
    print(f"baseline VACUUM INTO (one copy of the database): {copy_s:.2f} s")
    print(f"migration 0012 (write lock held):                {migrate_s:.2f} s")
    print(f"ratio migration / copy: {migrate_s / copy_s:.2f}")


if __name__ == "__main__":
    main()
