"""OutboxSender rules: attempts persisted first, exactly one accepted send per
row, throttling does not burn attempts, back-off, dead letter, operator retry."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from callproof.sms import OutboxSender, SendResult
from callproof.storage import Database, InvalidStateError, NewCall, SmsDraft

T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
MOBILE = "+5511912345678"


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


class Scripted:
    """A backend answering from a script (one answer per call; the last repeats)."""

    name = "scripted"

    def __init__(self, *answers, delay=0.0):
        self.answers = list(answers) or [SendResult(accepted=True, gateway_message_id="g")]
        self.calls = []
        self.delay = delay
        self.max_concurrent = 0
        self._now = 0

    async def send(self, message):
        self.calls.append(dict(message))
        self._now += 1
        self.max_concurrent = max(self.max_concurrent, self._now)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if isinstance(answer, BaseException):
                raise answer
            if answer.accepted and answer.gateway_message_id == "g":
                return SendResult(accepted=True, gateway_message_id=f"g{message['id']}")
            return answer
        finally:
            self._now -= 1

    async def close(self):
        pass


@pytest.fixture
async def db(target):
    """The outbox on SQLite and on PostgreSQL (tests/conftest.py)."""
    async with Database.open(target, now=lambda: "2026-03-10T14:00:00Z") as database:
        yield database


async def queue(db, n):
    ids = []
    for i in range(n):
        call_id = await db.calls.create(NewCall(f"c{i}", None, None, MOBILE, MOBILE, None, None,
                                                "pt_BR", "2026-03-10T14:00:00Z"))
        r = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at="2026-03-10T14:00:00Z",
                                                 sms=SmsDraft(MOBILE, "pt_BR", lambda p: f"Protocolo {p}"))
        ids.append(r.outbox_id)
    return ids


def sender(db, backend, clock, **kw):
    kw.setdefault("lease_seconds", 30)
    return OutboxSender(db, backend, clock=clock, rng=random.Random(1), owner="w1", **kw)


async def test_success_persists_attempt_and_key(db):
    [oid] = await queue(db, 1)
    backend, clock = Scripted(), Clock()
    assert await sender(db, backend, clock).drain_once() == 1
    row = await db.outbox.get(oid)
    assert row["state"] == "sent" and row["gateway_message_id"] == f"g{oid}"
    [att] = await db.outbox.attempts(oid)
    assert att["outcome"] == "accepted" and att["attempt_no"] == 1
    assert att["idempotency_key"] == f"cp-{row['protocol']}-{oid}"
    assert backend.calls[0]["idempotency_key"] == att["idempotency_key"]
    # nothing is sent twice: a second pass finds nothing
    assert await sender(db, backend, clock).drain_once() == 0
    assert len(backend.calls) == 1


async def test_transient_backs_off_then_succeeds(db):
    [oid] = await queue(db, 1)
    backend = Scripted(SendResult(accepted=False, reason="503"), SendResult(accepted=True, gateway_message_id="g"))
    clock = Clock()
    s = sender(db, backend, clock, backoff_base=2.0)
    await s.drain_once()
    row = await db.outbox.get(oid)
    assert row["state"] == "pending" and row["reason"] == "503"
    due = datetime.fromisoformat(row["next_attempt_at"].replace("Z", "+00:00"))
    assert 1.0 <= (due - T0).total_seconds() <= 3.0  # 2 s base with +-50 % jitter
    assert await s.drain_once() == 0  # not due yet
    clock.advance(3)
    assert await s.drain_once() == 1
    assert (await db.outbox.get(oid))["state"] == "sent"
    assert [a["outcome"] for a in await db.outbox.attempts(oid)] == ["transient", "accepted"]


async def test_max_attempts_then_dead_and_operator_retry(db):
    [oid] = await queue(db, 1)
    backend, clock = Scripted(SendResult(accepted=False, reason="down")), Clock()
    s = sender(db, backend, clock, max_attempts=3, backoff_max=1)
    for _ in range(5):
        await s.drain_once()
        clock.advance(2)
    row = await db.outbox.get(oid)
    assert row["state"] == "dead" and row["attempts"] == 3 and len(backend.calls) == 3
    assert [r["id"] for r in await db.outbox.list("dead")] == [oid]
    await db.outbox.retry([oid], clock.now.isoformat())
    backend.answers = [SendResult(accepted=True, gateway_message_id="g")]
    assert await s.drain_once() == 1
    assert (await db.outbox.get(oid))["state"] == "sent"
    with pytest.raises(InvalidStateError, match="only dead or failed"):
        await db.outbox.retry([oid], clock.now.isoformat())


async def test_permanent_rejection_is_dead_at_once(db):
    [oid] = await queue(db, 1)
    backend = Scripted(SendResult(accepted=False, permanent=True, reason="invalid destination"))
    await sender(db, backend, Clock()).drain_once()
    row = await db.outbox.get(oid)
    assert row["state"] == "dead" and row["reason"] == "invalid destination"
    assert [a["outcome"] for a in await db.outbox.attempts(oid)] == ["rejected"]


async def test_max_age_expires(db):
    [oid] = await queue(db, 1)
    backend, clock = Scripted(), Clock()
    clock.advance(7200)
    await sender(db, backend, clock, max_age_seconds=3600).drain_once()
    row = await db.outbox.get(oid)
    assert row["state"] == "dead" and row["reason"].startswith("expired") and backend.calls == []


async def test_throttle_does_not_burn_attempts_and_pauses(db):
    ids = await queue(db, 2)
    backend = Scripted(SendResult(accepted=False, throttled=True, retry_after=5, reason="429"),
                       SendResult(accepted=True, gateway_message_id="g"))
    clock = Clock()
    s = sender(db, backend, clock, max_attempts=1)
    await s.drain_once()
    row = await db.outbox.get(ids[0])
    assert row["state"] == "pending" and row["attempts"] == 0 and row["throttled"] == 1
    assert s._pause_until == T0 + timedelta(seconds=5)
    clock.advance(5)
    for _ in range(3):
        await s.drain_once()
    # max_attempts=1 and still sent: the throttled answer did not count
    assert [(await db.outbox.get(i))["state"] for i in ids] == ["sent", "sent"]


async def test_window_bounds_concurrency(db):
    await queue(db, 12)
    backend = Scripted(delay=0.02)
    s = sender(db, backend, Clock(), window=4, batch_size=50)
    assert await s.drain_once() == 12
    assert backend.max_concurrent == 4
    one = Scripted(delay=0.0)
    assert one.max_concurrent == 0


async def test_timeout_is_unknown_and_resent_with_same_key(db):
    [oid] = await queue(db, 1)
    backend, clock = Scripted(SendResult(accepted=True, gateway_message_id="g"), delay=0.3), Clock()
    s = sender(db, backend, clock, send_timeout=0.05, backoff_base=1)
    await s.drain_once()
    [att] = await db.outbox.attempts(oid)
    assert att["outcome"] == "unknown"
    backend.delay = 0
    clock.advance(5)
    await s.drain_once()
    atts = await db.outbox.attempts(oid)
    assert [a["outcome"] for a in atts] == ["unknown", "accepted"]
    assert backend.calls[1]["previous_unknown"] and backend.calls[1]["idempotency_key"] == att["idempotency_key"]


async def test_crashed_sender_attempt_becomes_unknown(db):
    [oid] = await queue(db, 1)
    clock = Clock()
    # a sender claims and persists its attempt, then dies (never finishes)
    [claimed] = await db.outbox.claim_for_send("dead-worker", 1, 30, clock.now.isoformat(), "scripted")
    assert claimed["id"] == oid
    backend = Scripted()
    s = sender(db, backend, clock)
    assert await s.drain_once() == 0  # leased: nobody else touches it
    clock.advance(31)
    assert await s.drain_once() == 1
    atts = await db.outbox.attempts(oid)
    assert [a["outcome"] for a in atts] == ["unknown", "accepted"]
    assert backend.calls[0]["previous_unknown"] is True
    # the dead worker's late write-back is refused
    with pytest.raises(InvalidStateError):
        await db.outbox.finish_attempt(atts[0]["id"], outcome="accepted", row_state="sent",
                                       now=clock.now.isoformat(), owner="dead-worker")


async def test_two_senders_never_send_the_same_row(tmp_path):
    async with Database.open(tmp_path / "cp.db") as db1, Database.open(tmp_path / "cp.db") as db2:
        ids = await queue(db1, 30)
        b1, b2 = Scripted(delay=0.001), Scripted(delay=0.001)
        s1 = OutboxSender(db1, b1, owner="a", window=3, lease_seconds=30, max_age_seconds=1e9)
        s2 = OutboxSender(db2, b2, owner="b", window=3, lease_seconds=30, max_age_seconds=1e9)
        await asyncio.gather(s1.drain_once(), s2.drain_once(), s1.drain_once(), s2.drain_once())
        sent = [c["id"] for c in b1.calls + b2.calls]
        assert sorted(sent) == ids


async def test_receipt_recorded_against_row(db):
    [oid] = await queue(db, 1)
    s = sender(db, Scripted(), Clock())
    await s.drain_once()
    await s.record_receipt(f"g{oid}", "DELIVRD", "stat:DELIVRD")
    await s.record_receipt("unknown-id", "DELIVRD")
    row = await db.outbox.get(oid)
    assert row["dlr_state"] == "DELIVRD"
    assert [d["status"] for d in await db.outbox.dlrs(oid)] == ["DELIVRD"]
    c = await db.outbox.counters()
    assert c["attempts"]["accepted"] == 1 and c["dlrs"]["DELIVRD"] == 2


async def test_rows_claimed_but_not_sent_when_throttled_are_given_back(db):
    ids = await queue(db, 3)
    backend = Scripted(SendResult(accepted=False, throttled=True, retry_after=5, reason="429"),
                       SendResult(accepted=True, gateway_message_id="g"))
    clock = Clock()
    s = sender(db, backend, clock, window=1)
    assert await s.drain_once() == 3  # all three claimed in one step, only the first sent
    assert [c["id"] for c in backend.calls] == ids[:1]
    for oid in ids[1:]:
        row = await db.outbox.get(oid)
        assert (row["state"], row["attempts"], row["throttled"], row["lease_owner"]) == ("pending", 0, 0, None)
        assert row["next_attempt_at"] == "2026-03-10T14:00:05.000000Z"
        assert await db.outbox.attempts(oid) == []  # never sent: no attempt on record
    clock.advance(5)
    assert await s.drain_once() == 3
    assert [(await db.outbox.get(i))["state"] for i in ids] == ["sent"] * 3
    assert [a["outcome"] for a in await db.outbox.attempts(ids[0])] == ["throttled", "accepted"]


async def test_pipeline_keeps_the_window_full_across_claims(db):
    ids = await queue(db, 30)
    backend = Scripted(delay=0.005)
    s = sender(db, backend, Clock(), window=4, batch_size=8)  # several claims while sends are in flight
    assert await s.drain_once() == 30
    assert backend.max_concurrent == 4
    assert sorted(c["id"] for c in backend.calls) == ids
    assert {(await db.outbox.get(i))["state"] for i in ids} == {"sent"}


async def test_a_backend_that_raises_at_submit_leaves_the_attempt_unknown(db):
    [oid] = await queue(db, 1)

    class Broken:
        name = "broken"

        def submit(self, message):
            raise RuntimeError("encoder bug")

        async def close(self):
            pass

    s = sender(db, Broken(), Clock(), backoff_base=1)
    assert await s.drain_once() == 1
    row = await db.outbox.get(oid)
    assert row["state"] == "pending" and "encoder bug" in row["reason"]
    assert [a["outcome"] for a in await db.outbox.attempts(oid)] == ["unknown"]


async def test_rows_claimed_too_long_ago_are_given_back_not_sent_outside_their_lease(db):
    ids = await queue(db, 8)
    backend = Scripted(delay=0.1)
    # a row may be sent only while its answer still fits in the lease: 1 s - 0.7 s = 0.3 s after the claim
    s = sender(db, backend, Clock(), window=1, batch_size=8, lease_seconds=1, send_timeout=0.7)
    tried = 0
    for _ in range(20):
        if [(await db.outbox.get(i))["state"] for i in ids] == ["sent"] * len(ids):
            break
        tried += await s.drain_once()
    assert sorted(c["id"] for c in backend.calls) == ids  # each sent exactly once
    assert tried > len(ids)  # some were claimed, given back and claimed again
    for oid in ids:
        # a row given back has no attempt left behind: only the one that was sent
        assert [a["outcome"] for a in await db.outbox.attempts(oid)] == ["accepted"]
        assert (await db.outbox.get(oid))["attempts"] == 1
