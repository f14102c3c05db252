"""Time to agent from Asterisk's queue events: what the call row says afterwards."""

from __future__ import annotations

from datetime import timedelta

from callproof.callflow.queue_wait import QueueWatch
from callproof.storage import Database
from tests.call_rows import advance
from tests.unit.metrics.conftest import T0, new_call


async def handed_off(db: Database, n: int) -> int:
    cid = await new_call(db, n)
    await advance(db, cid, "handed_off", handed_off_at=T0)
    return cid


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):
        return self.now


async def test_answered_call_keeps_queue_join_and_answer_times(tmp_path):
    async with Database.open(tmp_path / "q.db") as db:
        cid = await handed_off(db, 1)
        clock, seen = Clock(), []
        watch = QueueWatch(db, clock=clock, observe=lambda outcome, s: seen.append((outcome, s)))
        clock.now = T0 + timedelta(seconds=1)
        watch.on_event(None, {"Event": "QueueCallerJoin", "Uniqueid": "uid-1", "Queue": "support"})
        await watch.drain()
        clock.now = T0 + timedelta(seconds=37)
        watch.on_event(None, {"Event": "AgentConnect", "Uniqueid": "uid-1", "Queue": "support"})
        await watch.drain()
        watch.on_event(None, {"Event": "QueueCallerAbandon", "Uniqueid": "uid-1", "Queue": "support"})
        await watch.drain()
        row = await db.calls.get(cid)
        assert row is not None
        assert row["queue_name"] == "support"
        assert row["queue_joined_at"] == "2026-03-02T12:00:01.000000Z"
        assert row["agent_answered_at"] == "2026-03-02T12:00:37.000000Z"
        assert row["queue_abandoned_at"] is None  # answered first: an abandon after it is not believed
        assert seen == [("answered", 37.0)]


async def test_abandoned_call_and_a_second_process_seeing_the_same_event(tmp_path):
    async with Database.open(tmp_path / "q2.db") as db:
        cid = await handed_off(db, 2)
        clock = Clock()
        clock.now = T0 + timedelta(seconds=95)
        seen_a, seen_b = [], []
        a = QueueWatch(db, clock=clock, observe=lambda o, s: seen_a.append((o, s)))
        b = QueueWatch(db, clock=clock, observe=lambda o, s: seen_b.append((o, s)))
        event = {"Event": "QueueCallerAbandon", "Uniqueid": "uid-2", "Queue": "sales"}
        a.on_event(None, event)
        await a.drain()
        b.on_event(None, event)
        await b.drain()
        row = await db.calls.get(cid)
        assert row is not None and row["queue_abandoned_at"] == "2026-03-02T12:01:35.000000Z"
        assert row["agent_answered_at"] is None
        assert seen_a == [("abandoned", 95.0)] and seen_b == []  # counted once


async def test_events_of_other_channels_and_other_events_change_nothing(tmp_path):
    async with Database.open(tmp_path / "q3.db") as db:
        cid = await handed_off(db, 3)
        watch = QueueWatch(db)
        watch.on_event(None, {"Event": "AgentConnect", "Uniqueid": "someone-else", "Queue": "support"})
        watch.on_event(None, {"Event": "Hangup", "Uniqueid": "uid-3"})
        watch.on_event(None, {"Event": "AgentConnect", "Queue": "support"})
        await watch.drain()
        row = await db.calls.get(cid)
        assert row is not None and row["agent_answered_at"] is None and row["queue_name"] is None


def test_agent_wait_as_shown_to_ops():
    from callproof.callflow.queue_wait import agent_wait

    assert agent_wait({"handed_off_at": None}) is None
    base = {"handed_off_at": "2026-03-02T12:00:00.000000Z", "queue_name": "support",
            "agent_answered_at": None, "queue_abandoned_at": None}
    assert agent_wait(base)["outcome"] == "not_seen"
    gave_up = agent_wait({**base, "queue_abandoned_at": "2026-03-02T12:03:20.000000Z"})
    assert gave_up["outcome"] == "abandoned" and gave_up["waited_seconds"] == 200.0
