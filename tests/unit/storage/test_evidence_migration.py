"""Migration 0011 on a database that has evidence records already: the rows stay as they were,
the table stays append-only, and a recording may now hold one unsigned and one signed record
(sealed late), never two of either."""

from __future__ import annotations

import sqlite3

import pytest

from callproof.storage import connect_sync, schema
from callproof.storage.evidence import for_recording_sync, insert_sync
from tests.unit.rights.test_export import make_config, make_recording

RECORD = '{"type":"callproof.evidence_record"}'


def test_0011_keeps_the_records_and_allows_one_signed_next_to_the_unsigned(tmp_path, monkeypatch):
    config = make_config(tmp_path)
    every = schema.load_migrations()
    monkeypatch.setattr(schema, "load_migrations", lambda: [m for m in every if m.version <= 10])
    conn = connect_sync(tmp_path / "cp.db")
    rec = make_recording(conn, config)
    assert insert_sync(conn, rec["recording_id"], rec["protocol"], RECORD, "ab" * 32, None, None,
                       "2026-03-10T17:00:00.000000Z")
    before = conn.execute("SELECT * FROM evidence_records").fetchall()
    conn.close()
    monkeypatch.undo()

    conn = connect_sync(tmp_path / "cp.db")
    assert schema.schema_version(conn) == max(m.version for m in every)
    assert conn.execute("SELECT * FROM evidence_records").fetchall() == before
    conn.execute("INSERT INTO evidence_records (recording_id, protocol, record, record_sha256, signature,"
                 " key_fingerprint, created_at) VALUES (?, ?, ?, ?, 'c2ln', ?, '2026-03-11T00:00:00Z')",
                 (rec["recording_id"], rec["protocol"], RECORD, "cd" * 32, "ef" * 32))
    assert for_recording_sync(conn, rec["recording_id"])["signature"] == "c2ln"  # the signed one is read
    for signature, fingerprint in ((None, None), ("c2ln", "ef" * 32)):
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("INSERT INTO evidence_records (recording_id, protocol, record, record_sha256, signature,"
                         " key_fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, '2026-03-11T00:00:00Z')",
                         (rec["recording_id"], rec["protocol"], RECORD, "12" * 32, signature, fingerprint))
    for statement in ("UPDATE evidence_records SET record = 'x'", "DELETE FROM evidence_records"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
