"""ARI cut at random moments while calls run: what each caller heard and what the rows say.

The application's ARI connection goes through a TCP proxy that resets every
connection and refuses new ones for 1-5 s, several times, at seeded random moments
(the seed is printed; CALLPROOF_FAULT_SEED replays a run).  Per call, from Asterisk's
own log of what it played on the call's channel and from the rows:

* the announcement was heard once -- once more only when its first request was never
  acknowledged (the flow logs that as consent.restarted) -- and never after the reading;
* the protocol was read as configured (protocol_read_count 2; 1 on PostgreSQL), each reading
  started at most once more than counted, again only for an unacknowledged request;
* one recording row, finalised with its sha256; status completed; no 'failed';
* the evidence timestamps in order (consent, protocol allocated, read, recording).
"""

from __future__ import annotations

import os
import random

import pytest

from tests.faults.scenario import run_cuts

from .conftest import ENGINES
from .test_call_state import short_prompts

pytestmark = pytest.mark.integration


def seed() -> int:
    chosen = int(os.environ.get("CALLPROOF_FAULT_SEED") or random.randrange(1 << 30))
    print(f"fault seed {chosen} (CALLPROOF_FAULT_SEED={chosen} replays it)")
    return chosen


def check(report) -> None:
    """No call with a problem (tests/faults/scenario.py lists what counts as one)."""
    summary = report.summary()
    print(summary)
    bad = {c.channel_id: c.problems for c in report.calls if c.problems}
    for c in report.calls:
        if c.problems:
            print(f"{c.channel_id} {c.problems}:", *c.trail, sep="\n  ")
    assert not bad, f"seed {report.seed}: {bad}"
    assert summary["failed"] == 0 and summary["recording_rows_not_final"] == 0
    assert set(summary["statuses"]) == {"completed"}


@pytest.mark.parametrize("engine", ENGINES)
async def test_calls_survive_ari_cuts(sandbox, app_config, engine, request):
    """SQLite: 20 calls of the full announcement and two readings, 6 cuts of ARI (1-5 s each).
    PostgreSQL: 10 calls over 4 s, a 2 s announcement and one 3 s reading (silence: the
    steps keep their length, the call its minute less), 3 cuts of 1-3 s."""
    if engine == "sqlite":
        report = await run_cuts(sandbox, sandbox.run_dir / "faults-ari", sandbox.run_dir / "prompts",
                                app_name="callproof_faults_ari", seed=seed(), calls=20, cuts=6)
    else:
        run_dir = sandbox.run_dir / "faults-ari-pg"
        short = short_prompts(run_dir / "short", seconds={"consent": 2.0, "protocol-is": 3.0})
        report = await run_cuts(sandbox, run_dir, sandbox.run_dir / "prompts", app_name="callproof_faults_aripg",
                                seed=seed(), calls=10, cuts=3, cut_seconds=(1.0, 3.0), spread_seconds=4.0, readings=1,
                                storage={"url": request.getfixturevalue("pg_cluster").new_database("faults")},
                                prompts={"custom_directory": str(short)},
                                protocol_reading={"repeat": 0, "replay_window_ms": 0})
    check(report)
    assert report.resume_s, "no call was resumed: the cuts met no call"  # how fast: bench/bench_faults.py
