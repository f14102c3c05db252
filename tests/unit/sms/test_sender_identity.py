"""The sender's name and receipts (on SQLite and PostgreSQL): a named sender takes back at once what its
killed earlier life held (and a second process with the same name does not),
a receipt waits for the acceptance on the wire it may belong to, held
receipts expire with a log line."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time

import pytest

from callproof.sms import OutboxSender, SendResult
from callproof.sms.identity import SenderIdentity
from callproof.storage import Database

from .test_sender import MOBILE, Clock, Scripted, queue

HOST = socket.gethostname()


@pytest.fixture
async def db(target):
    """The outbox on SQLite and on PostgreSQL (tests/conftest.py)."""
    async with Database.open(target) as database:
        yield database


def named(db, backend, clock, instance="node1", **kw):
    kw.setdefault("lease_seconds", 60)
    return OutboxSender(db, backend, clock=clock, instance=instance, **kw)


def test_one_process_holds_a_name_at_a_time(tmp_path):
    path = str(tmp_path / "cp.db")
    first = SenderIdentity.acquire(path, "node1")
    assert (first.owner, first.exclusive) == (f"{HOST}:node1", True)
    lock = tmp_path / f"cp.db.sms-sender-{HOST}-node1.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    second = SenderIdentity.acquire(path, "node1")  # the same name while the first runs
    assert (second.owner, second.exclusive) == (f"{HOST}:node1:{os.getpid()}", False)
    other = SenderIdentity.acquire(path, "node2")
    assert other.exclusive
    first.release()
    third = SenderIdentity.acquire(path, "node1")  # the first is gone: the name is free
    assert third.exclusive and third.owner == f"{HOST}:node1"
    assert not SenderIdentity.acquire(":memory:", "node1").exclusive
    with pytest.raises(ValueError):
        SenderIdentity.acquire(path, "../etc")
    for ident in (second, other, third):
        ident.release()


async def test_restarted_sender_takes_back_its_rows_at_once(db):
    ids = await queue(db, 3)
    clock = Clock()
    # an earlier life of "node1" claimed two rows (attempts written) and was killed
    held = await db.outbox.claim_for_send(f"{HOST}:node1", 2, 60, clock.now.isoformat(), "scripted")
    await db.outbox.claim_for_send(f"{HOST}:node2", 1, 60, clock.now.isoformat(), "scripted")
    backend = Scripted()
    s = named(db, backend, clock)
    task = asyncio.create_task(s.run())
    try:
        for _ in range(200):
            if [(await db.outbox.get(i))["state"] for i in ids[:2]] == ["sent", "sent"]:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert clock.now == Clock().now  # no time passed: the 60 s lease was not waited out
    assert sorted(c["id"] for c in backend.calls) == [r["id"] for r in held]
    assert all(c["previous_unknown"] for c in backend.calls)  # the killed life may have sent them
    for oid in ids[:2]:
        assert [a["outcome"] for a in await db.outbox.attempts(oid)] == ["unknown", "accepted"]
    row = await db.outbox.get(ids[2])  # another sender's row waits for its lease
    assert (row["state"], row["lease_owner"]) == ("sending", f"{HOST}:node2")
    s.identity.release()


async def test_a_second_process_with_the_same_name_takes_nothing_back(db):
    [oid] = await queue(db, 1)
    clock = Clock()
    first = named(db, Scripted(), clock)
    await db.outbox.claim_for_send(first.owner, 1, 60, clock.now.isoformat(), "scripted")  # first's own row
    backend = Scripted()
    second = named(db, backend, clock)
    assert second.owner != first.owner and not second.identity.exclusive
    task = asyncio.create_task(second.run())
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert backend.calls == []
    assert (await db.outbox.get(oid))["lease_owner"] == first.owner
    with pytest.raises(ValueError):
        OutboxSender(db, backend, owner="x", instance="node1")
    first.identity.release()


class ReceiptFirst:
    """An SMSC that sends the receipt before the answer carrying the message id
    (the id it gives out is always the same, as after a restart)."""

    name = "receipt-first"

    def __init__(self, gw="perl000001"):
        self.gw = gw
        self.sender: OutboxSender | None = None
        self.receipts: list[asyncio.Task] = []

    async def send(self, message):
        assert self.sender is not None
        self.receipts.append(asyncio.create_task(self.sender.record_receipt(self.gw, "DELIVRD", "stat:DELIVRD")))
        await asyncio.sleep(0.05)  # the receipt is in before the answer
        return SendResult(accepted=True, gateway_message_id=self.gw)

    async def close(self):
        pass


async def test_a_receipt_ahead_of_its_acceptance_waits_for_it(db):
    old, new = await queue(db, 2)
    clock = Clock()
    backend = ReceiptFirst()
    s = OutboxSender(db, backend, clock=clock, owner="w", window=1, batch_size=1, lease_seconds=30)
    backend.sender = s
    # the first message got perl000001 and its receipt never came
    [row] = await db.outbox.claim_for_send("w", 1, 30, clock.now.isoformat(), "x")
    await db.outbox.finish_attempt(row["attempt_id"], outcome="accepted", row_state="sent",
                                   now=clock.now.isoformat(), owner="w", gateway_message_id="perl000001")
    assert await s.drain_once() == 1  # the second message: perl000001 again, receipt first
    await asyncio.gather(*backend.receipts)
    assert (await db.outbox.get(new))["dlr_state"] == "DELIVRD"
    assert [d["matched_by"] for d in await db.outbox.dlrs(new)] == ["reused_id"]
    assert (await db.outbox.get(old))["dlr_state"] is None and await db.outbox.dlrs(old) == []


async def test_held_receipts_expire_with_a_log_line_without_numbers(db, caplog):
    clock = Clock()
    s = OutboxSender(db, Scripted(), clock=clock, owner="w", receipt_hold_seconds=30)
    await s.record_receipt("gw-nobody", "DELIVRD", f"id:gw-nobody stat:DELIVRD {MOBILE}")
    assert await s.expire_held_receipts() == 0
    clock.advance(31)
    with caplog.at_level(logging.WARNING, logger="callproof.sms"):
        assert await s.expire_held_receipts() == 1
    [rec] = [r for r in caplog.records if r.getMessage() == "sms.dlr_unmatched"]
    assert rec.fields["gateway_message_id"] == "gw-nobody" and rec.fields["same_as_outbox_id"] is None
    assert MOBILE[1:] not in repr(rec.fields)
    with pytest.raises(ValueError):
        OutboxSender(db, Scripted(), owner="w", receipt_hold_seconds=0)


async def test_closing_a_sender_gives_up_its_name(db):
    s = named(db, Scripted(), Clock())
    assert s.identity.exclusive and not named(db, Scripted(), Clock()).identity.exclusive
    await s.close()
    again = named(db, Scripted(), Clock())
    assert again.identity.exclusive and again.owner == s.owner
    await again.close()


async def test_a_name_is_held_by_one_sender_on_either_engine(db):
    """The same rule on SQLite (a lock file beside it) and PostgreSQL (a session advisory
    lock, storage/named_locks.py): one holder at a time, free again once it lets go."""
    first = SenderIdentity.for_database(db, "node7")
    second = SenderIdentity.for_database(db, "node7")
    try:
        assert (first.owner, first.exclusive) == (f"{HOST}:node7", True)
        assert (second.owner, second.exclusive) == (f"{HOST}:node7:{os.getpid()}", False)
        assert SenderIdentity.for_database(db, "node8").exclusive
        first.release()
        third = SenderIdentity.for_database(db, "node7")
        assert third.exclusive and third.owner == f"{HOST}:node7"
        third.release()
    finally:
        first.release()
        second.release()


def test_a_killed_holder_frees_its_name_on_postgresql(pg_cluster):
    """A sender SIGKILLed while it holds its name on PostgreSQL: the server ends its session,
    so the restarted sender holds the name at once (and takes back its rows)."""
    import signal
    import subprocess
    import sys

    from callproof.storage.named_locks import try_hold_name

    url = pg_cluster.new_database()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom callproof.storage.named_locks import try_hold_name\n"
         "held = try_hold_name(sys.argv[1], 'sms-sender h:n1')\nassert held\n"
         "print('held', flush=True)\ntime.sleep(60)", url],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_hold_name(url, "sms-sender h:n1") is None  # the live holder has it
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        for _ in range(100):  # the server notices the closed socket at once; allow it a moment
            held = try_hold_name(url, "sms-sender h:n1")
            if held is not None:
                break
            time.sleep(0.05)
        assert held is not None
        held.release()
    finally:
        holder.kill()
        holder.wait()
        pg_cluster.drop(url)
