"""``callproof storage import``: an install's SQLite database copied into an empty PostgreSQL
one, against the throw-away cluster: the same rows, the next protocol continuing the year's
sequence, the audit chain verifying with the import's own entry; and the refusals (a target
with data, another schema version, a file that is no SQLite database) writing nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.storage import NewCall, SmsDraft, allocate_sync, audit, calls, connect_sync, evidence, recordings
from callproof.storage.engine_import import ImportRefused, import_sqlite, open_source

AT = "2026-03-10T14:00:00.000000Z"
MOBILE = "+5511912345678"
SHA = "0123456789abcdef" * 4


def _seed(path: Path) -> None:
    conn = connect_sync(path)
    try:
        for n in range(1, 4):
            call_id = calls.create_sync(conn, NewCall(f"chan-{n}", f"{n}.1", f"{n}.1", MOBILE, MOBILE, "Cliente",
                                                      "4000", "pt_BR", "2026-03-10T13:59:00Z"), AT)
            got = allocate_sync(conn, year=2026, allocated_at=AT, call_id=call_id,
                                sms=SmsDraft(destination=MOBILE, language="pt_BR",
                                             render_body=lambda p: f"Seu protocolo: {p}"))
            rec = recordings.create_sync(conn, call_id, got.protocol, f"/r/{n}.wav", MOBILE, AT)
            recordings.finalise_sync(conn, rec, size_bytes=48044, duration_ms=3000, sha256=SHA, finalised_at=AT)
            evidence.insert_sync(conn, rec, got.protocol, f'{{"n": {n}}}', SHA, None, None, AT)
            audit.append_sync(conn, "protocol.viewed", "ana", AT, protocol=got.protocol)
        allocate_sync(conn, year=2025, allocated_at=AT, kind="request")  # another year's counter
    finally:
        conn.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "callproof.db"
    _seed(path)
    return path


@pytest.fixture
def pg_url(pg_cluster):
    url = pg_cluster.new_database("imp")
    try:
        yield url
    finally:
        pg_cluster.drop(url)


def _import(sqlite_file: Path, url: str):
    src, pg = open_source(sqlite_file), connect_sync(url)
    try:
        return import_sqlite(src, pg, source_name=sqlite_file.name, actor="ana", at=AT)
    finally:
        src.close()
        pg.close()


def _rows(conn, table: str, order: str = "id") -> list[tuple]:
    return [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()]


def test_the_rows_are_the_same_and_the_next_protocol_continues_the_sequence(sqlite_file, pg_url):
    before = sqlite_file.read_bytes()
    result = _import(sqlite_file, pg_url)
    assert sqlite_file.read_bytes() == before  # only read
    assert {t: result.counts[t] for t in ("calls", "protocols", "sms_outbox", "recordings", "audit_log")} == {
        "calls": 3, "protocols": 4, "sms_outbox": 3, "recordings": 3, "audit_log": 3}
    src, pg = sqlite3.connect(sqlite_file), connect_sync(pg_url)
    try:
        for table, order in (("calls", "id"), ("protocols", "protocol"), ("sms_outbox", "id"),
                             ("recordings", "id"), ("evidence_records", "id"), ("protocol_sequences", "year")):
            assert _rows(pg, table, order) == _rows(src, table, order), table
        assert [r[-1] for r in _rows(pg, "audit_log")][:3] == [r[-1] for r in _rows(src, "audit_log")]
        [entry] = pg.execute("SELECT actor, action, subject, details FROM audit_log WHERE id = 4").fetchall()
        assert entry[:3] == ("ana", "storage.imported", "callproof.db")
        assert json.loads(entry[3])["rows"]["protocols"] == 4 and MOBILE not in entry[3]
        assert audit.verify_chain_sync(pg) is None
        # the next call on PostgreSQL: protocol 4 of 2026 (no repeat, no gap), its ids past the copied ones
        call_id = calls.create_sync(pg, NewCall("chan-4", "4.1", "4.1", MOBILE, MOBILE, None, "4000", "pt_BR",
                                                "2026-03-10T13:59:00Z"), AT)
        assert call_id == 4
        assert allocate_sync(pg, year=2026, allocated_at=AT, call_id=call_id).protocol == "20260000000000004"
        assert allocate_sync(pg, year=2025, allocated_at=AT, kind="request").protocol == "20250000000000002"
        assert audit.append_sync(pg, "protocol.viewed", "ana", AT) == 5
    finally:
        src.close()
        pg.close()


def test_a_target_with_data_is_refused_naming_the_table_and_nothing_is_written(sqlite_file, pg_url):
    pg = connect_sync(pg_url)
    try:
        allocate_sync(pg, year=2026, allocated_at=AT, kind="request")
    finally:
        pg.close()
    with pytest.raises(ImportRefused, match="not empty: table protocol"):
        _import(sqlite_file, pg_url)
    pg = connect_sync(pg_url)
    try:
        assert pg.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0
        assert pg.execute("SELECT count(*) FROM calls").fetchone()[0] == 0
    finally:
        pg.close()


def test_another_schema_version_is_refused_naming_both(sqlite_file, pg_url):
    conn = sqlite3.connect(sqlite_file)
    latest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    conn.execute("DELETE FROM schema_migrations WHERE version = ?", (latest,))
    conn.commit()
    conn.close()
    with pytest.raises(ImportRefused, match=f"SQLite file is at {latest - 1}, PostgreSQL .* at {latest}.*migrate"):
        _import(sqlite_file, pg_url)


def test_a_file_that_is_not_a_sqlite_database_is_refused(tmp_path):
    junk = tmp_path / "calls.csv"
    junk.write_text("protocol,caller\n" * 200)
    with pytest.raises(ImportRefused, match="not a SQLite database"):
        open_source(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ImportRefused, match="not callproof's"):
        open_source(other)
    with pytest.raises(ImportRefused, match="no such file"):
        open_source(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_the_command_prints_the_counts_and_refuses_a_second_import(sqlite_file, pg_url, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.delenv("CALLPROOF_CONFIG", raising=False)
    cfg = tmp_path / "callproof.toml"
    cfg.write_text(f'[general]\ntimezone = "America/Sao_Paulo"\n[storage]\nurl = "{pg_url}"\n')
    cfg.chmod(0o600)
    assert main(["--config", str(cfg), "storage", "import", "--from", str(sqlite_file), "--by", "ana"]) == 0
    out = capsys.readouterr().out
    assert any(line.split() == ["protocols", "4"] for line in out.splitlines())
    assert "storage.imported" in out and MOBILE not in out
    assert main(["--config", str(cfg), "storage", "import", "--from", str(sqlite_file)]) == 1
    assert "not empty: table" in capsys.readouterr().err


def test_an_audit_chain_that_does_not_verify_rolls_the_whole_copy_back(sqlite_file, pg_url):
    conn = sqlite3.connect(sqlite_file)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
                                ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")  # an edited entry: its hash is wrong
    conn.commit()
    conn.close()
    with pytest.raises(ImportRefused, match=r"audit chain does not verify after the copy \(entry 2\)"):
        _import(sqlite_file, pg_url)
    pg = connect_sync(pg_url)
    try:
        assert [pg.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("calls", "protocols", "audit_log")
                ] == [0, 0, 0]
    finally:
        pg.close()
