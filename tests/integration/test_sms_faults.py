"""SMS under faults, against the real test SMSC (tests/peers/smpp_peer.pl,
Net::SMPP): the SMSC stopped and started again while calls come in (its
message ids start over, its receipts arrive before the answer that carries
the id), and a sender killed with SIGKILL and started again.

What is asserted is what a caller and an operator would see: every caller
heard the announcement once and then their own protocol; every protocol
reached the SMSC exactly once; every row has its own receipt (none written
against an older row that had the same id, no older row's receipt changed);
a restarted sender sends what its killed predecessor held at once, not when
the lease runs out.  The figures (before/after) come from
bench/bench_sms_faults.py."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callproof.demo import load_sandbox_config, write_config
from callproof.storage import Database
from callproof.storage.timefmt import parse_db_time

from .harness import CallHarness, ObservedApplication
from .sms_peers import PASSWORD, SYSTEM_ID, SmppPeer, free_port, require_smpp_peer
from .test_sms_smpp import by_text, queue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
APP = "callproofsmsfault"  # letters only (the entry dialplan's FILTER)
ROOT = Path(__file__).resolve().parents[2]
_PLAYING = re.compile(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'")


def heard(sandbox, prefix: str) -> list[str]:
    """What Asterisk's log says it played to the caller's side of a call, in order
    (prompt names, each digit as itself, pauses left out)."""
    out = []
    for line in sandbox.console_log.read_text(errors="replace").splitlines():
        m = _PLAYING.search(line)
        if m and m["chan"] == prefix + ";2":
            name = Path(m["file"]).name.rsplit(".", 1)[0]
            if name != "pause":
                out.append(name)
    return out


async def eventually(check, timeout: float, what: str):
    end = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_calls_while_the_smsc_restarts_and_reuses_its_ids(sandbox, app_config, tmp_path):
    require_smpp_peer()
    port = free_port()
    # the first run of the SMSC loses one receipt (its row will never get one)
    first_peer = SmppPeer(tmp_path / "peer1.jsonl", port, "--dlr", "--dlr-skip", "1").start()
    second_peer = SmppPeer(tmp_path / "peer2.jsonl", port, "--dlr", "--dlr-first")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg_path = write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP},
        protocol_reading={"repeat": 0},  # read once: the call's length is not what this test is about
        sms={"backend": "smpp", "poll_interval_seconds": 0.2, "backoff_base_seconds": 0.2,
             "backoff_max_seconds": 1.0, "max_attempts": 100},  # tries while the SMSC is down must not kill it
        **{"sms.smpp": {"port": port, "system_id": SYSTEM_ID, "password": PASSWORD, "source_addr": "ACME",
                        "submit_timeout_seconds": 2.0, "enquire_link_seconds": 5.0}})
    config = load_sandbox_config(cfg_path)
    app = ObservedApplication(config)
    await app.start()
    runner = asyncio.ensure_future(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), 20)
        harness = CallHarness(app, sandbox, run_dir)
        assert app.sender is not None and app.sender.identity.exclusive  # the shipped default: a named sender

        async def place(callers):
            calls = await asyncio.gather(*(harness.place(c, record=False, variables={"CALLPROOF_APP": APP})
                                           for c in callers))
            flows = await asyncio.gather(*(app.wait_flow(c.prefix, timeout=60) for c in calls))
            return list(zip(calls, flows, strict=True))

        async def sms_rows(flows):
            rows = []
            for _, flow in flows:
                row = await app.db.calls.get(flow.call_id)
                if row is None or not row["protocol"]:
                    return None
                rows += await app.db.outbox.get_for_protocol(row["protocol"])
            return rows

        first = await place(["11987650101", "11987650102"])

        async def first_done():
            rows = await sms_rows(first)
            return rows if rows and all(r["state"] == "sent" for r in rows) and sum(
                bool(r["dlr_state"]) for r in rows) == 1 else None
        before = {r["id"]: r for r in await eventually(first_done, 60, "the first calls' SMS and receipt")}
        first_peer.stop()  # the SMSC goes away while calls come in ...

        second = await place(["11987650103", "11987650104"])
        pending = await eventually(lambda: sms_rows(second), 60, "the second calls' protocols")
        assert {r["state"] for r in pending} <= {"pending", "sending"}  # nobody to send them to
        second_peer.start()  # ... and comes back: ids start over, receipts come before the answers

        async def second_done():
            rows = await sms_rows(second)
            return rows if rows and all(r["state"] == "sent" and r["dlr_state"] for r in rows) else None
        after = await eventually(second_done, 60, "the second calls' SMS and receipts")

        # the SMSC gave the second calls the ids it had given the first ones
        assert {r["gateway_message_id"] for r in after} == {r["gateway_message_id"] for r in before.values()}
        for row in after:  # each new row has exactly its own receipt
            [dlr] = await app.db.outbox.dlrs(row["id"])
            assert (dlr["gateway_message_id"], dlr["status"]) == (row["gateway_message_id"], "DELIVRD")
            assert dlr["matched_by"] == "reused_id"
        for oid, old in before.items():  # the older rows' receipts are as they were
            now = await app.db.outbox.get(oid)
            assert (now["dlr_state"], now["dlr_at"]) == (old["dlr_state"], old["dlr_at"])
            assert len(await app.db.outbox.dlrs(oid)) == (1 if old["dlr_state"] else 0)
        receipts_sent = len(first_peer.records("receipt")) + len(second_peer.records("receipt"))
        assert receipts_sent == 3

        # every protocol reached the SMSC once, in the text of its own call's SMS
        texts = by_text(first_peer.records() + second_peer.records())
        assert sorted(texts) == sorted(r["body"] for r in [*before.values(), *after])
        assert set(texts.values()) == {1}

        # and the callers heard the announcement once, then their own protocol
        readings = 1 + config.protocol_reading.repeat
        for call, flow in first + second:
            row = await harness.wait_call_row(flow, {"completed", "handed_off"}, timeout=60)
            assert heard(sandbox, call.prefix) == ["consent"] + ["protocol-is", *row["protocol"]] * readings
            assert [t for t in texts if row["protocol"] in t] == [
                r["body"] for r in await app.db.outbox.get_for_protocol(row["protocol"])]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()
        first_peer.stop()
        second_peer.stop()


async def test_receipts_ahead_of_their_answers_after_an_smsc_restart(tmp_path):
    """Ten messages, three of whose receipts the SMSC loses; the SMSC restarts,
    ten more get the same ids and each receipt arrives before its answer."""
    require_smpp_peer()
    from .test_sms_smpp import backend_for, sender_for

    port = free_port()
    first_peer = SmppPeer(tmp_path / "peer1.jsonl", port, "--dlr", "--dlr-skip", "3").start()
    second_peer = SmppPeer(tmp_path / "peer2.jsonl", port, "--dlr", "--dlr-first")
    async with Database.open(tmp_path / "cp.db") as db:
        backend = backend_for(port)
        sender = sender_for(db, backend)
        task = asyncio.create_task(sender.run())
        try:
            first = await queue(db, [f"a{i} {{protocol}}" for i in range(10)])

            async def done(ids, receipts):
                rows = [await db.outbox.get(i) for i in ids]
                return rows if all(r["state"] == "sent" for r in rows) and sum(
                    bool(r["dlr_state"]) for r in rows) == receipts else None
            before = await eventually(lambda: done(first, 7), 30, "the first run")
            first_peer.stop()
            second = await queue(db, [f"b{i} {{protocol}}" for i in range(10)])
            sender.wake()
            second_peer.start()
            after = await eventually(lambda: done(second, 10), 30, "the second run")
            assert {r["gateway_message_id"] for r in after} == {r["gateway_message_id"] for r in before}
            for row in after:
                assert [(d["gateway_message_id"], d["matched_by"]) for d in await db.outbox.dlrs(row["id"])] == [
                    (row["gateway_message_id"], "reused_id")]
            for old in before:
                assert await db.outbox.get(old["id"]) == old
            assert set(by_text(first_peer.records() + second_peer.records()).values()) == {1}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await backend.close()
            first_peer.stop()
            second_peer.stop()


SENDER_SCRIPT = """
import asyncio, sys
from callproof.sms import OutboxSender
from callproof.sms.smpp import SmppBackend, SmppSettings
from callproof.storage import Database

