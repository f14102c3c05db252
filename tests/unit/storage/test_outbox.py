"""storage.outbox: leased claims with their attempts, answers (sent, retry, dead), receipts."""

from __future__ import annotations

import asyncio

import pytest

from callproof.storage import Database, InvalidStateError, NewCall, NotFoundError, SmsDraft

T0 = "2026-03-10T14:00:00Z"
T_PLUS = lambda s: f"2026-03-10T14:{s // 60:02d}:{s % 60:02d}Z"  # noqa: E731
MOBILE = "+5511912345678"


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: T0) as database:
        yield database


async def queue(db, n, at=T0, destination=MOBILE):
    ids = []
    for i in range(n):
        call_id = await db.calls.create(NewCall(f"c{i}-{at}", None, None, MOBILE, MOBILE,
                                                None, None, "pt_BR", at))
        result = await db.protocols.allocate_for_call(
            call_id, year=2026, allocated_at=at,
            sms=SmsDraft(destination, "pt_BR", lambda p: f"Protocolo {p}"))
        ids.append(result.outbox_id)
    return ids


async def claim(db, owner, limit, lease_seconds, now, **kw):
    """A claim as the sender makes it (lease + one attempt per row)."""
    return await db.outbox.claim_for_send(owner, limit, lease_seconds, now, "smpp", **kw)


async def answer(db, row, now, owner="w", **kw):
    """Write the gateway's answer to a claimed row's attempt."""
    await db.outbox.finish_attempt(row["attempt_id"], now=now, owner=owner, **kw)


def accepted(gateway_message_id):
    return {"outcome": "accepted", "row_state": "sent", "gateway_message_id": gateway_message_id}


def retry(reason, next_attempt_at):
    return {"outcome": "transient", "row_state": "pending", "reason": reason,
            "next_attempt_at": next_attempt_at}


def dead(reason):
    return {"outcome": "rejected", "row_state": "dead", "reason": reason}


async def test_claim_leases_due_rows(db):
    ids = await queue(db, 3)
    claimed = await claim(db, "worker-a", 2, 30, T_PLUS(1))
    assert [r["id"] for r in claimed] == ids[:2]
    for row in claimed:
        assert row["state"] == "sending" and row["lease_owner"] == "worker-a"
        assert row["lease_until"] == "2026-03-10T14:00:31.000000Z"
        assert row["attempts"] == 1
    # the rest goes to the next claimer, leased rows are not handed out twice
    assert [r["id"] for r in await claim(db, "worker-b", 10, 30, T_PLUS(2))] == ids[2:]
    assert await claim(db, "worker-c", 10, 30, T_PLUS(3)) == []


async def test_not_due_yet(db):
    await queue(db, 1, at="2026-03-10T14:10:00Z")
    assert await claim(db, "w", 10, 30, T_PLUS(599)) == []
    assert len(await claim(db, "w", 10, 30, T_PLUS(600))) == 1


async def test_expired_lease_is_reclaimable(db):
    [oid] = await queue(db, 1)
    [first] = await claim(db, "crashed", 1, 30, T_PLUS(0))
    assert await claim(db, "other", 1, 30, T_PLUS(29)) == []
    [row] = await claim(db, "other", 1, 30, T_PLUS(30))
    assert row["id"] == oid and row["lease_owner"] == "other" and row["attempts"] == 2
    # the crashed worker comes back: its result is refused when it names itself
    with pytest.raises(InvalidStateError, match="leased by 'other'"):
        await answer(db, first, T_PLUS(31), owner="crashed", **accepted("gw-1"))
    await answer(db, row, T_PLUS(32), owner="other", **accepted("gw-2"))


async def test_two_owners_never_share_rows(db, tmp_path):
    await queue(db, 60)
    async with Database.open(db.path) as db2:
        async def drain(database, owner):
            got = []
            while batch := await claim(database, owner, 3, 60, T_PLUS(1)):
                got += [r["id"] for r in batch]
                await asyncio.sleep(0)
            return got

        a, b = await asyncio.gather(drain(db, "a"), drain(db2, "b"))
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(1, 61))


