"""storage.ari_leases: which instance holds which ARI application, on a real SQLite file;
two survivors racing for a dead instance's lease from two processes' connections."""

from __future__ import annotations

import threading

import pytest

from callproof.storage import Database, NewCall, connect_sync
from callproof.storage.ari_leases import (
    acquire_own_sync,
    expired_sync,
    record_takeover_sync,
    take_over_sync,
)

T0, T1, T2, T3 = ("2026-03-10T14:00:00.000000Z", "2026-03-10T14:00:05.000000Z",
                  "2026-03-10T14:00:10.000000Z", "2026-03-10T14:00:20.000000Z")


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: T0) as database:
        yield database


async def test_an_instance_holds_its_own_lease_and_a_live_one_is_never_taken(db):
    leases = db.ari_leases
    assert (await leases.acquire_own("cp_a", "cp_a", T0, T2)).holder == "cp_a"
    assert await leases.acquire_own("cp_a", "cp_b", T0, T2) is None  # another holder: refused
    assert await leases.renew("cp_a", T1, T3) == ["cp_a"]  # the heartbeat
    assert await leases.expired(T2) == []  # renewed until T3: not dead at T2
    seen = (await leases.get("cp_a"))
    assert not await leases.take_over(seen, "cp_b", T2, T3)  # not expired: not robbed
    assert (await leases.get("cp_a")).holder == "cp_a"


async def test_a_restart_within_the_lease_takes_it_back_at_once(db):
    first = await db.ari_leases.acquire_own("cp_a", "cp_a", T0, T2)
    again = await db.ari_leases.acquire_own("cp_a", "cp_a", T1, T3)
    assert again is not None and again.generation > first.generation and again.lease_until == T3


async def test_expired_lease_taken_over_released_then_reclaimed_by_its_instance(db):
    leases = db.ari_leases
    await leases.acquire_own("cp_a", "cp_a", T0, T1)
    [dead] = await leases.expired(T2)
    assert dead.app == "cp_a" and dead.holder == "cp_a"
    assert await leases.take_over(dead, "cp_b", T2, T3)
    assert not await leases.take_over(dead, "cp_c", T2, T3)  # the same lease seen: already taken
    assert await leases.renew("cp_a", T2, T3) == []  # cp_a, late, learns it lost it
    assert await leases.acquire_own("cp_a", "cp_a", T2, T3) is None  # cp_b still moving its calls
    assert await leases.renew("cp_b", T2, T3) == ["cp_a"]  # the survivor's heartbeat keeps it while moving
    assert await leases.release("cp_a", "cp_b", T2)
    assert await leases.expired(T3) == []  # released: nobody takes it over again
    assert (await leases.acquire_own("cp_a", "cp_a", T3, T3)).state == "held"


async def test_a_clean_stop_expires_the_lease_at_once(db):
    await db.ari_leases.acquire_own("cp_a", "cp_a", T0, T3)
    assert await db.ari_leases.expire("cp_a", "cp_a", T0)
    assert [lease.app for lease in await db.ari_leases.expired(T1)] == ["cp_a"]


async def test_a_moved_call_names_its_new_application(db):
    call_id = await db.calls.create(NewCall(
        channel_id="1700000000.7", uniqueid="1700000000.7", linkedid="1700000000.7", caller_number_raw="",
        caller_number=None, caller_name=None, dialled_number="4000", language="en", started_at=T0,
        served_by="ari", ari_app="cp_a"))
    await db.ari_leases.record_takeover("1700000000.7", "cp_a", "cp_b", T2, "moved")
    await db.ari_leases.record_takeover("1700000000.8", "cp_a", "cp_b", T2, "gone", "Channel not found")
    assert (await db.calls.get(call_id))["ari_app"] == "cp_b"
    [moved] = await db.ari_leases.takeovers("1700000000.7")
    assert (moved["from_app"], moved["to_app"], moved["outcome"]) == ("cp_a", "cp_b", "moved")
    with pytest.raises(ValueError, match="takeover outcome"):
        await db.ari_leases.record_takeover("x", "cp_a", "cp_b", T2, "stolen")


def test_two_survivors_racing_for_one_dead_lease_exactly_one_wins(tmp_path):
    """Two connections of their own (as two processes have) read the same expired lease and
    claim it at the same moment, round after round: each round exactly one wins."""
    path = tmp_path / "race.db"
    setup = connect_sync(path)
    rounds = 40
    for n in range(rounds):
        app = f"cp_dead{n}"
        acquire_own_sync(setup, app, app, T0, T1)
        barrier = threading.Barrier(2)
        results: list[tuple[str, bool]] = []

        def survivor(me: str, app: str = app, barrier: threading.Barrier = barrier,
                     results: list[tuple[str, bool]] = results) -> None:
            conn = connect_sync(path)
            try:
                seen = next(lease for lease in expired_sync(conn, T2) if lease.app == app)
                barrier.wait()
                won = take_over_sync(conn, seen, me, T2, T3)
                if won:
                    record_takeover_sync(conn, f"chan-{app}", app, me, T2, "moved")
                results.append((me, won))
            finally:
                conn.close()

        threads = [threading.Thread(target=survivor, args=(f"cp_s{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [me for me, won in results if won]
        assert len(results) == 2 and len(winners) == 1, results
        holder = setup.execute("SELECT holder FROM ari_leases WHERE app = ?", (app,)).fetchone()[0]
        assert holder == winners[0]
        moves = setup.execute("SELECT to_app FROM ari_takeovers WHERE from_app = ?", (app,)).fetchall()
        assert moves == [(winners[0],)]  # the dead one's call moved once, by the winner
    setup.close()


async def test_a_lease_names_its_node_and_takeovers_look_at_their_own_node_only(db):
    leases = db.ari_leases
    await leases.acquire_own("cp_a1", "cp_a1", T0, T1, "node-a")
    await leases.acquire_own("cp_b1", "cp_b1", T0, T1, "node-b")
    assert (await leases.get("cp_a1")).node == "node-a"
    assert [lease.app for lease in await leases.expired(T2, "node-b")] == ["cp_b1"]  # not node a's
    assert [lease.app for lease in await leases.expired(T2, "node-a")] == ["cp_a1"]
    assert [lease.app for lease in await leases.expired(T2)] == ["cp_a1", "cp_b1"]
