"""storage.recordings: recording -> finalised / failed / missing."""

from __future__ import annotations

import sqlite3

import pytest

from callproof.storage import AlreadyExistsError, Database, InvalidStateError, NewCall, NotFoundError

NOW = "2026-03-10T14:00:00.000000Z"
SHA = "0123456789abcdef" * 4


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: NOW) as database:
        yield database


@pytest.fixture
async def call_id(db):
    return await db.calls.create(NewCall("chan-1", "u", "l", "+5511912345678",
                                         "+5511912345678", None, "4000", "pt_BR", NOW))


async def test_lifecycle(db, call_id):
    path = "/var/spool/asterisk/monitor/2026/03/10/x.wav"
    rec = await db.recordings.create(call_id, None, path, "5511912345678",
                                     "2026-03-10T11:00:01-03:00")
    row = await db.recordings.get_by_path(path)
    assert row["id"] == rec and row["state"] == "recording"
    assert row["started_at"] == "2026-03-10T14:00:01.000000Z"
    assert [r["id"] for r in await db.recordings.unfinalised()] == [rec]

    await db.recordings.finalise(rec, size_bytes=48044, duration_ms=3000, sha256=SHA.upper(),
                                 finalised_at="2026-03-10T14:03:00Z")
    row = await db.recordings.get(rec)
    assert (row["state"], row["size_bytes"], row["duration_ms"], row["sha256"]) == (
        "finalised", 48044, 3000, SHA)
    assert row["finalised_at"] == "2026-03-10T14:03:00.000000Z"
    assert row["retention_until"] is None
    assert await db.recordings.unfinalised() == []
    assert [r["id"] for r in await db.recordings.for_call(call_id)] == [rec]

    # repeating the same finalisation is harmless, a different one is refused
    await db.recordings.finalise(rec, size_bytes=48044, duration_ms=3000, sha256=SHA,
                                 finalised_at="2026-03-10T14:03:00Z")
    with pytest.raises(InvalidStateError, match="finalised"):
        await db.recordings.finalise(rec, size_bytes=1, duration_ms=1, sha256="f" * 64,
                                     finalised_at=NOW)
    with pytest.raises(InvalidStateError):
        await db.recordings.fail(rec, "late failure")


async def test_fail_and_missing(db, call_id):
    a = await db.recordings.create(call_id, None, "/r/a.wav", None, NOW)
    b = await db.recordings.create(call_id, None, "/r/b.wav", None, NOW)
    await db.recordings.fail(a, "MixMonitor stopped: disk full")
    await db.recordings.fail(b, "file not found after hangup", state="missing")
    assert [(r["state"], r["error"]) for r in await db.recordings.for_call(call_id)] == [
        ("failed", "MixMonitor stopped: disk full"), ("missing", "file not found after hangup")]
    with pytest.raises(InvalidStateError, match="failed"):
        await db.recordings.finalise(a, size_bytes=1, duration_ms=1, sha256=SHA, finalised_at=NOW)
    with pytest.raises(ValueError):
        await db.recordings.fail(a, "x", state="deleted")


async def test_errors(db, call_id):
    await db.recordings.create(call_id, None, "/r/a.wav", None, NOW)
    with pytest.raises(AlreadyExistsError, match=r"/r/a\.wav"):
        await db.recordings.create(call_id, None, "/r/a.wav", None, NOW)
    with pytest.raises(NotFoundError):
        await db.recordings.finalise(99, size_bytes=1, duration_ms=1, sha256=SHA, finalised_at=NOW)
    with pytest.raises(NotFoundError):
        await db.recordings.fail(99, "x")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await db.recordings.create(999, None, "/r/orphan.wav", None, NOW)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await db.recordings.create(call_id, "20260000000000009", "/r/p.wav", None, NOW)
    rec = await db.recordings.create(call_id, None, "/r/c.wav", None, NOW)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.recordings.finalise(rec, size_bytes=1, duration_ms=1, sha256="xyz",
                                     finalised_at=NOW)
    assert (await db.recordings.get(rec))["state"] == "recording"


async def test_a_recordings_evidence_facts_and_its_one_record(db, call_id):
    """What a recording's evidence record is made of, read in one statement: its row, its call's
    facts and when its protocol was given; and a second record for it is not written."""
    from callproof.storage import SmsDraft
    from callproof.storage.evidence import CALL_FACTS, facts_sync, insert_sync

    protocol = (await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=NOW,
                                                     sms=SmsDraft(None, "pt_BR", str))).protocol
    rec = await db.recordings.create(call_id, protocol, "/r/2026/x.wav", "5511912345678", NOW)
    await db.recordings.finalise(rec, size_bytes=48044, duration_ms=3000, sha256=SHA, finalised_at=NOW)

    def read(conn):
        return facts_sync(conn, rec), facts_sync(conn, rec + 1000)

    facts, none = await db.run_in_connection(read)
    assert none is None
    assert facts["recording"] == await db.recordings.get(rec)
    call = await db.calls.get(call_id)
    assert facts["call"] == {name: call[name] for name in CALL_FACTS} and facts["call"]["protocol"] == protocol
    assert facts["protocol_allocated_at"] == NOW

    def insert(conn, record):
        return insert_sync(conn, rec, protocol, record, "ab" * 32, None, None, NOW)

    assert await db.run_in_connection(insert, '{"first": 1}') is True
    assert await db.run_in_connection(insert, '{"second": 2}') is False
    rows = await db.run_in_connection(lambda conn: conn.execute(
        "SELECT record FROM evidence_records WHERE recording_id = ?", (rec,)).fetchall())
    assert [tuple(r) for r in rows] == [('{"first": 1}',)]
