"""Builders shared by the retention tests and bench/bench_retention.py: real
SQLite rows (call, protocol, recording) and real files, fast enough for 100k."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callproof.storage.timefmt import to_db_time

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Builder:
    def __init__(self, conn: sqlite3.Connection, root: Path, year: int = 2026) -> None:
        self.conn = conn
        self.root = Path(os.path.realpath(root))
        self.year = year
        self.seq = conn.execute("SELECT coalesce(max(sequence), 0) FROM protocols WHERE year = ?",
                                (year,)).fetchone()[0]

    def add(self, started_at: datetime, *, days: int | None = 90, cls: str = "consumer_service",
            caller: str | None = "+5511912345678", state: str = "finalised", with_file: bool = True,
            content: bytes = b"RIFF-test-audio", until: datetime | None = None,
            ended: bool = True, rel: str | None = None) -> dict:
        """One call + protocol + recording (+ file).  Caller runs inside no transaction."""
        self.seq += 1
        protocol = f"{self.year:04d}{self.seq:013d}"
        t = to_db_time(started_at)
        if until is None and days is not None:
            until = started_at + timedelta(days=days)
        rel = rel or f"{started_at:%Y/%m/%d}/{protocol}_{(caller or 'anon').lstrip('+')}_x.wav"
        path = str(self.root / rel)
        c = self.conn
        cur = c.execute(
            "INSERT INTO calls (channel_id, caller_number_raw, caller_number, caller_name, started_at,"
            " status, ended_at, updated_at) VALUES (?, ?, ?, 'Name', ?, 'completed', ?, ?)",
            (f"chan-{protocol}", caller or "", caller, t, t if ended else None, t))
        call_id = cur.lastrowid
        c.execute("INSERT INTO protocols (protocol, year, sequence, allocated_at, call_id)"
                  " VALUES (?, ?, ?, ?, ?)", (protocol, self.year, self.seq, t, call_id))
        c.execute("UPDATE calls SET protocol = ? WHERE id = ?", (protocol, call_id))
        sha = hashlib.sha256(content).hexdigest()
        cur = c.execute(
            "INSERT INTO recordings (call_id, protocol, path, caller_number, started_at, state,"
            " size_bytes, duration_ms, sha256, finalised_at, retention_until, retention_class)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1000, ?, ?, ?, ?)",
            (call_id, protocol, path, caller, t, state, len(content), sha, t,
             to_db_time(until) if until else None, cls))
        if with_file:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(content)
        return {"id": cur.lastrowid, "call_id": call_id, "protocol": protocol, "path": path,
                "sha256": sha}


def states(conn: sqlite3.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT id, state FROM recordings"))


def audit_actions(conn: sqlite3.Connection, action: str) -> list[tuple]:
    return conn.execute("SELECT subject, protocol, details FROM audit_log WHERE action = ?"
                        " ORDER BY id", (action,)).fetchall()


def expired_rows(conn: sqlite3.Connection, root: str, n: int, *, started: datetime,
                 until: datetime) -> None:
    """N calls + protocols + 'finalised' recordings whose retention ended at
    ``until``, in one transaction, the paths those of bench_retention.rel_path
    under ``root`` (the benchmark's 100k or 1M rows in seconds)."""
    started_at, until_at = to_db_time(started), to_db_time(until)
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?)"
        " INSERT INTO calls (id, channel_id, caller_number_raw, caller_number, started_at, status,"
        " ended_at, updated_at) SELECT i + 1, 'c' || i, '+5511900000000', '+5511900000000', ?,"
        " 'completed', ?, ? FROM s", (n, started_at, started_at, started_at))
    conn.execute(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?)"
        " INSERT INTO protocols (protocol, year, sequence, allocated_at, call_id)"
        " SELECT printf('2026%013d', i + 1), 2026, i + 1, ?, i + 1 FROM s", (n, started_at))
    conn.execute(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?)"
        " INSERT INTO recordings (call_id, protocol, path, caller_number, started_at, state, size_bytes,"
        " duration_ms, sha256, finalised_at, retention_until, retention_class)"
        " SELECT i + 1, printf('2026%013d', i + 1), ? || '/2026/' || printf('%02d', i / 10000) || '/'"
        " || printf('%02d', (i / 100) % 100) || '/' || printf('2026%013d', i + 1) || '_5511900000000_x.wav',"
        " '5511900000000', ?, 'finalised', 16, 1000, ?, ?, ?, 'consumer_service' FROM s",
        (n, root, started_at, "0" * 64, started_at, until_at))
    conn.execute("COMMIT")