async def main(db_path, port, system_id, password):
    async with Database.open(db_path) as db:
        backend = SmppBackend(SmppSettings(port=int(port), system_id=system_id, password=password,
                                           source_addr="ACME", submit_timeout_seconds=5.0))
        sender = OutboxSender(db, backend, instance="smsnode", lease_seconds=60, poll_interval=0.1, window=10,
                              batch_size=50, send_timeout=5.0, backoff_base=0.2, backoff_max=1.0)
        await sender.run()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_killed_sender_restarted_sends_what_it_held_at_once(tmp_path):
    require_smpp_peer()
    port = free_port()
    db_path = tmp_path / "cp.db"
    async with Database.open(db_path) as db:
        ids = await queue(db, [f"k{i:02d} {{protocol}}" for i in range(12)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", SENDER_SCRIPT, str(db_path), str(port), SYSTEM_ID, PASSWORD]
    peer = SmppPeer(tmp_path / "peer.jsonl", port)
    first = subprocess.Popen(args, env=env, start_new_session=True)
    second = None
    try:
        async with Database.open(db_path) as db:
            async def all_held():
                rows = [await db.outbox.get(i) for i in ids]
                return rows if all(r["state"] == "sending" for r in rows) else None
            try:  # the SMSC is down: the sender holds every row, none written to a socket
                held = await eventually(all_held, 20, "the first sender to claim the rows")
            finally:
                os.kill(first.pid, signal.SIGKILL)
                first.wait(5)
            owner = held[0]["lease_owner"]
            assert owner.endswith(":smsnode") and {r["lease_owner"] for r in held} == {owner}
            lease_until = min(parse_db_time(r["lease_until"]) for r in held)
            peer.start()
            second = subprocess.Popen(args, env=env, start_new_session=True)

            async def all_sent():
                rows = [await db.outbox.get(i) for i in ids]
                return rows if all(r["state"] == "sent" for r in rows) else None
            rows = await eventually(all_sent, 90, "the restarted sender to send the rows")
            resent_by = datetime.now(UTC)
            assert resent_by < lease_until  # sent again before the killed sender's lease ran out
            for r in rows:
                attempts = await db.outbox.attempts(r["id"])
                assert [a["outcome"] for a in attempts] == ["unknown", "accepted"]
                assert {a["owner"] for a in attempts} == {owner}  # the same name across the restart
                assert parse_db_time(attempts[-1]["started_at"]) < lease_until
            counts = by_text(peer.records())  # none was on the wire at the kill: none twice
            assert sorted(counts) == sorted(r["body"] for r in rows) and set(counts.values()) == {1}
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
        peer.stop()
