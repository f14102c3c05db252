"""Several nodes' processes on one real PostgreSQL (issue "several Asterisk nodes"):

* protocols: 2 nodes x 4 processes allocate at once (async and sync APIs), processes are
  SIGKILLed at random and restarted, and the server itself is restarted in the middle;
  afterwards the year's protocols are exactly 1..N, each used by exactly one call, each
  with its one SMS row, and the audit chain the processes appended to is intact;
* SMS: 4 senders claim the same outbox; each row is claimed by one sender, and the rows
  of a sender killed while holding them are taken over once their lease has run out.

The "nodes" are process groups with their own names on this machine: what the guarantees
rest on -- the row lock of the year's counter, ``FOR UPDATE SKIP LOCKED``, the advisory
lock of the audit chain -- lives in the server, which every process reaches by its socket
as a remote node would by TCP.

This file doubles as the worker script (``python test_pg_scale_out.py alloc|send ...``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
YEAR = 2026
AT = "2026-06-01T12:00:00Z"
MOBILE = "+5511912345678"
NODES, PER_NODE = 2, 4
LEASE_SECONDS = 2.0


# ---------------------------------------------------------------- workers --

def _retrying(fn, *args, **kwargs):
    """Storage calls go on across a server restart: a failed step is tried again."""
    from callproof.storage import is_storage_error

    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            time.sleep(0.05)


def _alloc_sync(url: str, name: str, stop: Path) -> None:
    from callproof.storage import NewCall, SmsDraft, allocate_sync, connect_sync
    from callproof.storage.audit import append_sync
    from callproof.storage.calls import create_sync

    conn = _retrying(connect_sync, url, busy_timeout_ms=60_000)
    i = 0
    while not stop.exists():
        call = NewCall(f"{name}-{i}", f"{name}.{i}", f"{name}.{i}", MOBILE, MOBILE, None, "4000", "pt_BR", AT)
        call_id = _retrying(create_sync, conn, call, AT)
        got = _retrying(allocate_sync, conn, year=YEAR, allocated_at=AT, call_id=call_id,
                        sms=SmsDraft(MOBILE, "pt_BR", lambda p: f"Protocolo {p}"))
        _retrying(append_sync, conn, "protocol.allocated", name, AT, protocol=got.protocol)
        i += 1


def _alloc_async(url: str, name: str, stop: Path) -> None:
    import asyncio

    from callproof.storage import Database, NewCall, SmsDraft, is_storage_error

    async def again(fn, *args, **kwargs):
        while True:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                await asyncio.sleep(0.05)

    async def one(db, i):
        call = NewCall(f"{name}-{i}", f"{name}.{i}", f"{name}.{i}", MOBILE, MOBILE, None, "4000", "pt_BR", AT)
        call_id = await again(db.calls.create, call)
        got = await again(db.protocols.allocate_for_call, call_id, year=YEAR, allocated_at=AT,
                          sms=SmsDraft(MOBILE, "pt_BR", lambda p: f"Protocolo {p}"))
        await again(db.audit.append, "protocol.allocated", name, protocol=got.protocol)

    async def opened():
        return await Database.open(url, busy_timeout_ms=60_000)

    async def run() -> None:
        db = await again(opened)
        i = 0
        while not stop.exists():
            await asyncio.gather(*(one(db, i + k) for k in range(4)))  # calls at once, as on a node
            i += 4

    asyncio.run(run())


def _send(url: str, name: str, out: Path, hang: bool) -> None:
    from callproof.storage import connect_sync
    from callproof.storage.outbox import claim_for_send_sync, finish_attempt_sync
    from callproof.storage.timefmt import utc_now

    conn = connect_sync(url, busy_timeout_ms=60_000)
    claimed: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = claim_for_send_sync(conn, name, 5, LEASE_SECONDS, utc_now(), "test")
        if not rows:
            # nothing due now; rows another sender leases (or a dead one left) may come back
            unsent = conn.execute("SELECT count(*) FROM sms_outbox WHERE state IN ('pending', 'sending')")
            if unsent.fetchone()[0] == 0:
                break
            time.sleep(0.2)
            continue
        claimed += [r["id"] for r in rows]
        out.write_text(json.dumps(claimed))
        if hang:  # a sender that dies while it holds its rows
            time.sleep(3600)
        for r in rows:
            finish_attempt_sync(conn, r["attempt_id"], outcome="accepted", row_state="sent", now=utc_now(),
                                owner=name, gateway_message_id=f"gw-{r['id']}-{name}")


if __name__ == "__main__":
    if sys.argv[1] == "alloc":
        mode, url_arg, name_arg, stop_arg = sys.argv[2:6]
        (_alloc_async if mode == "async" else _alloc_sync)(url_arg, name_arg, Path(stop_arg))
    else:
        url_arg, name_arg, out_arg, hang_arg = sys.argv[2:6]
        _send(url_arg, name_arg, Path(out_arg), hang_arg == "hang")
    sys.exit(0)


# ------------------------------------------------------------------ tests --

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _count(url: str, table: str) -> int:
    return _query(url, f"SELECT count(*) FROM {table}")[0][0]


def test_nodes_share_one_gapless_sequence_through_kills_and_a_server_restart(pg_cluster, tmp_path):
    url = pg_cluster.new_database("scale")
    stop = tmp_path / "stop"
    rng = random.Random(14)
    spawned = 0

    def spawn(node: int, slot: int) -> subprocess.Popen:
        nonlocal spawned
        spawned += 1
        mode = "async" if slot % 2 == 0 else "sync"
        return subprocess.Popen([sys.executable, __file__, "alloc", mode, url, f"n{node}p{slot}g{spawned}", str(stop)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)

    procs = {(n, s): spawn(n, s) for n in range(NODES) for s in range(PER_NODE)}
    killed = 0
    restarted_at = None
    try:
        for round_no in range(12):
            target = 60 * (round_no + 1)
            deadline = time.monotonic() + 120
            while _count(url, "protocols") < target:  # allocations go on: wait for the next batch
                assert time.monotonic() < deadline, "allocations stopped"
                for p in procs.values():
                    assert p.poll() is None or p.returncode == -signal.SIGKILL, p.communicate()[1]
                time.sleep(0.05)
            key = rng.choice(sorted(procs))
            procs[key].send_signal(signal.SIGKILL)  # a process dies mid-call: no clean-up of any kind
            procs[key].wait()
            killed += 1
            procs[key] = spawn(*key)
            if round_no == 5:
                restarted_at = _count(url, "protocols")
                pg_cluster.pg_ctl("restart", "-m", "fast")  # every connection is cut
        stop.touch()
        for p in procs.values():
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        stop.touch()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    total = _count(url, "protocols")
    print(f"{total} protocols by {NODES}x{PER_NODE} processes, {killed} SIGKILLs,"
          f" server restarted after {restarted_at}")
    assert restarted_at is not None and total > restarted_at + 100, "allocations did not go on after the restart"
    assert killed == 12
    # 0 duplicates, 0 gaps: the year's protocols are exactly 1..total, and the counter says total
    assert _query(url, "SELECT year, last_value FROM protocol_sequences") == [(YEAR, total)]
    assert _query(url, "SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence) FROM protocols") \
        == [(total, total, 1, total)]
    # every number used by exactly one call, and that call says so; one SMS row each
    assert _query(url, "SELECT count(*) FROM protocols p JOIN calls c ON c.id = p.call_id"
                       " AND c.protocol = p.protocol") == [(total,)]
    assert _query(url, "SELECT count(*), count(DISTINCT protocol) FROM calls WHERE protocol IS NOT NULL") \
        == [(total, total)]
    assert _query(url, "SELECT count(*), count(DISTINCT protocol) FROM sms_outbox") == [(total, total)]
    # a killed process leaves at most the calls it was creating without a protocol
    assert _query(url, "SELECT count(*) FROM calls WHERE protocol IS NULL")[0][0] <= killed * 4
    # one audit chain, appended to by every process across the kills and the restart
    from callproof.storage import connect_sync
    from callproof.storage.audit import verify_chain_sync

    conn = connect_sync(url)
    try:
        assert verify_chain_sync(conn) is None
        entries = conn.execute("SELECT count(*), count(DISTINCT protocol) FROM audit_log").fetchone()
        assert entries[0] == entries[1] and total - killed * 4 <= entries[0] <= total
    finally:
        conn.close()


def test_each_sms_is_claimed_by_one_sender_and_a_dead_senders_rows_are_taken_over(pg_cluster, tmp_path):
    from callproof.storage import SmsDraft, allocate_sync, connect_sync

    url = pg_cluster.new_database("sms")
    conn = connect_sync(url)
    try:
        for _ in range(200):
            allocate_sync(conn, year=YEAR, allocated_at=AT, kind="request",
                          sms=SmsDraft(MOBILE, "pt_BR", lambda p: f"Protocolo {p}"))
    finally:
        conn.close()

    def sender(name: str, hang: bool) -> tuple[subprocess.Popen, Path]:
        out = tmp_path / f"{name}.json"
        return (subprocess.Popen([sys.executable, __file__, "send", url, name, str(out), "hang" if hang else "go"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
                                 cwd=ROOT), out)

    dead, dead_out = sender("dying", True)
    deadline = time.monotonic() + 60
    while not dead_out.exists():
        assert time.monotonic() < deadline and dead.poll() is None, "the first sender claimed nothing"
        time.sleep(0.02)
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    held = set(json.loads(dead_out.read_text()))
    senders = [sender(f"node{n}", False) for n in range(4)]
    for p, _ in senders:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    claims = [json.loads(out.read_text()) for _, out in senders if out.exists()]
    everything = [i for got in claims for i in got]
    assert len(held) == 5
    # every row sent once; no row claimed by two live senders; the dead one's rows taken over
    assert _query(url, "SELECT state, count(*) FROM sms_outbox GROUP BY state") == [("sent", 200)]
    assert len(everything) == len(set(everything)) == 200
    assert held <= set(everything)
    attempts = dict(_query(url, "SELECT outbox_id, count(*) FROM sms_attempts GROUP BY outbox_id"))
    assert {i for i, n in attempts.items() if n == 2} == held and all(n in (1, 2) for n in attempts.values())
    assert _query(url, "SELECT count(*) FROM sms_attempts WHERE outcome = 'accepted'") == [(200,)]
    assert _query(url, "SELECT count(*) FROM sms_attempts WHERE outcome = 'unknown' AND owner = 'dying'") == [(5,)]
    assert sum(1 for got in claims if got) >= 2, f"the live senders did not share the work: {claims}"
    print(f"200 SMS: claims per live sender {[len(got) for got in claims]}, the dead one's {len(held)} taken over")
