"""End to end: a real call through the sandbox Asterisk, an Application
configured with the SMPP backend, and the Net::SMPP peer on loopback: the
peer receives a submit_sm carrying the call's protocol, and its delivery
receipt is recorded against the outbox row; on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from callproof.demo import load_sandbox_config, write_config

from .conftest import ENGINES
from .harness import CallHarness, ObservedApplication
from .sms_peers import PASSWORD, SYSTEM_ID, SmppPeer, decode_text, require_smpp_peer
from .test_call_state import short_prompts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
APP = "callproofsmpp"  # letters only: the entry dialplan's FILTER drops "-" from CALLPROOF_APP


@pytest.mark.parametrize("engine", ENGINES)
async def test_call_sends_protocol_by_smpp_and_records_receipt(sandbox, app_config, tmp_path, engine, request):
    require_smpp_peer()
    # on PostgreSQL with 40 ms prompts for what only takes time: the SQLite run covers the full call
    pg = {"storage": {"url": request.getfixturevalue("pg_cluster").new_database("sms")},
          "prompts": {"custom_directory": str(short_prompts(sandbox.run_dir / "sms-pg-short"))},
          "protocol_reading": {"repeat": 0, "replay_window_ms": 0}} if engine == "postgresql" else {}
    peer = SmppPeer(tmp_path / "peer.jsonl", 0, "--dlr").start()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg_path = write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP}, **pg,
        sms={"backend": "smpp", "poll_interval_seconds": 0.2},
        **{"sms.smpp": {"port": peer.port, "system_id": SYSTEM_ID, "password": PASSWORD,
                        "source_addr": "ACME", "submit_timeout_seconds": 5.0}})
    app = ObservedApplication(load_sandbox_config(cfg_path))
    await app.start()
    runner = asyncio.ensure_future(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), 20)
        harness = CallHarness(app, sandbox, run_dir)
        call = await harness.place("11987650042", record=False, variables={"CALLPROOF_APP": APP})
        flow = await app.wait_flow(call.prefix, timeout=90)
        row = await harness.wait_call_row(flow, {"completed", "handed_off"}, timeout=30)
        protocol = row["protocol"]
        sms = await harness.wait_sms_state(protocol, {"sent"}, timeout=30)
        [rec] = [r for r in peer.wait_for(1) if r["event"] == "submit_sm"]
        assert rec["destination"] == "5511987650042" and rec["source"] == "ACME"
        assert protocol in decode_text(rec) and decode_text(rec) == sms["body"]
        assert sms["gateway_message_id"] == rec["message_id"]
        for _ in range(100):
            sms = (await app.db.outbox.get_for_protocol(protocol))[0]
            if sms["dlr_state"]:
                break
            await asyncio.sleep(0.1)
        assert sms["dlr_state"] == "DELIVRD"
        assert [d["status"] for d in await app.db.outbox.dlrs(sms["id"])] == ["DELIVRD"]
        assert [a["outcome"] for a in await app.db.outbox.attempts(sms["id"])] == ["accepted"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()
        peer.stop()
