"""storage.outbox_receipts: which row a delivery receipt belongs to when the
SMSC gives out its message ids again (after a restart) and when a receipt
arrives before its acceptance is written; held receipts and their expiry."""

from __future__ import annotations

import pytest

from callproof.storage import Database

from .test_outbox import T0, T_PLUS, accepted, answer, claim, queue


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: T0) as database:
        yield database


async def send(db, gw, at, owner="w"):
    """One new row claimed at ``at`` and accepted a second later with gateway id ``gw``."""
    [oid] = await queue(db, 1, at=at)
    [row] = await claim(db, owner, 1, 30, at)
    assert row["id"] == oid
    await answer(db, row, _later(at, 1), owner=owner, **accepted(gw))
    return oid


def _later(at, seconds):
    minute, second = int(at[14:16]), int(at[17:19])
    return T_PLUS(minute * 60 + second + seconds)


async def dlrs(db, oid):
    return [(d["gateway_message_id"], d["status"], d["matched_by"]) for d in await db.outbox.dlrs(oid)]


async def all_receipts(db):
    return await db.run_in_connection(lambda c: c.execute(
        "SELECT gateway_message_id, status, outbox_id, matched_by, expired_at IS NOT NULL FROM sms_dlrs"
        " ORDER BY id").fetchall())


async def test_an_id_given_out_again_belongs_to_the_row_accepted_with_it_last(db):
    old = await send(db, "perl000001", T_PLUS(0))
    assert await db.outbox.record_dlr("perl000001", "DELIVRD", T_PLUS(2)) == old
    old_row = await db.outbox.get(old)
    # the SMSC restarts and hands out perl000001 again
    new = await send(db, "perl000001", T_PLUS(10))
    assert await db.outbox.record_dlr("perl000001", "DELIVRD", T_PLUS(12)) == new
    assert await db.outbox.get(old) == old_row  # dlr_state and dlr_at untouched
    row = await db.outbox.get(new)
    assert (row["dlr_state"], row["dlr_at"]) == ("DELIVRD", "2026-03-10T14:00:12.000000Z")
    assert await dlrs(db, old) == [("perl000001", "DELIVRD", "gateway_id")]
    assert await dlrs(db, new) == [("perl000001", "DELIVRD", "reused_id")]


async def test_an_earlier_row_without_a_receipt_does_not_take_the_next_messages_one(db):
    # the first message's receipt was lost with the SMSC's restart: its row has none
    old = await send(db, "perl000001", T_PLUS(0))
    new = await send(db, "perl000001", T_PLUS(10))
    assert await db.outbox.record_dlr("perl000001", "DELIVRD", T_PLUS(12)) == new
    assert (await db.outbox.get(old))["dlr_state"] is None


async def test_a_final_receipt_is_never_overwritten(db):
    oid = await send(db, "gw-1", T_PLUS(0))
    assert await db.outbox.record_dlr("gw-1", "ENROUTE", T_PLUS(2)) == oid
    assert await db.outbox.record_dlr("gw-1", "DELIVRD", T_PLUS(3)) == oid
    # another receipt for gw-1 now is not this message's: held, the row keeps its final state
    assert await db.outbox.record_dlr("gw-1", "UNDELIV", T_PLUS(4)) is None
    row = await db.outbox.get(oid)
    assert (row["dlr_state"], row["dlr_at"]) == ("DELIVRD", "2026-03-10T14:00:03.000000Z")
    assert [d[1] for d in await dlrs(db, oid)] == ["ENROUTE", "DELIVRD"]
    assert (await all_receipts(db))[-1] == ("gw-1", "UNDELIV", None, None, 0)


async def test_receipt_before_acceptance_is_held_then_attached_to_the_new_row(db):
    old = await send(db, "perl000001", T_PLUS(0))
    assert await db.outbox.record_dlr("perl000001", "DELIVRD", T_PLUS(2)) == old
    [oid] = await queue(db, 1, at=T_PLUS(10))
    [row] = await claim(db, "w", 1, 30, T_PLUS(10))
    # the SMSC (restarted, same id again) sends the receipt before the acceptance is written
    assert await db.outbox.record_dlr("perl000001", "DELIVRD", T_PLUS(11)) is None
    await answer(db, row, T_PLUS(12), **accepted("perl000001"))
    assert await dlrs(db, oid) == [("perl000001", "DELIVRD", "early")]
    assert (await db.outbox.get(oid))["dlr_at"] == "2026-03-10T14:00:11.000000Z"
    assert await dlrs(db, old) == [("perl000001", "DELIVRD", "gateway_id")]


async def test_group_commit_attaches_held_receipts_only_to_their_own_ids(db):
    ids = await queue(db, 3, at=T_PLUS(1))
    rows = await claim(db, "w", 10, 30, T_PLUS(1))
    assert await db.outbox.record_dlr("gw-c", "UNDELIV", T_PLUS(2)) is None
    items = [(r["attempt_id"], {"now": T_PLUS(3), "owner": "w", **accepted(gw)})
             for r, gw in zip(rows, ("gw-a", "gw-b", "gw-c"), strict=True)]
    assert await db.outbox.finish_attempts(items) == [None, None, None]
    assert [(await db.outbox.get(i))["dlr_state"] for i in ids] == [None, None, "UNDELIV"]
    assert await dlrs(db, ids[2]) == [("gw-c", "UNDELIV", "early")]


