"""Protocol allocation with many calls allocating at once, vs bare sqlite3.

    python bench/bench_allocator_concurrent.py [--n 3000] [--concurrency 200] [--rounds 5]

bench_allocator.py measures one allocation after another.  On a busy PBX
many calls finish their announcement at about the same moment and all ask
for a protocol together, so this script also runs the async API with
``--concurrency`` coroutines in flight at once (each is a "call": it awaits
``db.protocols.allocate_for_call`` for its own call row, then takes the next
call, so the number of allocations in flight stays at the concurrency
level).  Every loop runs on a fresh database file with N call rows created
beforehand (same pragmas and schema as the app):

  bare sqlite3      the allocation statements inline on a plain sqlite3
                    connection, one after another (the baseline; the same
                    loop as bench_allocator.py);
  async sequential  await db.protocols.allocate_for_call, one at a time;
  async concurrent  the same call from --concurrency coroutines at once,
                    all through the app's one aiosqlite connection.

Rounds alternate the order of the loops; the median round is reported.
Ratios are allocations/s against the bare loop of the same run (target for
both >= 0.70).  For the concurrent loop the time each coroutine waited for
its allocation is also reported (median and p99): with C allocations queued
on one connection, the last in the queue waits about C service times.
The last line of output is the same figures as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_allocator import AT, SMS, YEAR, fresh_sync_db, run_async, run_bare

from callproof.storage import Database

TARGET_RATIO = 0.70


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def _run_concurrent(directory: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    fresh_sync_db(directory, "concurrent.db", n).close()
    waits: list[float] = []
    async with Database.open(os.path.join(directory, "concurrent.db")) as db:
        next_call = iter(range(1, n + 1))
        gate = asyncio.Event()

        async def call_worker() -> None:
            await gate.wait()  # every coroutine starts at the same moment
            for call_id in next_call:
                t0 = time.perf_counter()
                await db.protocols.allocate_for_call(call_id, year=YEAR, allocated_at=AT, sms=SMS)
                waits.append(time.perf_counter() - t0)

        workers = [asyncio.ensure_future(call_worker()) for _ in range(concurrency)]
        await asyncio.sleep(0)
        start = time.perf_counter()
        gate.set()
        await asyncio.gather(*workers)
        elapsed = time.perf_counter() - start
        last = await db.run_in_connection(
            lambda c: c.execute("SELECT last_value FROM protocol_sequences").fetchone()[0])
        assert last == n, (last, n)
        distinct = await db.run_in_connection(
            lambda c: c.execute("SELECT COUNT(DISTINCT protocol) FROM calls WHERE protocol IS NOT NULL").fetchone()[0])
        assert distinct == n, (distinct, n)
    return n / elapsed, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="allocations per loop")
    parser.add_argument("--concurrency", type=int, default=200, help="coroutines allocating at once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="directory for the database files (default: a temp dir)")
    parser.add_argument("--cpu", type=int, help="pin the process to this CPU (Linux)")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    names = ["bare sqlite3", "async sequential", "async concurrent"]
    results: dict[str, list[float]] = {name: [] for name in names}
    wait_rounds: list[list[float]] = []
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            with tempfile.TemporaryDirectory(dir=args.dir) as directory:
                if name == "bare sqlite3":
                    results[name].append(run_bare(directory, args.n))
                elif name == "async sequential":
                    results[name].append(run_async(directory, args.n))
                else:
                    rate, waits = asyncio.run(_run_concurrent(directory, args.n, args.concurrency))
                    results[name].append(rate)
                    wait_rounds.append(waits)

    median = {name: statistics.median(v) for name, v in results.items()}
    base = median["bare sqlite3"]
    seq_ratio = median["async sequential"] / base
    conc_ratio = median["async concurrent"] / base
    # the waits of the median concurrent round
    mid = sorted(range(len(wait_rounds)), key=lambda i: results["async concurrent"][i])[len(wait_rounds) // 2]
    waits_ms = [w * 1000 for w in wait_rounds[mid]]
    wait_median, wait_p99 = statistics.median(waits_ms), percentile(waits_ms, 99)

    print(f"protocol allocation, {args.n} allocations per loop x {args.rounds} rounds (median), "
          f"concurrency {args.concurrency}, SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
          f"CPUs allowed: {cpus if cpus is None or len(cpus) <= 8 else len(cpus)}")
    print(f"{'loop':<18}{'alloc/s':>10}{'us/alloc':>10}{'vs bare':>9}   rounds (alloc/s)")
    for name in names:
        value = median[name]
        rounds = " ".join(f"{v:.0f}" for v in results[name])
        print(f"{name:<18}{value:>10.0f}{1e6 / value:>10.1f}{value / base:>9.2f}   {rounds}")
    print(f"concurrent: each coroutine waited median {wait_median:.2f} ms, p99 {wait_p99:.2f} ms "
          f"for its allocation ({args.concurrency} in flight)")
    for label, ratio in (("sequential", seq_ratio), ("concurrent", conc_ratio)):
        verdict = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
        print(f"ratio async {label}/bare = {ratio:.3f} (target >= {TARGET_RATIO:.2f}): {verdict}")
    print(json.dumps({
        "n": args.n,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "bare_sqlite3_per_s": round(base, 1),
        "async_sequential_per_s": round(median["async sequential"], 1),
        "async_concurrent_per_s": round(median["async concurrent"], 1),
        "ratio_sequential_vs_bare": round(seq_ratio, 3),
        "ratio_concurrent_vs_bare": round(conc_ratio, 3),
        "concurrent_wait_median_ms": round(wait_median, 2),
        "concurrent_wait_p99_ms": round(wait_p99, 2),
        "cpus": cpus,
        "target": TARGET_RATIO,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
