"""SMS under an SMSC restart and a sender kill -9, measured against the real test SMSC.

    python bench/bench_sms_faults.py [--n 10] [--lost 3] [--lease 60] [--receipts first|after]

Needs perl with Net::SMPP (tests/peers/smpp_peer.pl).  Two scenarios:

restart   N messages sent with receipts; the receipts of the first --lost of
          them never come (the SMSC lost them).  The SMSC is stopped, N more
          messages are queued, the SMSC is started again on the same port: it
          hands out the same message ids again (perl000001, ...) and sends each
          receipt *before* the submit_sm_resp that carries the id (a receipt
          racing ahead of its acceptance; --receipts after: just after it).
          One sender runs throughout.
          Printed: receipts of the second run stored against another row or
          against none ("mismatched"), second-run rows left without a receipt,
          first-run rows whose dlr_state/dlr_at changed.
kill      a sender process holds N claimed rows while the SMSC is down (so none
          was written to a socket) and is killed with SIGKILL; the SMSC comes
          back and the same sender (same configured name) is started again.
          Printed: seconds from the restart to the first submit_sm at the SMSC
          and to the last row sent, compared with the lease (--lease), and the
          messages the SMSC received twice.

The last line is the figures as one JSON object.  The same script runs
against an older checkout to give the "before" figures (senders without a
configured name are then identified by host and pid, as they were).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callproof.sandbox.ports import free_port  # noqa: E402
from callproof.sms import OutboxSender  # noqa: E402
from callproof.sms.smpp import SmppBackend, SmppSettings  # noqa: E402
from callproof.storage import Database, NewCall, SmsDraft  # noqa: E402
from callproof.storage.timefmt import parse_db_time  # noqa: E402

SYSTEM_ID, PASSWORD = "bench", "b3nchpw"
PEER = ROOT / "tests" / "peers" / "smpp_peer.pl"
MOBILE = "+5511912345678"


class Peer:
    def __init__(self, log: Path, port: int) -> None:
        self.log, self.port = log, port
        self.proc: subprocess.Popen | None = None

    def start(self, *options: str) -> Peer:
        self.proc = subprocess.Popen(
            ["perl", str(PEER), "--port", str(self.port), "--log", str(self.log), "--system-id", SYSTEM_ID,
             "--password", PASSWORD, *options], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("LISTENING"):
            raise SystemExit(f"SMPP peer did not start ({line!r}); is libnet-smpp-perl installed?")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def records(self, event: str) -> list[dict]:
        if not self.log.exists():
            return []
        return [r for r in map(json.loads, self.log.read_text().splitlines()) if r.get("event") == event]


async def queue(db: Database, n: int, tag: str) -> list[int]:
    ids = []
    now = datetime.now(UTC).isoformat()
    for i in range(n):
        call_id = await db.calls.create(NewCall(f"{tag}{i}-{time.monotonic_ns()}", None, None, MOBILE, MOBILE,
                                                None, None, "pt_BR", now))
        r = await db.protocols.allocate_for_call(call_id, year=datetime.now(UTC).year, allocated_at=now,
                                                 sms=SmsDraft(MOBILE, "pt_BR", lambda p, t=tag: f"{t} {p}"))
        ids.append(r.outbox_id)
    return ids


async def until(what, timeout: float, step: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        value = await what()
        if value or time.monotonic() > end:
            return value
        await asyncio.sleep(step)


def all_receipts(conn) -> list[tuple]:
    return conn.execute("SELECT id, outbox_id, gateway_message_id FROM sms_dlrs ORDER BY id").fetchall()


async def restart_scenario(work: Path, n: int, lost: int, receipts: str) -> dict:
    port = free_port()
    log = work / "restart.jsonl"
    peer = Peer(log, port).start("--dlr", "--dlr-skip", str(lost))
    async with Database.open(work / "restart.db") as db:
        backend = SmppBackend(SmppSettings(port=port, system_id=SYSTEM_ID, password=PASSWORD, source_addr="ACME",
                                           submit_timeout_seconds=2.0, enquire_link_seconds=5.0))
        sender = OutboxSender(db, backend, lease_seconds=30, poll_interval=0.1, window=5, backoff_base=0.2,
                              backoff_max=1.0, send_timeout=4.0)
        task = asyncio.create_task(sender.run())
        try:
            first = await queue(db, n, "first")
            sender.wake()

            async def first_done() -> bool:
                rows = [await db.outbox.get(i) for i in first]
                return all(r["state"] == "sent" for r in rows) and sum(bool(r["dlr_state"]) for r in rows) >= n - lost
            if not await until(first_done, 30):
                raise SystemExit("the first run did not finish")
            await asyncio.sleep(0.3)  # a late receipt would show up now
            before = {i: await db.outbox.get(i) for i in first}
            seen = len(await db.run_in_connection(all_receipts))
            peer.stop()  # the SMSC goes away ...
            second = await queue(db, n, "second")
            sender.wake()
            await asyncio.sleep(0.5)
            peer.start("--dlr", *(["--dlr-first"] if receipts == "first" else []))  # ... back: ids from 1 again

            async def second_sent() -> bool:
                rows = [await db.outbox.get(i) for i in second]
                return all(r["state"] == "sent" for r in rows) and len(peer.records("receipt")) >= n - lost + n
            if not await until(second_sent, 30):
                raise SystemExit("the second run did not finish")

            async def stored() -> bool:
                return len(await db.run_in_connection(all_receipts)) >= seen + n
            await until(stored, 5)
            await asyncio.sleep(0.3)
            rows = {i: await db.outbox.get(i) for i in second}
            by_gw = {r["gateway_message_id"]: i for i, r in rows.items()}
            late = (await db.run_in_connection(all_receipts))[seen:]
            wrong_row = sum(1 for _, oid, gw in late if oid is not None and oid != by_gw.get(gw))
            no_row = sum(1 for _, oid, _ in late if oid is None)
            changed = 0
            for i in first:
                now_row = await db.outbox.get(i)
                changed += (now_row["dlr_state"], now_row["dlr_at"]) != (before[i]["dlr_state"], before[i]["dlr_at"])
            reused = len(set(by_gw) & {before[i]["gateway_message_id"] for i in first})
            return {"messages_per_run": n, "receipts_lost_in_first_run": lost, "receipts": receipts,
                    "ids_reused": reused,
                    "second_run_receipts": len(late), "receipts_on_another_row": wrong_row,
                    "receipts_on_no_row": no_row, "receipts_mismatched": wrong_row + no_row,
                    "second_run_rows_without_receipt": sum(1 for r in rows.values() if not r["dlr_state"]),
                    "first_run_rows_changed": changed}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await backend.close()
            peer.stop()


SENDER = """
import asyncio, inspect, sys
from callproof.sms import OutboxSender
from callproof.sms.smpp import SmppBackend, SmppSettings
from callproof.storage import Database

