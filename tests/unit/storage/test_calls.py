"""storage.calls: creation, whitelisted updates, lookups."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from callproof.storage import AlreadyExistsError, Database, NewCall, NotFoundError, SmsDraft
from tests.call_rows import advance

NOW = "2026-03-10T14:00:00.000000Z"
MOBILE = "+5511912345678"


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: NOW) as database:
        yield database


def new_call(channel="chan-1", raw=MOBILE, number=MOBILE, started="2026-03-10T10:59:00-03:00"):
    return NewCall(channel_id=channel, uniqueid="1700000000.1", linkedid="1700000000.1",
                   caller_number_raw=raw, caller_number=number, caller_name="Cliente",
                   dialled_number="4000", language="pt_BR", started_at=started)


async def test_create_and_get(db):
    call_id = await db.calls.create(new_call())
    row = await db.calls.get(call_id)
    assert row["status"] == "consent_playing"
    assert row["channel_id"] == "chan-1"
    assert row["started_at"] == "2026-03-10T13:59:00.000000Z"
    assert row["updated_at"] == NOW
    assert row["protocol"] is None and row["protocol_read_count"] == 0
    assert await db.calls.get_by_channel("chan-1") == row
    assert await db.calls.get(call_id + 1) is None
    assert await db.calls.get_by_channel("nope") is None
    assert await db.calls.get_by_protocol("20260000000000001") is None


async def test_duplicate_channel(db):
    call_id = await db.calls.create(new_call())
    with pytest.raises(AlreadyExistsError, match=f"id {call_id}"):
        await db.calls.create(new_call())


@pytest.mark.parametrize("raw", ["", "anonymous", "'; DROP TABLE calls; --",
                                 "+55\u202e11\x00999", "x" * 500])
async def test_raw_number_kept_verbatim(db, raw):
    call_id = await db.calls.create(new_call(raw=raw, number=None))
    row = await db.calls.get(call_id)
    # PostgreSQL's text cannot hold U+0000: the row is kept, with U+FFFD in its place
    kept = raw.replace("\x00", "\ufffd") if db.engine == "postgresql" else raw
    assert row["caller_number_raw"] == kept and row["caller_number"] is None


@pytest.mark.parametrize("number", ["5511912345678", "+0511912345678", "+55 11 9123",
                                    "+55119123456789012", "+"])
async def test_normalised_number_must_be_e164(db, number):
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.calls.create(new_call(number=number))


async def test_update_whitelisted_columns(db):
    call_id = await db.calls.create(new_call())
    await db.calls.update(
        call_id,
        consent_prompt="consent-pt_BR-v3", consent_language="pt_BR",
        consent_sha256="ab" * 32, consent_started_at="2026-03-10T11:00:00-03:00",
        consent_finished_at="2026-03-10T14:00:07Z", consent_outcome="finished",
        protocol_read_count=2,
    )
    row = await db.calls.get(call_id)
    assert row["consent_started_at"] == "2026-03-10T14:00:00.000000Z"
    assert row["consent_finished_at"] == "2026-03-10T14:00:07.000000Z"
    assert row["consent_outcome"] == "finished" and row["protocol_read_count"] == 2
    await advance(db, call_id, "completed", ended_at="2026-03-10T14:05:00Z", hangup_cause="16", error=None)
    row = await db.calls.get(call_id)
    assert row["status"] == "completed" and row["ended_at"] == "2026-03-10T14:05:00.000000Z"


@pytest.mark.parametrize("column", ["nonsense", "protocol", "id", "channel_id",
                                    "caller_number_raw", "started_at", "updated_at",
                                    "status = 'x', error"])
async def test_update_rejects_other_columns(db, column):
    call_id = await db.calls.create(new_call())
    with pytest.raises(ValueError, match="not updatable: " + column.split(" ")[0]):
        await db.calls.update(call_id, **{column: "x", "status": "failed"})
    assert (await db.calls.get(call_id))["status"] == "consent_playing"


async def test_update_errors(db):
    with pytest.raises(ValueError, match="no columns"):
        await db.calls.update(1)
    with pytest.raises(NotFoundError):
        await db.calls.update(404, status="failed")
    call_id = await db.calls.create(new_call())
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.calls.update(call_id, status="on_the_moon")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.calls.update(call_id, consent_outcome="maybe")
    with pytest.raises(ValueError, match="naive"):
        await db.calls.update(call_id, ended_at="2026-03-10T14:05:00")


async def test_unfinished_and_get_by_protocol(db):
    a = await db.calls.create(new_call("a", started="2026-03-10T10:00:00Z"))
    b = await db.calls.create(new_call("b", started="2026-03-10T09:00:00Z"))
    c = await db.calls.create(new_call("c", started="2026-03-10T08:00:00Z"))
    await advance(db, a, "completed", ended_at="2026-03-10T10:10:00Z")
    assert [r["id"] for r in await db.calls.unfinished()] == [c, b]
    result = await db.protocols.allocate_for_call(
        b, year=2026, allocated_at=NOW,
        sms=SmsDraft(MOBILE, "pt_BR", lambda p: p))
    assert (await db.calls.get_by_protocol(result.protocol))["id"] == b


async def test_served_by_is_stored_checked_and_counted(db):
    a = await db.calls.create(new_call("a"))
    b = await db.calls.create(replace(new_call("b"), served_by="ari"))
    c = await db.calls.create(replace(new_call("c"), served_by="agi_fallback"))
    d = await db.calls.create(replace(new_call("d", started="2026-03-10T15:00:00Z"), served_by="agi_fallback"))
    assert [(await db.calls.get(i))["served_by"] for i in (a, b, c, d)] == [None, "ari", "agi_fallback",
                                                                            "agi_fallback"]
    assert await db.calls.served_by_counts() == {None: 1, "ari": 1, "agi_fallback": 2}
    assert await db.calls.served_by_counts(since="2026-03-10T14:30:00Z") == {"agi_fallback": 1}
    with pytest.raises(ValueError, match="served_by must be one of"):
        await db.calls.create(replace(new_call("e"), served_by="carrier_pigeon"))
    with pytest.raises(ValueError, match="not updatable: served_by"):
        await db.calls.update(c, served_by="ari")  # a fact fixed when the call entered


async def test_a_handed_off_call_is_completed_by_its_hangup_and_a_failed_one_gets_its_end(db):
    handed = await db.calls.create(new_call("chan-h"))
    await advance(db, handed, "handed_off")
    failed = await db.calls.create(new_call("chan-f"))
    await advance(db, failed, "failed")
    playing = await db.calls.create(new_call("chan-p"))

    assert await db.calls.complete(handed, "2026-03-10T11:05:00-03:00", "Hangup:Normal Clearing") == (
        "completed", None)
    row = await db.calls.get(handed)
    assert (row["status"], row["ended_at"], row["hangup_cause"]) == (
        "completed", "2026-03-10T14:05:00.000000Z", "Hangup:Normal Clearing")
    assert await db.calls.complete(failed, NOW, "Hangup") == ("failed", None)
    row = await db.calls.get(failed)
    assert (row["status"], row["ended_at"], row["hangup_cause"]) == ("failed", NOW, "Hangup")
    # an ended call keeps its end; a call still in its flow, or none, is left alone
    assert await db.calls.complete(handed, "2026-03-10T15:00:00Z", "Hangup:again") is None
    assert (await db.calls.get(handed))["hangup_cause"] == "Hangup:Normal Clearing"
    assert await db.calls.complete(playing, NOW, "Hangup") is None
    assert (await db.calls.get(playing))["ended_at"] is None
    assert await db.calls.complete(playing + 100, NOW, "Hangup") is None