async def test_sent_retry_dead(db):
    a, b, c = await queue(db, 3)
    row_a, row_b, row_c = await claim(db, "w", 3, 30, T_PLUS(1))

    await answer(db, row_a, T_PLUS(2), **accepted("gw-123"))
    row = await db.outbox.get(a)
    assert (row["state"], row["gateway_message_id"], row["lease_owner"], row["lease_until"],
            row["updated_at"]) == ("sent", "gw-123", None, None, "2026-03-10T14:00:02.000000Z")
    with pytest.raises(InvalidStateError, match="'sent'"):
        await answer(db, row_a, T_PLUS(3), **accepted("gw-again"))

    await answer(db, row_c, T_PLUS(2), **dead("rejected: invalid number"))
    row = await db.outbox.get(c)
    assert (row["state"], row["reason"], row["next_attempt_at"], row["lease_owner"]) == (
        "dead", "rejected: invalid number", None, None)

    await answer(db, row_b, T_PLUS(2), **retry("gateway timeout", T_PLUS(120)))
    row = await db.outbox.get(b)
    assert (row["state"], row["reason"], row["next_attempt_at"], row["lease_owner"]) == (
        "pending", "gateway timeout", "2026-03-10T14:02:00.000000Z", None)
    assert await claim(db, "w", 10, 30, T_PLUS(119)) == []
    [again] = await claim(db, "w", 10, 30, T_PLUS(120))
    assert again["id"] == b and again["attempts"] == 2
    with pytest.raises(InvalidStateError):
        await answer(db, row_c, T_PLUS(3), **retry("x", T_PLUS(5)))
    with pytest.raises(NotFoundError):
        await db.outbox.finish_attempt(999, now=T_PLUS(3), owner="w", **dead("x"))


async def test_retry_needs_a_lease(db):
    [oid] = await queue(db, 1)
    [row] = await claim(db, "w", 1, 30, T_PLUS(1))
    await answer(db, row, T_PLUS(1), **retry("gateway timeout", T_PLUS(60)))  # pending again
    with pytest.raises(InvalidStateError, match="'pending'"):
        await answer(db, row, T_PLUS(2), **retry("x", T_PLUS(5)))
    # a row queued too long goes dead at the claim, from pending, with no attempt
    assert await claim(db, "w", 1, 30, T_PLUS(60), max_age_seconds=30) == []
    assert (await db.outbox.get(oid))["state"] == "dead"


async def test_get_for_protocol(db):
    [oid] = await queue(db, 1)
    row = await db.outbox.get(oid)
    assert [r["id"] for r in await db.outbox.get_for_protocol(row["protocol"])] == [oid]
    assert await db.outbox.get_for_protocol("20260000000000099") == []


async def test_claim_arguments(db):
    with pytest.raises(ValueError):
        await claim(db, "", 1, 30, T0)
    with pytest.raises(ValueError):
        await claim(db, "w", 0, 30, T0)
    with pytest.raises(ValueError):
        await claim(db, "w", 1, 0, T0)
    with pytest.raises(ValueError, match="naive"):
        await claim(db, "w", 1, 30, "2026-03-10T14:00:00")


async def test_claim_for_send_persists_one_attempt_per_row(db):
    ids = await queue(db, 3)
    rows = await db.outbox.claim_for_send("w", 10, 30, T_PLUS(1), "smpp")
    assert [r["id"] for r in rows] == ids
    for r in rows:
        [att] = await db.outbox.attempts(r["id"])
        assert (att["id"], att["attempt_no"], att["outcome"]) == (r["attempt_id"], 1, "in_flight")
        assert r["idempotency_key"] == att["idempotency_key"] and r["previous_unknown"] is False
    # the lease runs out with the attempts in flight: claimed again, they become 'unknown'
    again = await db.outbox.claim_for_send("w2", 10, 30, T_PLUS(40), "smpp")
    assert [(r["attempt_no"], r["previous_unknown"]) for r in again] == [(2, True)] * 3
    assert [a["outcome"] for a in await db.outbox.attempts(ids[0])] == ["unknown", "in_flight"]


