"""Real calls through the sandbox Asterisk with ``[storage] url`` on a real PostgreSQL.

An application of its own (Stasis app ``cppg``, 40 ms prompts) whose storage is a database
on the session's throw-away PostgreSQL cluster: the calls are completed, each with its
protocol, finalised recording, SMS row and audit entries in PostgreSQL, numbered 1..N, and
the audit chain is intact.  The same flow as on SQLite: only the configuration differs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg

from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import Sandbox, originate_call

from .harness import ObservedApplication, running
from .test_call_state import short_prompts

APP = "cppg"


def pg_call_config(sandbox: Sandbox, app_config: Config, url: str) -> Config:
    run_dir = sandbox.run_dir / f"pg-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    return load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP}, storage={"url": url},
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0}))


async def place(sandbox: Sandbox, caller: str) -> dict[str, Any]:
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=60,
                                   variables={"CALLPROOF_APP": APP, "SANDBOX_AGENT_SECONDS": "1"})


async def test_calls_on_postgresql_get_their_protocols_recordings_and_sms(sandbox, app_config, pg_cluster,
                                                                        ami_events):
    url = pg_cluster.new_database("calls")
    config = pg_call_config(sandbox, app_config, url)
    assert config.storage.engine == "postgresql"
    app = ObservedApplication(config)
    async with running(app):
        await asyncio.gather(*(place(sandbox, f"1198711{i:04d}") for i in range(3)))
        deadline = time.monotonic() + 60
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = [dict(await app.db.calls.get(f.call_id)) for f in list(app.done_flows.values()) if f.call_id]
            if len(rows) == 3 and all(r["status"] == "completed" for r in rows):
                break
            await asyncio.sleep(0.2)
        assert [r["status"] for r in rows] == ["completed"] * 3
        for row in rows:
            assert ami_events.handoffs_for(row["protocol"])  # the agent got the call with its protocol
            recordings = await app.db.recordings.for_call(row["id"])
            assert [r["state"] for r in recordings] == ["finalised"] and recordings[0]["size_bytes"] > 44
    year = rows[0]["protocol"][:4]
    numbered = [f"{year}{n:013d}" for n in range(1, 4)]  # gap-free from 1, one per call
    assert sorted(r["protocol"] for r in rows) == numbered
    with psycopg.connect(url) as pg:
        assert sorted(p for (p,) in pg.execute("SELECT protocol FROM protocols")) == numbered
        assert pg.execute("SELECT count(DISTINCT protocol) FROM sms_outbox").fetchone()[0] == 3
        assert pg.execute("SELECT count(*) FROM audit_log").fetchone()[0] > 0
    from callproof.storage import connect_sync
    from callproof.storage.audit import verify_chain_sync

    conn = connect_sync(url)
    try:
        assert verify_chain_sync(conn) is None
    finally:
        conn.close()
