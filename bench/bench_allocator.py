"""Protocol allocation throughput: async API vs bare sqlite3, same transaction.

    python bench/bench_allocator.py [--n 3000] [--rounds 5]

Three loops, each on a fresh database file with the same pragmas and schema
(WAL, synchronous=NORMAL, foreign_keys, busy_timeout) and N call rows
created beforehand; every iteration allocates one protocol for one call,
sequentially:

  bare sqlite3   the allocation statements written out inline on a plain
                 sqlite3 connection (the baseline);
  allocate_sync  storage.protocols.allocate_sync on the same kind of
                 connection (adds our Python: time normalisation, checks);
  async API      await db.protocols.allocate_for_call (adds one hop to
                 aiosqlite's worker thread and back per allocation).

Rounds alternate the order of the loops; the median round is reported.
ratio = async allocations/s / bare allocations/s (target >= 0.70).
The last line of output is the same figures as one JSON object.

"async no-op hop" is the cost of one empty round trip to aiosqlite's thread
(``run_in_connection(lambda conn: None)``): the part of the async figure
that is thread wake-up latency, not SQLite.  On VMs a wake-up across CPUs
can cost ~100 us; ``--cpu N`` pins the process to one CPU to show the
figures without that (the deployment equivalent is systemd CPUAffinity=).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callproof.storage import (
    Database,
    NewCall,
    SmsDraft,
    allocate_sync,
    connect_sync,
    to_db_time,
)
from callproof.storage import protocols as P
from callproof.storage.calls import create_sync

YEAR = 2026
AT = to_db_time("2026-06-01T12:00:00Z")
MOBILE = "+5511912345678"
TARGET_RATIO = 0.70


def render(protocol: str) -> str:
    return f"Seu protocolo de atendimento: {protocol}"


SMS = SmsDraft(MOBILE, "pt_BR", render)


def new_call(i: int) -> NewCall:
    return NewCall(f"bench-{i}", f"{i}.1", f"{i}.1", MOBILE, MOBILE, None, "4000", "pt_BR", AT)


def fresh_sync_db(directory: str, name: str, n: int) -> sqlite3.Connection:
    conn = connect_sync(os.path.join(directory, name))
    conn.execute("BEGIN IMMEDIATE")
    for i in range(n):
        create_sync(conn, new_call(i), AT)
    conn.execute("COMMIT")
    return conn


def bare_allocate(conn: sqlite3.Connection, call_id: int) -> str:
    """The statements of storage.protocols.allocate_sync, inline."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _existing, _status = conn.execute(P._SQL_CALL, (call_id,)).fetchone()
        sequence = conn.execute(P._SQL_BUMP, (YEAR,)).fetchall()[0][0]  # bump ... RETURNING
        protocol = f"{YEAR:04d}{sequence:013d}"
        conn.execute(P._SQL_PROTOCOL, (protocol, YEAR, sequence, AT, "call", call_id))
        conn.execute(P._SQL_LINK_CALL, (protocol, AT, call_id))
        conn.execute(P._SQL_SMS, (protocol, call_id, MOBILE, "pt_BR", render(protocol),
                                  "pending", None, AT, AT, AT))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return protocol


def run_bare(directory: str, n: int) -> float:
    conn = fresh_sync_db(directory, "bare.db", n)
    try:
        start = time.perf_counter()
        for call_id in range(1, n + 1):
            bare_allocate(conn, call_id)
        elapsed = time.perf_counter() - start
        assert conn.execute("SELECT last_value FROM protocol_sequences").fetchone()[0] == n
    finally:
        conn.close()
    return n / elapsed


def run_allocate_sync(directory: str, n: int) -> float:
    conn = fresh_sync_db(directory, "sync.db", n)
    try:
        start = time.perf_counter()
        for call_id in range(1, n + 1):
            allocate_sync(conn, year=YEAR, allocated_at=AT, call_id=call_id, sms=SMS)
        elapsed = time.perf_counter() - start
        assert conn.execute("SELECT last_value FROM protocol_sequences").fetchone()[0] == n
    finally:
        conn.close()
    return n / elapsed


async def _run_async(directory: str, n: int) -> float:
    fresh_sync_db(directory, "async.db", n).close()
    async with Database.open(os.path.join(directory, "async.db")) as db:
        start = time.perf_counter()
        for call_id in range(1, n + 1):
            await db.protocols.allocate_for_call(call_id, year=YEAR, allocated_at=AT, sms=SMS)
        elapsed = time.perf_counter() - start
        last = await db.run_in_connection(
            lambda c: c.execute("SELECT last_value FROM protocol_sequences").fetchone()[0])
        assert last == n
    return n / elapsed


def run_async(directory: str, n: int) -> float:
    return asyncio.run(_run_async(directory, n))


async def _noop_hop_us(directory: str, n: int) -> float:
    async with Database.open(os.path.join(directory, "hop.db")) as db:
        start = time.perf_counter()
        for _ in range(n):
            await db.run_in_connection(lambda conn: None)
        return (time.perf_counter() - start) / n * 1e6


def noop_hop_us(n: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(_noop_hop_us(directory, n))


LOOPS = {"bare sqlite3": run_bare, "allocate_sync": run_allocate_sync, "async API": run_async}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="allocations per loop")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="directory for the database files (default: a temp dir)")
    parser.add_argument("--cpu", type=int, help="pin the process to this CPU (Linux)")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    results: dict[str, list[float]] = {name: [] for name in LOOPS}
    order = list(LOOPS)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else reversed(order):
            with tempfile.TemporaryDirectory(dir=args.dir) as directory:
                results[name].append(LOOPS[name](directory, args.n))

    hop_us = statistics.median(noop_hop_us(args.n) for _ in range(3))
    median = {name: statistics.median(v) for name, v in results.items()}
    base = median["bare sqlite3"]
    ratio = median["async API"] / base
    print(f"protocol allocation, {args.n} sequential allocations x {args.rounds} rounds "
          f"(median), SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
          f"CPUs allowed: {cpus if cpus is None or len(cpus) <= 8 else len(cpus)}")
    print(f"{'loop':<16}{'alloc/s':>10}{'us/alloc':>10}{'vs bare':>9}   rounds (alloc/s)")
    for name, value in median.items():
        rounds = " ".join(f"{v:.0f}" for v in results[name])
        print(f"{name:<16}{value:>10.0f}{1e6 / value:>10.1f}{value / base:>9.2f}   {rounds}")
    print(f"{'async no-op hop':<16}{'':>10}{hop_us:>10.1f}")
    verdict = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"ratio async/bare = {ratio:.2f} (target >= {TARGET_RATIO:.2f}): {verdict}")
    print(json.dumps({
        "n": args.n,
        "rounds": args.rounds,
        "bare_sqlite3_per_s": round(base, 1),
        "allocate_sync_per_s": round(median["allocate_sync"], 1),
        "async_api_per_s": round(median["async API"], 1),
        "ratio_async_vs_bare": round(ratio, 3),
        "async_noop_hop_us": round(hop_us, 1),
        "cpus": cpus,
        "target": TARGET_RATIO,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
