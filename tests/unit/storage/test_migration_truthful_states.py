"""Migration 0012 rebuilds sms_outbox and recordings (new states 'logged' and 'empty')
without losing a row or a foreign key of the tables that point at them."""

from __future__ import annotations

import sqlite3

import pytest

from callproof.storage.schema import load_migrations, migrate


def test_rows_and_references_survive_the_rebuild():
    conn = sqlite3.connect(":memory:")
    conn.isolation_level = None
    conn.execute("PRAGMA foreign_keys = ON")
    migrations = load_migrations()
    migrate(conn, migrations[:11])
    conn.execute("INSERT INTO protocols VALUES ('20260000000000001', 2026, 1, 't', 'call', NULL)")
    conn.execute("INSERT INTO calls (id, channel_id, caller_number_raw, started_at, updated_at, protocol)"
                 " VALUES (1, 'ch', 'x', 't', 't', '20260000000000001')")
    conn.execute("INSERT INTO sms_outbox (id, protocol, call_id, destination, language, body, state,"
                 " created_at, updated_at) VALUES (1, '20260000000000001', 1, '+5511987654321', 'en', 'b',"
                 " 'sent', 't', 't')")
    conn.execute("INSERT INTO sms_attempts (outbox_id, attempt_no, idempotency_key, backend, owner, started_at,"
                 " finished_at, outcome) VALUES (1, 1, 'k', 'smpp', 'o', 't', 't', 'accepted')")
    conn.execute("INSERT INTO recordings (id, call_id, path, started_at, state) VALUES (1, 1, '/r', 't', 'finalised')")
    conn.execute("INSERT INTO evidence_records (recording_id, record, record_sha256, created_at)"
                 f" VALUES (1, 'r', '{'a' * 64}', 't')")
    assert migrate(conn, migrations[:12]) == [12]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("SELECT state FROM sms_outbox").fetchall() == [("sent",)]
    assert conn.execute("SELECT state FROM recordings").fetchall() == [("finalised",)]
    conn.execute("UPDATE sms_outbox SET state = 'logged'")
    conn.execute("UPDATE recordings SET state = 'empty'")
    with pytest.raises(sqlite3.IntegrityError):  # the references still hold
        conn.execute("DELETE FROM recordings")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE sms_outbox SET state = 'delivered'")