async def test_a_receipt_held_before_the_attempt_started_is_not_this_messages(db):
    assert await db.outbox.record_dlr("perl000007", "DELIVRD", T_PLUS(1)) is None
    oid = await send(db, "perl000007", T_PLUS(5))  # attempt started after the receipt arrived
    assert await db.outbox.dlrs(oid) == []
    assert (await all_receipts(db)) == [("perl000007", "DELIVRD", None, None, 0)]


async def test_receipts_for_each_part_of_a_message_sent_in_parts(db):
    oid = await send(db, "p1,p2", T_PLUS(0))
    assert await db.outbox.record_dlr("p2", "ENROUTE", T_PLUS(2)) == oid
    assert await db.outbox.record_dlr("p1", "DELIVRD", T_PLUS(3)) == oid
    assert await db.outbox.record_dlr("p2", "ENROUTE", T_PLUS(4)) == oid  # p2 has no final receipt yet
    assert (await db.outbox.get(oid))["dlr_state"] == "DELIVRD"  # en route does not replace a final state
    assert await db.outbox.record_dlr("p2", "DELIVRD", T_PLUS(5)) == oid
    assert await db.outbox.record_dlr("p1", "DELIVRD", T_PLUS(6)) is None  # p1 has its final receipt
    assert [(g, s) for g, s, _ in await dlrs(db, oid)] == [
        ("p2", "ENROUTE"), ("p1", "DELIVRD"), ("p2", "ENROUTE"), ("p2", "DELIVRD")]


async def test_held_receipts_expire_and_are_never_attached_after(db):
    oid = await send(db, "gw-9", T_PLUS(0))
    assert await db.outbox.record_dlr("gw-9", "DELIVRD", T_PLUS(2), "id:gw-9 stat:DELIVRD") == oid
    assert await db.outbox.record_dlr("gw-9", "DELIVRD", T_PLUS(3), "id:gw-9 stat:DELIVRD") is None  # sent again
    assert await db.outbox.record_dlr("gw-x", "DELIVRD", T_PLUS(4)) is None  # nobody's
    assert await db.outbox.expire_held_receipts(T_PLUS(60), 120) == []  # not held long enough
    gone = await db.outbox.expire_held_receipts(T_PLUS(200), 120)
    assert [(g["gateway_message_id"], g["same_as_outbox_id"]) for g in gone] == [("gw-9", oid), ("gw-x", None)]
    assert await db.outbox.expire_held_receipts(T_PLUS(300), 120) == []
    # an acceptance with that id now does not pick up the expired receipt
    [new] = await queue(db, 1, at=T_PLUS(1))
    [row] = await claim(db, "w", 1, 30, T_PLUS(1))
    await answer(db, row, T_PLUS(301), **accepted("gw-x"))
    assert await db.outbox.dlrs(new) == []
    with pytest.raises(ValueError):
        await db.outbox.expire_held_receipts(T_PLUS(300), 0)


async def test_receipt_found_by_idempotency_key_when_no_row_has_the_id(db):
    oid = await send(db, "gw-1", T_PLUS(0))
    key = (await db.outbox.get(oid))["idempotency_key"]
    assert await db.outbox.record_dlr("provider-42", "DELIVRD", T_PLUS(2), idempotency_key=key) == oid
    assert await dlrs(db, oid) == [("provider-42", "DELIVRD", "idempotency_key")]


async def test_reclaim_own_ends_only_that_owners_leases(db):
    ids = await queue(db, 3)
    await claim(db, "host:mine", 2, 60, T_PLUS(1))
    await claim(db, "host:other", 1, 60, T_PLUS(1))
    assert await db.outbox.reclaim_own("host:mine", T_PLUS(2)) == 2
    assert await db.outbox.reclaim_own("host:mine", T_PLUS(2)) == 0
    rows = await claim(db, "host:mine", 10, 60, T_PLUS(3))
    assert [r["id"] for r in rows] == ids[:2]  # at once, not after the 60 s lease
    assert all(r["previous_unknown"] for r in rows)  # the dead life's attempts may have gone out
    assert (await db.outbox.get(ids[2]))["lease_owner"] == "host:other"
    with pytest.raises(ValueError):
        await db.outbox.reclaim_own("", T_PLUS(3))


def test_migration_keeps_existing_receipts_and_holds_the_unmatched(tmp_path):
    import sqlite3

    from callproof.storage.schema import load_migrations, migrate

    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, load_migrations()[:4])  # a database written before receipts were matched this way
    conn.executemany("INSERT INTO sms_dlrs (outbox_id, gateway_message_id, status, received_at) VALUES (?, ?, ?, ?)",
                     [(7, "gw-1", "DELIVRD", T0), (7, "gw-1", "ENROUTE", T0), (None, "gw-2", "UNDELIV", T0)])
    migrate(conn)
    assert conn.execute("SELECT outbox_id, final, matched_by, expired_at FROM sms_dlrs ORDER BY id").fetchall() == [
        (7, 1, "gateway_id", None), (7, 0, "gateway_id", None), (None, 1, None, None)]
    conn.close()
