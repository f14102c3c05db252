"""What a /metrics scrape costs on a large database, against a bare aggregate read, same run.

    python bench/bench_metrics.py [--n 100000] [--rounds 7]

Seeds N completed calls (each with a protocol, a finalised recording, an SMS row with its
accepted attempt and DELIVRD receipt, and an agent answer), then times, on one database:

* baseline: ``SELECT status, count(*) FROM calls GROUP BY status`` alone (what the cheapest
  "calls by status" figure needs);
* a scrape with an empty cache: the whole storage read (storage/figures.py) + rendering the
  registry's text (callproof/metrics/), as GET /metrics does;
* a scrape within ``[metrics] cache_seconds``: rendering only;
* a call's storage step (``db.calls.get``, on the connection the SMS sender and the calls
  use) while the figures are being read, against the same step with no read going on: the
  read runs on its own connection and thread, so the ratio should stay near 1.

Medians over ``--rounds``; the last line is the figures as one JSON object. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from callproof.config import Config
from callproof.metrics.wiring import collectors
from callproof.storage import Database

T = "2026-03-02T12:00:00.000000Z"


def seed(conn, n: int) -> None:
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO protocols (protocol, year, sequence, allocated_at)"
        " VALUES (printf('%04d%013d', 2026, ?), 2026, ?, ?)",
        ((i, i, T) for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO calls (id, channel_id, uniqueid, caller_number_raw, started_at, status, protocol,"
        " consent_outcome, handed_off_at, ended_at, agent_answered_at, queue_name, updated_at)"
        " VALUES (?, 'c' || ?, 'u' || ?, '11987654321', ?, 'completed', printf('%04d%013d', 2026, ?), 'finished',"
        " ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', ?, '+' || (? % 300) || ' seconds'), 'support', ?)",
        ((i, i, i, T, i, T, T, T, i, T) for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO recordings (call_id, path, started_at, state) VALUES (?, '/r/' || ? || '.wav', ?, 'finalised')",
        ((i, i, T) for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO sms_outbox (id, protocol, call_id, destination, language, body, state, created_at, updated_at,"
        " dlr_state, dlr_at) VALUES (?, printf('%04d%013d', 2026, ?), ?, '+5511987654321', 'pt_BR', 'x', 'sent',"
        " ?, ?, 'DELIVRD', ?)", ((i, i, i, T, T, T) for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO sms_attempts (outbox_id, attempt_no, idempotency_key, backend, owner, started_at, finished_at,"
        " outcome) VALUES (?, 1, 'k' || ?, 'log', 'bench', ?, ?, 'accepted')", ((i, i, T, T) for i in range(1, n + 1)))
    conn.execute("COMMIT")


async def main(n: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        async with Database.open(Path(tmp) / "bench.db") as db:
            began = time.monotonic()
            await db.run_in_connection(seed, n)
            seeded_s = time.monotonic() - began
            metrics, stored = collectors(Config(), db, "run")
            stored.cache_seconds = 0
            base, cold, warm = [], [], []
            for _ in range(rounds):
                t = time.monotonic()
                await db.run_in_connection(lambda c: c.execute(
                    "SELECT status, count(*) FROM calls GROUP BY status").fetchall())
                base.append(time.monotonic() - t)
                t = time.monotonic()
                await stored.refresh()
                text = generate_latest(metrics.registry)
                cold.append(time.monotonic() - t)
                stored.cache_seconds = 3600
                t = time.monotonic()
                await stored.refresh()
                generate_latest(metrics.registry)
                warm.append(time.monotonic() - t)
                stored.cache_seconds = 0
            idle, during = [], []
            for _ in range(rounds):
                t = time.monotonic()
                await db.calls.get(n // 2)
                idle.append(time.monotonic() - t)
                stored._snapshot = None
                reading = asyncio.ensure_future(stored.refresh())
                await asyncio.sleep(0.05)  # the read is under way
                t = time.monotonic()
                await db.calls.get(n // 2)
                during.append(time.monotonic() - t)
                await reading
            figures = {"calls": n, "seed_s": round(seeded_s, 1),
                       "baseline_ms": round(statistics.median(base) * 1000, 2),
                       "scrape_uncached_ms": round(statistics.median(cold) * 1000, 2),
                       "scrape_cached_ms": round(statistics.median(warm) * 1000, 3),
                       "exposition_bytes": len(text)}
            figures["call_step_idle_ms"] = round(statistics.median(idle) * 1000, 3)
            figures["call_step_during_read_ms"] = round(statistics.median(during) * 1000, 3)
            figures["call_step_during_vs_idle"] = round(figures["call_step_during_read_ms"]
                                                        / figures["call_step_idle_ms"], 1)
            figures["uncached_vs_baseline"] = round(figures["scrape_uncached_ms"] / figures["baseline_ms"], 1)
            return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(main(args.n, args.rounds))
    for key, v in result.items():
        print(f"{key:>22}: {v}")
    print(json.dumps(result))
