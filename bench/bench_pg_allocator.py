"""Protocol allocation on PostgreSQL: callproof's storage vs bare psycopg, same transaction.

    python bench/bench_pg_allocator.py [--nodes 2] [--per-node 4] [--n 400] [--rounds 3]

Starts a throw-away PostgreSQL cluster (Debian's ``postgresql`` package, tests/pg_cluster.py:
unix socket, fsync off -- the figures compare two clients of one server, not disks), then,
in each round, on a fresh database with the call rows created beforehand:

  bare psycopg    nodes x per-node processes, each running the allocation transaction
                  written out inline with psycopg (BEGIN; lock the call row; bump the
                  year's counter with UPDATE ... RETURNING; INSERT the protocol; UPDATE the
                  call; INSERT the SMS row; COMMIT) -- the baseline;
  callproof       the same processes calling storage.protocols.allocate_sync on a
                  storage.pg.PgConnection (the translation of placeholders, the dialect,
                  our checks and the SMS draft's rendering).

ratio = callproof allocations/s / bare allocations/s (target >= 0.70); rounds alternate the
order, the median is reported.  Then 200 allocations at once from one async process
(``db.protocols.allocate_for_call``, what the ARI app does when 200 calls arrive together):
p50/p99 latency on PostgreSQL and, in the same run, on SQLite.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

YEAR = 2026
AT = "2026-06-01T12:00:00+00:00"
MOBILE = "+5511912345678"
TARGET_RATIO = 0.70


def _new_call(name: str, i: int):
    from callproof.storage import NewCall

    return NewCall(f"{name}-{i}", f"{name}.{i}", f"{name}.{i}", MOBILE, MOBILE, None, "4000", "pt_BR", AT)


def _render(protocol: str) -> str:
    return f"Seu protocolo de atendimento: {protocol}"


# ---------------------------------------------------------------- workers --

def _worker(mode: str, url: str, name: str, n: int, gate: Path) -> float:
    """Allocate for this worker's n calls; returns the seconds it took (after the gate)."""
    from callproof.storage import SmsDraft, allocate_sync, connect_sync
    from callproof.storage.calls import create_sync

    conn = connect_sync(url)
    ids = [create_sync(conn, _new_call(name, i), AT) for i in range(n)]
    (gate / f"ready-{name}").touch()
    while not (gate / "go").exists():
        time.sleep(0.001)
    began = time.perf_counter()
    if mode == "callproof":
        sms = SmsDraft(MOBILE, "pt_BR", _render)
        for call_id in ids:
            allocate_sync(conn, year=YEAR, allocated_at=AT, call_id=call_id, sms=sms)
    else:
        conn.close()
        _bare(url, ids)
    return time.perf_counter() - began


def _bare(url: str, ids: list[int]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for call_id in ids:
            pg.execute("BEGIN")
            pg.execute("SELECT protocol, status FROM calls WHERE id = %s FOR UPDATE", (call_id,)).fetchone()
            seq = pg.execute("INSERT INTO protocol_sequences (year, last_value) VALUES (%s, 1) ON CONFLICT (year)"
                             " DO UPDATE SET last_value = protocol_sequences.last_value + 1 RETURNING last_value",
                             (YEAR,)).fetchone()[0]
            protocol = f"{YEAR:04d}{seq:013d}"
            pg.execute("INSERT INTO protocols (protocol, year, sequence, allocated_at, kind, call_id)"
                       " VALUES (%s, %s, %s, %s, 'call', %s)", (protocol, YEAR, seq, AT, call_id))
            pg.execute("UPDATE calls SET protocol = %s, status = 'protocol_reading', updated_at = %s WHERE id = %s",
                       (protocol, AT, call_id))
            pg.execute("INSERT INTO sms_outbox (protocol, call_id, destination, language, body, state, reason,"
                       " attempts, next_attempt_at, created_at, updated_at) VALUES (%s, %s, %s, 'pt_BR', %s,"
                       " 'pending', NULL, 0, %s, %s, %s) RETURNING id",
                       (protocol, call_id, MOBILE, _render(protocol), AT, AT, AT)).fetchone()
            pg.execute("COMMIT")


# ------------------------------------------------------------------ bench --

def _round(cluster, mode: str, processes: int, n: int) -> float:
    url = cluster.new_database("bench")
    gate = Path(tempfile.mkdtemp(prefix="gate-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", mode, url, f"w{i}", str(n), str(gate)],
                              stdout=subprocess.PIPE, text=True, env=env) for i in range(processes)]
    while len(list(gate.glob("ready-*"))) < processes:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker died")
        time.sleep(0.01)
    began = time.perf_counter()
    (gate / "go").touch()
    for p in procs:
        p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{mode} worker failed")
    elapsed = time.perf_counter() - began
    cluster.drop(url)
    return processes * n / elapsed


async def _burst(target: str, calls: int) -> list[float]:
    from callproof.storage import Database, SmsDraft

    async with Database.open(target) as db:
        ids = [await db.calls.create(_new_call("burst", i)) for i in range(calls)]
        sms = SmsDraft(MOBILE, "pt_BR", _render)

        async def one(call_id: int) -> float:
            began = time.perf_counter()
            await db.protocols.allocate_for_call(call_id, year=YEAR, allocated_at=AT, sms=sms)
            return time.perf_counter() - began

        return await asyncio.gather(*(one(i) for i in ids))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--per-node", type=int, default=4)
    parser.add_argument("--n", type=int, default=400, help="allocations per process per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, url, name, n, gate = args.worker
        print(_worker(mode, url, name, int(n), Path(gate)))
        return

    from tests.pg_cluster import start_cluster

    cluster = start_cluster()
    try:
        cluster.create_template()
        processes = args.nodes * args.per_node
        figures: dict[str, list[float]] = {"bare": [], "callproof": []}
        for r in range(args.rounds):
            for mode in (("bare", "callproof") if r % 2 == 0 else ("callproof", "bare")):
                figures[mode].append(_round(cluster, mode, processes, args.n))
        bare, ours = statistics.median(figures["bare"]), statistics.median(figures["callproof"])
        pg_lat = asyncio.run(_burst(cluster.new_database("burst"), args.burst))
        with tempfile.TemporaryDirectory() as d:
            sqlite_lat = asyncio.run(_burst(os.path.join(d, "cp.db"), args.burst))
    finally:
        cluster.stop()
    result = {
        "processes": processes, "allocations_per_process": args.n, "rounds": args.rounds,
        "bare_psycopg_per_s": round(bare), "callproof_per_s": round(ours), "ratio": round(ours / bare, 3),
        "target_ratio": TARGET_RATIO, "burst": args.burst,
        "pg_p50_ms": round(_percentile(pg_lat, 0.50) * 1000, 1),
        "pg_p99_ms": round(_percentile(pg_lat, 0.99) * 1000, 1),
        "sqlite_p50_ms": round(_percentile(sqlite_lat, 0.50) * 1000, 1),
        "sqlite_p99_ms": round(_percentile(sqlite_lat, 0.99) * 1000, 1),
    }
    print(f"{processes} processes x {args.n} allocations, median of {args.rounds} rounds:")
    print(f"  bare psycopg   {bare:8.0f} allocations/s")
    print(f"  callproof      {ours:8.0f} allocations/s   ratio {ours / bare:.2f} (target >= {TARGET_RATIO})")
    print(f"{args.burst} allocations at once (one async process): PostgreSQL p50 {result['pg_p50_ms']} ms,"
          f" p99 {result['pg_p99_ms']} ms; SQLite p50 {result['sqlite_p50_ms']} ms, p99 {result['sqlite_p99_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