async def main(db_path, port, lease, system_id, password):
    async with Database.open(db_path) as db:
        backend = SmppBackend(SmppSettings(port=int(port), system_id=system_id, password=password, source_addr="ACME",
                                           submit_timeout_seconds=5.0))
        named = {"instance": "bench"} if "instance" in inspect.signature(OutboxSender).parameters else {}
        sender = OutboxSender(db, backend, lease_seconds=int(lease), poll_interval=0.1, window=10, batch_size=50,
                              send_timeout=5.0, backoff_base=0.2, backoff_max=1.0, **named)
        print("READY", flush=True)
        await sender.run()

asyncio.run(main(*sys.argv[1:]))
"""


async def kill_scenario(work: Path, n: int, lease: int) -> dict:
    port = free_port()
    db_path = work / "kill.db"
    async with Database.open(db_path) as db:
        ids = await queue(db, n, "kill")
    args = [sys.executable, "-c", SENDER, str(db_path), str(port), str(lease), SYSTEM_ID, PASSWORD]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    async with Database.open(db_path) as db:
        async def held() -> bool:
            return all(r["state"] == "sending" for r in [await db.outbox.get(i) for i in ids])
        try:
            if not await until(held, 20, 0.01):
                raise SystemExit("the first sender did not claim the rows")
        finally:
            os.kill(first.pid, signal.SIGKILL)  # claimed, waiting for the SMSC: never written
            first.wait()
        lease_until = min(parse_db_time(r["lease_until"]) for r in [await db.outbox.get(i) for i in ids])
        lease_left = (lease_until - datetime.now(UTC)).total_seconds()
        peer = Peer(work / "kill.jsonl", port).start()
        t0 = time.monotonic()
        second = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            first_at = None

            async def all_sent() -> bool:
                nonlocal first_at
                if first_at is None and peer.records("submit_sm"):
                    first_at = time.monotonic() - t0
                return all(r["state"] == "sent" for r in [await db.outbox.get(i) for i in ids])
            if not await until(all_sent, lease + 30, 0.02):
                raise SystemExit("the restarted sender did not send the rows")
            done_at = time.monotonic() - t0
            texts = [r["short_message_hex"] for r in peer.records("submit_sm")]
            return {"rows_held_at_kill": n, "lease_seconds": lease, "lease_left_at_restart_s": round(lease_left, 1),
                    "seconds_to_first_resend": round(first_at if first_at is not None else done_at, 2),
                    "seconds_to_all_resent": round(done_at, 2),
                    "duplicates_at_smsc": len(texts) - len(set(texts))}
        finally:
            second.kill()
            second.wait()
            peer.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="messages per run")
    ap.add_argument("--lost", type=int, default=3, help="first-run receipts the SMSC never sends")
    ap.add_argument("--lease", type=int, default=60, help="[sms] lease_seconds of the killed sender")
    ap.add_argument("--receipts", choices=("first", "after"), default="first",
                    help="second run: each receipt before or just after the answer with its id")
    ap.add_argument("--only", choices=("restart", "kill"))
    args = ap.parse_args()
    out: dict = {"code": "named senders" if "instance" in inspect.signature(OutboxSender).parameters
                 else "senders named by host and pid"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "restart"):
            out["restart"] = await restart_scenario(Path(tmp), args.n, args.lost, args.receipts)
            print("SMSC restart with reused ids:", ", ".join(f"{k} {v}" for k, v in out["restart"].items()))
        if args.only in (None, "kill"):
            out["kill"] = await kill_scenario(Path(tmp), args.n, args.lease)
            print("sender kill -9 and restart:", ", ".join(f"{k} {v}" for k, v in out["kill"].items()))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
