"""Two nodes, one PostgreSQL, one shared recordings store (docs/scale-out.md, issue 14 item 5).

Node a is the real ARI application (``[recording] store``, its own recordings root) taking a
real sandbox call on PostgreSQL; its mover copies the finalised recording into the store and
the row says so.  Node b is a second configuration on the same database and the same store
but with another recordings root: its web page serves the recording (HTTP 200, and 206 for a
Range), and past the retention period its sweep deletes the store's copy while node a's
sweep, started meanwhile, is refused by the database's advisory lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from aiohttp.test_utils import TestClient, TestServer

from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.retention import SweepLocked, run_sweep
from callproof.sandbox import Sandbox, originate_call
from callproof.store.mover import MARKER

from .harness import ObservedApplication, running
from .test_call_state import short_prompts

APP = "cpstore"  # its own application: test files run side by side on the CI's workers

IDENTITY_KEY = "0841b8618bdca36754c0926a4c351b21f544db4f68af9ada"
LINK_SECRET = "fe82c5217a18b097d3749b319e6f12a6ffaf0281f733fe89"


def node_config(sandbox: Sandbox, app_config: Config, url: str, run_dir: Path, store: Path, node: str) -> Config:
    run_dir.mkdir()
    return load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP}, storage={"url": url},
        recording={"root": str(run_dir / "recordings"), "store": str(store), "node": node,
                   "move_interval_seconds": 1},
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0},
        rights={"identity_key": IDENTITY_KEY, "link_secret": LINK_SECRET,
                "export_dir": str(run_dir / "exports")}))


async def test_node_b_plays_and_sweeps_node_as_recording_from_the_shared_store(sandbox, app_config, pg_cluster):
    url = pg_cluster.new_database("store")
    base = sandbox.run_dir / f"store-{uuid.uuid4().hex[:8]}"
    store = base / "shared"
    store.mkdir(parents=True)
    (store / MARKER).write_text("")
    node_a = node_config(sandbox, app_config, url, base / "a", store, "a")
    node_b = node_config(sandbox, app_config, url, base / "b", store, "b")
    node_b.recording.root.mkdir()  # node b's own Asterisk records there (nothing in this test)
    app = ObservedApplication(node_a)
    async with running(app):
        await asyncio.to_thread(originate_call, sandbox, "11987199001", max_seconds=60,
                                variables={"CALLPROOF_APP": APP, "SANDBOX_AGENT_SECONDS": "1"})
        deadline, rec = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            flows = [f for f in list(app.done_flows.values()) if f.call_id]
            recs = [r for f in flows for r in await app.db.recordings.for_call(f.call_id)]
            if recs and recs[0]["state"] == "finalised" and recs[0]["store_path"]:
                rec = recs[0]
                break
            await asyncio.sleep(0.2)
    assert rec is not None, "the recording was not moved to the store within 60 s"
    assert rec["node"] == "a" and rec["moved_at"] and rec["move_error"] is None
    moved = store / rec["store_path"]
    assert moved.stat().st_mode & 0o777 == 0o640 and moved.stat().st_size == rec["size_bytes"]
    assert not Path(rec["path"]).exists()  # node a's local copy is gone once the row says store
    assert rec["path"].startswith(str(node_a.recording.root))
    data = moved.read_bytes()

    # node b's web page: another root, the same database and store
    from callproof.storage import connect_sync, webauth
    from callproof.web.app import build_app
    from callproof.web.dbpool import DbPool
    from callproof.web.passwords import hash_password
    from tests.unit.web.test_app import PASSWORD, login

    conn = connect_sync(url)
    try:
        webauth.create_user_sync(conn, "vera", hash_password(PASSWORD, n=2 ** 10), "viewer", actor="test",
                                 at=datetime.now(UTC))
    finally:
        conn.close()
    pool = DbPool(node_b.storage.target, size=2, password=node_b.storage.password)
    client = TestClient(TestServer(build_app(node_b, db=pool)))
    await client.start_server()
    try:
        await login(client, "vera")
        audio = f"/calls/{rec['protocol']}/audio"
        whole = await client.get(audio)
        assert whole.status == 200 and await whole.read() == data
        part = await client.get(audio, headers={"Range": "bytes=44-1043"})
        assert part.status == 206 and await part.read() == data[44:1044]
    finally:
        await client.close()
        pool.close()

    # past retention: node b's sweep holds the database's lock; node a's, at the same time, is refused
    later = datetime.fromisoformat(rec["retention_until"].replace("Z", "+00:00")) + timedelta(days=1)
    inside, release, refusal = threading.Event(), threading.Event(), []

    def hold(total: int):
        inside.set()
        release.wait(30)

    sweep_b = asyncio.ensure_future(asyncio.to_thread(run_sweep, node_b, now=lambda: later, progress_total=hold))
    assert await asyncio.to_thread(inside.wait, 30)
    try:
        run_sweep(node_a, now=lambda: later)
    except SweepLocked as exc:
        refusal.append(str(exc))
    release.set()
    summary = await sweep_b
    assert refusal and "another node's retention sweep holds the database's sweep lock" in refusal[0]
    assert summary.deleted == 1 and not moved.exists()
    with psycopg.connect(url) as pg:
        assert pg.execute("SELECT state FROM recordings WHERE id = %s", (rec["id"],)).fetchone()[0] == "deleted"
        (details,) = pg.execute("SELECT details FROM audit_log WHERE action = 'recording.deleted'").fetchone()
        assert rec["store_path"] in details
