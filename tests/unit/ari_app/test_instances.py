"""ari_app.instances: the heartbeat, the takeover of a dead instance's calls, claims --
against a real SQLite file and a fake ARI that records what it was asked."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from callproof.ari_app.ari import ChannelGone
from callproof.ari_app.instances import Instances
from callproof.storage import NewCall


class FakeAri:
    def __init__(self, kept: dict[str, list[str]], gone: set[str] = frozenset()):
        self.kept, self.gone, self.moves, self.claims = kept, set(gone), [], []

    async def application_channel_ids(self, app=None):
        return list(self.kept.get(app, []))

    async def move(self, channel_id, app):
        if channel_id in self.gone:
            raise ChannelGone("Channel not found")
        self.moves.append((channel_id, app))

    async def claim(self, channel_id):
        self.claims.append(channel_id)
        return len(self.claims) == 1


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture
def config(config):
    return replace(config, ari=replace(config.ari, app="cp", heartbeat_seconds=1.0, lease_seconds=5.0))


def instance(config, db, clock, ari, name, connected=True, lost=None, settled=None):
    cfg = replace(config, ari=replace(config.ari, instance=name))
    event = asyncio.Event()
    if connected:
        event.set()

    async def on_lost():
        (lost if lost is not None else []).append(name)

    async def on_taken_over(app, channels):
        (settled if settled is not None else []).append((app, sorted(channels)))

    return Instances(cfg, db, clock, session=lambda: ari, connected=event, on_lost=on_lost,
                     on_taken_over=on_taken_over)


async def test_a_survivor_moves_a_dead_instances_calls_once_and_releases_its_lease(config, db):
    clock, settled = Clock(), []
    await db.calls.create(NewCall(channel_id="1.1", uniqueid="1.1", linkedid="1.1", caller_number_raw="",
                                  caller_number=None, caller_name=None, dialled_number="4000", language="en",
                                  started_at=clock.now, served_by="ari", ari_app="cp_a"))
    ari = FakeAri({"cp_a": ["1.1", "1.2"]}, gone={"1.2"})
    a = instance(config, db, clock, ari, "a")
    b = instance(config, db, clock, ari, "b", settled=settled)
    c = instance(config, db, clock, ari, "c")
    for inst in (a, b, c):
        await inst.acquire_own()
    clock.now += timedelta(seconds=4)  # a is still within its lease: b and c leave it alone
    await b.beat()
    await c.beat()
    assert ari.moves == []
    clock.now += timedelta(seconds=2)  # a missed its heartbeats for longer than the lease
    await b.beat()
    await c.beat()  # the lease is b's now (then released): c moves nothing
    assert ari.moves == [("1.1", "cp_b")]
    assert settled == [("cp_a", ["1.1", "1.2"])]
    assert (await db.calls.get_by_channel("1.1"))["ari_app"] == "cp_b"
    assert [t["outcome"] for t in await db.ari_leases.takeovers("1.2")] == ["gone"]
    lease = await db.ari_leases.get("cp_a")
    assert (lease.holder, lease.state) == ("cp_b", "released")
    clock.now += timedelta(seconds=10)
    await c.beat()
    assert ari.moves == [("1.1", "cp_b")]  # a released lease is not taken over again


async def test_an_instance_not_connected_to_ari_takes_nothing_over(config, db):
    clock, ari = Clock(), FakeAri({"cp_a": ["1.1"]})
    a = instance(config, db, clock, ari, "a")
    b = instance(config, db, clock, ari, "b", connected=False)
    await a.acquire_own()
    await b.acquire_own()
    clock.now += timedelta(seconds=6)
    await b.beat()
    assert ari.moves == [] and (await db.ari_leases.get("cp_a")).holder == "cp_a"


async def test_a_slow_instance_learns_it_lost_its_lease_and_waits_to_take_it_back(config, db):
    clock, lost, ari = Clock(), [], FakeAri({"cp_a": []})
    a = instance(config, db, clock, ari, "a", lost=lost)
    b = instance(config, db, clock, ari, "b")
    await a.acquire_own()
    await b.acquire_own()
    clock.now += timedelta(seconds=6)
    seen = (await db.ari_leases.expired(clock.now.isoformat()))
    assert await db.ari_leases.take_over(next(s for s in seen if s.app == "cp_a"), "cp_b", clock.now,
                                         clock.now + timedelta(seconds=5))
    await a.beat()
    assert lost == ["a"] and not a.owned
    waiting = asyncio.ensure_future(a.acquire_own())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # b is still moving a's calls
    await db.ari_leases.release("cp_a", "cp_b", clock.now)
    await asyncio.wait_for(waiting, 5)
    assert a.owned and (await db.ari_leases.get("cp_a")).holder == "cp_a"


async def test_claims_count_won_and_lost(config, db):
    ari = FakeAri({})
    b = instance(config, db, Clock(), ari, "b")
    await b.claim(ari, "9.1")
    await b.claim(ari, "9.2")
    assert b.claims == {"won": 1, "lost": 1}


async def test_an_instance_of_another_node_leaves_a_dead_instance_to_its_own_node(config, db):
    """Two nodes on one database: node b's instance cannot move calls on node a's Asterisk,
    so it never takes node a's leases; node a's survivor does."""
    clock = Clock()
    ari_a, ari_b = FakeAri({"cp_a1": ["1.1"]}), FakeAri({})
    on = {n: replace(config, recording=replace(config.recording, node=n)) for n in ("node-a", "node-b")}
    a1 = instance(on["node-a"], db, clock, ari_a, "a1")
    a2 = instance(on["node-a"], db, clock, ari_a, "a2")
    b1 = instance(on["node-b"], db, clock, ari_b, "b1")
    for inst in (a1, b1, a2):
        await inst.acquire_own()
    clock.now += timedelta(seconds=6)  # a1 dead; b1 beats first
    await b1.beat()
    assert (await db.ari_leases.get("cp_a1")).holder == "cp_a1" and ari_b.moves == []
    await a2.beat()
    assert ari_a.moves == [("1.1", "cp_a2")]
    assert [m["to_app"] for m in await db.ari_leases.takeovers("1.1")] == ["cp_a2"]
