"""storage.protocols: numbering, per-year restart, idempotency, one-transaction outbox."""

from __future__ import annotations

import asyncio

import pytest

from callproof.storage import (
    Database,
    InvalidStateError,
    NewCall,
    NotFoundError,
    ProtocolRangeError,
    SmsDraft,
    allocate_sync,
    connect_sync,
    format_protocol,
    parse_protocol,
)
from callproof.storage.protocols import MAX_SEQUENCE

AT = "2026-03-10T14:00:00Z"
MOBILE = "+5511912345678"


def sms(destination=MOBILE, reason=None, render=lambda p: f"Seu protocolo: {p}"):
    return SmsDraft(destination=destination, language="pt_BR", render_body=render,
                    not_sendable_reason=reason)


def new_call(n: int) -> NewCall:
    return NewCall(f"chan-{n}", f"{n}.1", f"{n}.1", MOBILE, MOBILE, "Cliente", "4000",
                   "pt_BR", "2026-03-10T13:59:00Z")


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: AT) as database:
        yield database


async def rows(db, sql, *params):
    return await db.run_in_connection(lambda c: c.execute(sql, params).fetchall())


async def test_format_and_sequence(db):
    got = []
    for n in range(3):
        call_id = await db.calls.create(new_call(n))
        got.append((await db.protocols.allocate_for_call(
            call_id, year=2026, allocated_at=AT, sms=sms())).protocol)
    assert got == ["20260000000000001", "20260000000000002", "20260000000000003"]
    assert all(len(p) == 17 and p.isdigit() for p in got)
    assert await rows(db, "SELECT year, sequence, kind, call_id FROM protocols ORDER BY sequence") \
        == [(2026, 1, "call", 1), (2026, 2, "call", 2), (2026, 3, "call", 3)]


async def test_sequence_restarts_each_year(db):
    assert await db.protocols.allocate(year=2026) == "20260000000000001"
    assert await db.protocols.allocate(year=2026) == "20260000000000002"
    assert await db.protocols.allocate(year=2027) == "20270000000000001"
    assert await db.protocols.allocate(year=2026) == "20260000000000003"
    assert await rows(db, "SELECT * FROM protocol_sequences ORDER BY year") == [
        (2026, 3), (2027, 1)]


async def test_allocation_sets_call_and_outbox_in_one_go(db):
    call_id = await db.calls.create(new_call(1))
    result = await db.protocols.allocate_for_call(
        call_id, year=2026, allocated_at="2026-03-10T11:00:00-03:00", sms=sms())
    assert result.protocol == "20260000000000001"
    assert result.sms_state == "pending" and not result.reused
    call = await db.calls.get(call_id)
    assert call["protocol"] == result.protocol
    assert call["status"] == "protocol_reading"
    assert call["updated_at"] == "2026-03-10T14:00:00.000000Z"
    [row] = await db.outbox.get_for_protocol(result.protocol)
    assert row["id"] == result.outbox_id
    assert row["state"] == "pending" and row["reason"] is None
    assert row["destination"] == MOBILE and row["call_id"] == call_id
    assert row["body"] == "Seu protocolo: 20260000000000001"
    assert row["next_attempt_at"] == row["created_at"] == "2026-03-10T14:00:00.000000Z"
    assert row["attempts"] == 0
    assert (await db.calls.get_by_protocol(result.protocol))["id"] == call_id


async def test_idempotent_per_call(db):
    call_id = await db.calls.create(new_call(1))
    first = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=AT, sms=sms())
    again = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=AT, sms=sms())
    assert again.protocol == first.protocol
    assert again.outbox_id == first.outbox_id and again.sms_state == "pending"
    assert again.reused
    assert await rows(db, "SELECT last_value FROM protocol_sequences") == [(1,)]
    assert len(await db.outbox.get_for_protocol(first.protocol)) == 1
    # the resumed call did not consume a number
    assert await db.protocols.allocate(year=2026) == "20260000000000002"


async def test_not_sendable_without_destination(db):
    call_id = await db.calls.create(new_call(1))
    result = await db.protocols.allocate_for_call(
        call_id, year=2026, allocated_at=AT,
        sms=sms(destination=None, reason="caller number withheld"))
    assert result.sms_state == "not_sendable"
    [row] = await db.outbox.get_for_protocol(result.protocol)
    assert row["state"] == "not_sendable"
    assert row["reason"] == "caller number withheld"
    assert row["destination"] is None and row["next_attempt_at"] is None
    assert await db.outbox.claim_for_send("w", 10, 30, "2030-01-01T00:00:00Z", "smpp") == []


async def test_not_sendable_with_reason_keeps_destination(db):
    call_id = await db.calls.create(new_call(1))
    result = await db.protocols.allocate_for_call(
        call_id, year=2026, allocated_at=AT,
        sms=sms(destination="+551133334444", reason="landline"))
    [row] = await db.outbox.get_for_protocol(result.protocol)
    assert (row["state"], row["reason"], row["destination"]) == (
        "not_sendable", "landline", "+551133334444")


async def test_no_sms_no_outbox_row(db):
    call_id = await db.calls.create(new_call(1))
    result = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=AT, sms=None)
    assert (result.outbox_id, result.sms_state) == (None, None)
    assert await db.outbox.get_for_protocol(result.protocol) == []


async def _assert_nothing_persisted(db, call_id):
    assert await rows(db, "SELECT * FROM protocol_sequences") == []
    assert await rows(db, "SELECT * FROM protocols") == []
    assert await rows(db, "SELECT * FROM sms_outbox") == []
    call = await db.calls.get(call_id)
    assert call["protocol"] is None and call["status"] == "consent_playing"
    assert not await db.run_in_connection(lambda c: c.in_transaction)


