"""Two Asterisk nodes, three ``callproof run`` processes, one PostgreSQL, one recordings store
(issue "several Asterisk nodes", docs/scale-out.md).

Node a is the session's sandbox Asterisk with two instances (``[ari] instance`` a1, a2 of the
group ``cpnodes``: StasisBroadcast, the first to claim a call gets it); node b is a second
sandbox Asterisk of its own with one instance.  Every process has ``[storage] url`` on the
same database and ``[recording] store`` on the same folder, each node its own recordings root.

A call on node a is inside its recording announcement when a1 is SIGKILLed: a2 takes a1's
lease over and resumes it (the caller hears the announcement once); a call placed on node a
after the kill is answered by a2; calls on node b go on meanwhile.  Afterwards the protocols
of both nodes are one gap-free sequence, each with its one SMS, each call's recording
finalised by its own node and moved into the shared store (the row names the node, the
store's file has the row's sha256), and the audit chain every process appended to is intact.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from callproof.demo import SANDBOX_AGENTS_DIALPLAN, load_sandbox_config, write_config
from callproof.sandbox import Sandbox, originate_call
from callproof.storage import connect_sync, open_database
from callproof.storage.audit import verify_chain_sync
from callproof.store.mover import MARKER

from .conftest import start_sandbox
from .harness import sha256_of
from .test_agi_calls import heard_sequence, wait_row, wait_sms
from .test_call_state import SHORT, short_prompts
from .test_two_instances import Instance

pytestmark = pytest.mark.integration

GROUP = "cpnodes"
HEARTBEAT, LEASE = 1.0, 5.0  # seconds, as the two-instance test


def node_config(sandbox: Sandbox, prompts: Path, url: str, run_dir: Path, store: Path, node: str,
                short: list[str]) -> Path:
    run_dir.mkdir(parents=True)
    return write_config(
        sandbox, run_dir, prompts, logging={"level": "INFO"}, storage={"url": url},
        ari={"app": GROUP, "heartbeat_seconds": HEARTBEAT, "lease_seconds": LEASE},
        recording={"root": str(run_dir / "recordings"), "store": str(store), "node": node,
                   "move_interval_seconds": 1},
        prompts={"custom_directory": str(short_prompts(run_dir / "short", short))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0})


@pytest.fixture
def node_b(app_config, tmp_path_factory) -> Sandbox:
    """A second Asterisk, with the session's prompts at the same path as node a's, and a
    ``systemname`` of its own: two Asterisks started at the same moment give the same channel
    ids otherwise (docs/scale-out.md#node-names-and-channel-ids).  The session's Asterisk,
    node a, keeps none: one named node is enough to keep the two apart."""
    own = start_sandbox(tmp_path_factory.mktemp("node-b"), extra_dialplan=SANDBOX_AGENTS_DIALPLAN,
                        bind_paths=[app_config.prompts.directory], system_name="node-b")
    yield own
    own.stop()


async def place(sandbox: Sandbox, caller: str) -> dict:
    # every instance is one of the group (a loaded CI host: a claim may take longer than 500 ms)
    variables = {"CALLPROOF_APP": GROUP, "CALLPROOF_BROADCAST": "yes", "CALLPROOF_CLAIM_MS": "5000",
                 "SANDBOX_AGENT_SECONDS": "1"}
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=90, variables=variables)


async def moved_recording(db, call_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    recs: list = []
    while time.monotonic() < deadline:
        recs = await db.recordings.for_call(call_id)
        if recs and recs[-1]["state"] == "finalised" and recs[-1]["store_path"]:
            return dict(recs[-1])
        await asyncio.sleep(0.2)
    raise AssertionError(f"recording of call {call_id} not in the store within {timeout} s: {recs}")


async def test_two_nodes_one_database_one_store_an_instance_killed(sandbox, node_b, app_config, pg_cluster):
    url = pg_cluster.new_database("nodes")
    base = sandbox.run_dir / f"nodes-{uuid.uuid4().hex[:8]}"
    store = base / "store"
    store.mkdir(parents=True)
    (store / MARKER).write_text("")
    prompts = app_config.prompts.directory
    # node a keeps the full announcement (a window to kill a1 in); node b's prompts are all 40 ms
    config_a = node_config(sandbox, prompts, url, base / "a", store, "a", [n for n in SHORT if n != "consent"])
    config_b = node_config(node_b, prompts, url, node_b.run_dir / "b", store, "b", SHORT)
    a1, a2, b1 = Instance(config_a, "a1"), Instance(config_a, "a2"), Instance(config_b, "b1")
    db = await open_database(load_sandbox_config(config_a))
    calls: dict[str, tuple[Sandbox, dict]] = {}
    try:
        a1.start()
        b1.start()
        await a1.wait_connected(1)
        await b1.wait_connected(1)
        calls["a-killed"] = (sandbox, await place(sandbox, "11987654101"))
        await wait_row(db, calls["a-killed"][1]["id"], {"consent_playing"}, timeout=20)
        a2.start()
        await a2.wait_connected(1)
        calls["b-1"] = (node_b, await place(node_b, "11987654201"))
        a1.kill()  # inside the announcement of a-killed
        calls["a-after"] = (sandbox, await place(sandbox, "11987654102"))
        calls["b-2"] = (node_b, await place(node_b, "11987654202"))
        rows = dict(zip(calls, await asyncio.gather(*(
            wait_row(db, ch["id"], {"completed"}, timeout=90) for _, ch in calls.values())), strict=True))
        recs = {name: await moved_recording(db, row["id"]) for name, row in rows.items()}
        sms = {name: await wait_sms(db, row["protocol"], {"logged"}, timeout=30) for name, row in rows.items()}
        takeovers = await db.ari_leases.takeovers(rows["a-killed"]["channel_id"])
        assert a2.logged("ari.takeover") == 1, a2.text()[-3000:]
        assert b1.logged("ari.takeover") == 0, b1.text()[-3000:]  # not node b's to move
    finally:
        for inst in (a1, a2, b1):
            inst.stop()
        await db.close()

    # the call in flight on the killed instance: resumed by a2, the announcement heard once
    assert rows["a-killed"]["ari_app"] == f"{GROUP}_a2", rows["a-killed"]
    assert [(m["from_app"], m["to_app"], m["outcome"]) for m in takeovers] == [
        (f"{GROUP}_a1", f"{GROUP}_a2", "moved")], takeovers
    assert rows["a-after"]["ari_app"] == f"{GROUP}_a2"
    for name, (node, channel) in calls.items():
        heard = heard_sequence(node, channel)
        assert heard[0] == "consent" and heard.count("consent") == 1, (name, heard)
        assert rows[name]["consent_outcome"] == "finished" and rows[name]["protocol_read_count"] == 1, rows[name]
    # one gap-free sequence across both nodes, one SMS per protocol
    protocols = sorted(int(r["protocol"]) for r in rows.values())
    assert protocols == list(range(protocols[0], protocols[0] + len(protocols))), protocols
    assert all(s["state"] == "logged" for s in sms.values()), sms
    # each recording finalised on its node, then in the one store
    for name, rec in recs.items():
        assert rec["node"] == rows[name]["node"] == name[0], (name, rec["node"], rows[name]["node"])
        moved = store / rec["store_path"]
        assert moved.stat().st_mode & 0o777 == 0o640 and sha256_of(moved) == rec["sha256"], (name, rec)
        assert not Path(rec["path"]).exists(), (name, rec["path"])
    conn = connect_sync(url)
    try:
        assert verify_chain_sync(conn) is None  # one chain, appended to by three processes
        sent = conn.execute("SELECT count(*), count(DISTINCT protocol) FROM sms_outbox").fetchone()
        assert tuple(sent) == (len(calls), len(calls))
    finally:
        conn.close()
