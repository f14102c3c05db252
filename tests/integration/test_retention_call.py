"""End to end on the sandbox Asterisk, on SQLite and on PostgreSQL: a real call's
recording row gets the retention class and retention_until from the config rules and a
signed evidence record, and the sweeper (as its own process, opening the same
``[storage]``) keeps what is not due."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from callproof.retention.policy import retention_until


async def test_real_calls_get_their_retention(harness_on):
    harness, app_config = harness_on, harness_on.app.config
    plain, mobile = await asyncio.gather(
        harness.place("11987650001", record=False),
        harness.place("11987650002", record=False,
                      variables={"CALLPROOF_RETENTION_CLASS": "mobile_telecom"}))
    flows = await asyncio.gather(harness.app.wait_flow(plain.prefix, timeout=90),
                                 harness.app.wait_flow(mobile.prefix, timeout=90))
    recs = []
    for flow, cls, days in zip(flows, ("consumer_service", "mobile_telecom"), (90, 180), strict=False):
        assert flow.outcome == "handed_off"
        rec = await harness.wait_recording_final(flow.call_id)
        assert rec["state"] == "finalised" and rec["retention_class"] == cls
        start = datetime.fromisoformat(rec["started_at"])
        want = retention_until(start, days, app_config.general.tz)
        assert datetime.fromisoformat(rec["retention_until"]) == want
        evidence = await harness.app.db.evidence.for_recording(rec["id"])
        assert evidence is not None and evidence["signature"]  # signed by [evidence] signing_key
        recs.append(rec)

    # Nothing is due today: a real sweep (own process, same config) keeps both files.
    cfg = harness.run_dir / "callproof.toml"
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "callproof.cli", "--config", str(cfg),
                         "retention", "sweep", "--json", "--no-scan"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["type"] == "summary"
    assert all(Path(r["path"]).exists() for r in recs)
    rows = await asyncio.gather(*(harness.app.db.recordings.get(r["id"]) for r in recs))
    assert [r["state"] for r in rows] == ["finalised", "finalised"]