async def test_group_finish_commits_the_allowed_and_reports_the_refused(db):
    ids = await queue(db, 4)
    rows = await db.outbox.claim_for_send("w", 10, 30, T_PLUS(1), "smpp")
    # row 2's lease is taken over by another sender before our answers are written
    await db.run_in_connection(lambda c: c.execute(
        "UPDATE sms_outbox SET lease_owner = 'other' WHERE id = ?", (ids[1],)))
    items = [(rows[0]["attempt_id"], {"outcome": "accepted", "row_state": "sent", "now": T_PLUS(2), "owner": "w",
                                          "gateway_message_id": "gw-0"}),
             (rows[1]["attempt_id"], {"outcome": "accepted", "row_state": "sent", "now": T_PLUS(2), "owner": "w",
                                          "gateway_message_id": "gw-1"}),
             (rows[2]["attempt_id"], {"outcome": "transient", "row_state": "pending", "now": T_PLUS(2), "owner": "w",
                                          "next_attempt_at": T_PLUS(60), "reason": "SMPP ESME_RSYSERR"}),
             (rows[3]["attempt_id"], {"outcome": "rejected", "row_state": "dead", "now": T_PLUS(2), "owner": "w"})]
    errors = await db.outbox.finish_attempts(items)
    assert errors[0] is None and errors[2] is None and errors[3] is None
    assert isinstance(errors[1], InvalidStateError) and "other" in str(errors[1])
    states = [(await db.outbox.get(i))["state"] for i in ids]
    assert states == ["sent", "sending", "pending", "dead"]
    assert [a["outcome"] for a in await db.outbox.attempts(ids[1])] == ["in_flight"]  # rolled back alone
    # later: row 2's lease ran out, row 3 is due again; nothing refused, one group
    rows = await db.outbox.claim_for_send("w", 10, 30, T_PLUS(61), "smpp")
    assert [r["id"] for r in rows] == [ids[1], ids[2]]
    assert await db.outbox.finish_attempts(
        [(rows[0]["attempt_id"], {"outcome": "accepted", "row_state": "sent", "now": T_PLUS(62), "owner": "w",
                                      "gateway_message_id": "gw-1b"}),
         (rows[1]["attempt_id"], {"outcome": "throttled", "row_state": "pending", "now": T_PLUS(62), "owner": "w",
                                      "next_attempt_at": T_PLUS(63)})]) == [None, None]
    assert [a["outcome"] for a in await db.outbox.attempts(ids[1])] == ["unknown", "accepted"]
    row = await db.outbox.get(ids[2])
    assert (row["state"], row["throttled"], row["attempts"]) == ("pending", 1, 1)


async def test_receipt_before_acceptance_is_attached_by_the_group_commit(db):
    ids = await queue(db, 2)
    rows = await db.outbox.claim_for_send("w", 10, 30, T_PLUS(1), "smpp")
    assert await db.outbox.record_dlr("gw-b", "DELIVRD", T_PLUS(2)) is None  # raced ahead
    assert await db.outbox.finish_attempts(
        [(r["attempt_id"], {"outcome": "accepted", "row_state": "sent", "now": T_PLUS(3), "owner": "w",
                                "gateway_message_id": gw})
         for r, gw in zip(rows, ("gw-a", "gw-b"), strict=True)]) == [None, None]
    assert (await db.outbox.get(ids[1]))["dlr_state"] == "DELIVRD"
    assert (await db.outbox.get(ids[0]))["dlr_state"] is None
    assert [d["outbox_id"] for d in await db.outbox.dlrs(ids[1])] == [ids[1]]


class _Statements:
    """A connection that notes each statement it runs."""

    def __init__(self, conn):
        self._conn, self.run = conn, []

    def execute(self, sql, params=()):
        self.run.append(sql.split()[0].upper())
        return self._conn.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._conn, name)


async def test_an_idle_poll_opens_no_transaction(db):
    """The sender's poll each second, when nothing is due: one read, no transaction (on
    PostgreSQL BEGIN, a locking SELECT and COMMIT were three round trips; SQLite took the
    write lock); once a row is due the claim is the locked transaction it was."""
    from callproof.storage.outbox import sender_step_sync

    await queue(db, 1, at="2026-03-10T14:10:00Z")
    claim = {"owner": "w", "limit": 10, "lease_seconds": 30, "now": T_PLUS(5), "backend": "smpp"}

    def step(conn, at):
        spy = _Statements(conn)
        _, rows = sender_step_sync(spy, claim={**claim, "now": at})
        return spy.run, rows, conn.in_transaction

    run, rows, open_after = await db.run_in_connection(step, T_PLUS(5))
    assert (run, rows, open_after) == (["SELECT"], [], False)
    run, rows, open_after = await db.run_in_connection(step, "2026-03-10T14:10:00Z")
    assert [r["state"] for r in rows] == ["sending"] and not open_after
    assert run[0] == "SELECT" and run[1] == "BEGIN" and run[-1] == "COMMIT"
    with pytest.raises(ValueError, match="owner"):  # its arguments are checked all the same
        await db.run_in_connection(lambda conn: sender_step_sync(conn, claim={**claim, "owner": ""}))


async def test_a_claim_sends_the_young_rows_and_lets_the_too_old_ones_die(db):
    [old] = await queue(db, 1, at=T0)
    [young] = await queue(db, 1, at=T_PLUS(50))
    rows = await claim(db, "w", 10, 30, T_PLUS(60), max_age_seconds=30)
    assert [r["id"] for r in rows] == [young]
    row = await db.outbox.get(old)
    assert (row["state"], row["reason"], row["attempts"]) == ("dead", "expired: not sent within 30 s", 0)