async def test_failure_after_bump_rolls_back_everything(db):
    call_id = await db.calls.create(new_call(1))

    def explode(protocol):
        raise RuntimeError(f"template broken for {protocol}")

    with pytest.raises(RuntimeError, match="template broken for 20260000000000001"):
        await db.protocols.allocate_for_call(
            call_id, year=2026, allocated_at=AT, sms=sms(render=explode))
    await _assert_nothing_persisted(db, call_id)
    # no gap: the retry gets number 1
    result = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=AT, sms=sms())
    assert result.protocol == "20260000000000001"


async def test_constraint_failure_in_outbox_rolls_back(db):
    call_id = await db.calls.create(new_call(1))
    with pytest.raises(Exception, match="CHECK constraint"):
        await db.protocols.allocate_for_call(
            call_id, year=2026, allocated_at=AT, sms=sms(destination="not-a-number"))
    await _assert_nothing_persisted(db, call_id)


async def test_call_must_exist_and_be_in_consent(db):
    with pytest.raises(NotFoundError):
        await db.protocols.allocate_for_call(999, year=2026, allocated_at=AT, sms=sms())
    call_id = await db.calls.create(new_call(1))
    await db.calls.update(call_id, status="abandoned_in_consent", consent_outcome="caller_left")
    with pytest.raises(InvalidStateError, match="abandoned_in_consent"):
        await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=AT, sms=sms())
    assert await rows(db, "SELECT * FROM protocol_sequences") == []


@pytest.mark.parametrize("year", [1999, 10000, 0, -1, "2026", 2026.0, True])
async def test_bad_year_rejected(db, year):
    with pytest.raises(ProtocolRangeError, match="year"):
        await db.protocols.allocate(year=year)


async def test_sequence_overflow_rejected_without_consuming(db):
    await db.run_in_connection(lambda c: c.execute(
        "INSERT INTO protocol_sequences VALUES (2026, ?)", (MAX_SEQUENCE - 1,)))
    assert await db.protocols.allocate(year=2026) == "20269999999999999"
    with pytest.raises(ProtocolRangeError, match="exhausted"):
        await db.protocols.allocate(year=2026)
    assert await rows(db, "SELECT last_value FROM protocol_sequences") == [(MAX_SEQUENCE,)]
    assert await db.protocols.allocate(year=2027) == "20270000000000001"


async def test_plain_allocation_for_requests(db):
    protocol = await db.protocols.allocate(kind="request", year=2026)
    row = await db.protocols.get(protocol)
    assert row == {"protocol": protocol, "year": 2026, "sequence": 1,
                   "allocated_at": "2026-03-10T14:00:00.000000Z", "kind": "request",
                   "call_id": None}


async def test_one_thread_hop_per_allocation(db, monkeypatch):
    call_id = await db.calls.create(new_call(1))
    hops = []
    real = db._conn._execute

    async def counting(fn, *args, **kwargs):
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(db._conn, "_execute", counting)
    await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=AT, sms=sms())
    assert len(hops) == 1


async def test_concurrent_coroutines_and_sync_callers_share_one_sequence(db, tmp_path):
    call_ids = [await db.calls.create(new_call(n)) for n in range(40)]
    conn = connect_sync(db.path)
    try:
        async def one(call_id):
            return (await db.protocols.allocate_for_call(
                call_id, year=2026, allocated_at=AT, sms=sms())).protocol

        async_results = asyncio.gather(*(one(c) for c in call_ids))
        sync_results = [allocate_sync(conn, year=2026, allocated_at=AT, kind="request").protocol
                        for _ in range(10)]
        got = sorted([*await async_results, *sync_results])
    finally:
        conn.close()
    assert got == [format_protocol(2026, n) for n in range(1, 51)]


async def test_concurrent_allocations_share_hops_and_fail_alone(db, monkeypatch):
    """60 calls allocating at once: fewer hops than allocations, consecutive numbers,
    and the one request that must fail (its call already left consent) fails alone."""
    call_ids = [await db.calls.create(new_call(n)) for n in range(60)]
    await db.calls.update(call_ids[30], status="abandoned_in_consent")
    hops = []
    real = db._conn._execute

    async def counting(fn, *args, **kwargs):
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(db._conn, "_execute", counting)
    results = await asyncio.gather(
        *(db.protocols.allocate_for_call(c, year=2026, allocated_at=AT, sms=sms()) for c in call_ids),
        return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], InvalidStateError)
    assert isinstance(results[30], InvalidStateError)
    got = sorted(r.protocol for r in results if not isinstance(r, BaseException))
    assert got == [format_protocol(2026, n) for n in range(1, 60)], "no gap, no duplicate"
    assert len(hops) < len(call_ids) / 2
    outbox = await rows(db, "SELECT count(*) FROM sms_outbox")
    assert outbox == [(59,)]


def test_allocate_sync_directly(target):
    conn = connect_sync(target)
    try:
        conn.execute(
            "INSERT INTO calls (channel_id, caller_number_raw, started_at, updated_at)"
            " VALUES ('c1', '', ?, ?)", (AT, AT))
        result = allocate_sync(conn, year=2026, allocated_at=AT, call_id=1,
                               sms=sms(destination=None))
        assert result.protocol == "20260000000000001"
        assert result.sms_state == "not_sendable"
        assert not conn.in_transaction
    finally:
        conn.close()


def test_format_and_parse():
    assert format_protocol(2026, 42) == "20260000000000042"
    assert parse_protocol("20260000000000042") == (2026, 42)
    for bad in ("2026000000000004", "2026000000000004x", "19990000000000001",
                "20260000000000000", "２０２６0000000000042"):
        with pytest.raises(ValueError):
            parse_protocol(bad)
    with pytest.raises(ProtocolRangeError):
        format_protocol(2026, MAX_SEQUENCE + 1)
