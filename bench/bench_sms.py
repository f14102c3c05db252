"""Outbox drain rate to a real SMPP peer vs that peer's own maximum accept rate.

    python bench/bench_sms.py [--n 400] [--window 10] [--rounds 3] [--batch 50]

The peer is tests/peers/smpp_peer.pl (Net::SMPP, one connection, loopback;
Debian libnet-smpp-perl).  In the same run:

  peer max     a minimal raw SMPP client binds, writes N pre-built submit_sm
               PDUs back to back (unbounded window) and reads the N
               submit_sm_resp: the fastest this peer accepts messages
               (the baseline);
  peer w1, peer wW
               the same raw client with at most 1 / W submit_sm outstanding:
               a check that the window alone does not explain the gap (the
               same N, the same PDU: data_coding 0, no receipt requested, as
               SmppBackend sends it here);
  window 1     N outbox rows drained by OutboxSender + SmppBackend with one
               submit_sm outstanding at a time (every attempt persisted
               before sending, answer persisted after);
  window W     the same with W outstanding (--window, default = [sms] window).

Rounds alternate the order; the median is reported.  The figure is the ratio
drain rate / peer max (target >= 0.8 for the configured window), where peer
max is the better of the unbounded and the same-window raw client.  For each
drain the CPU time per message is printed too: our whole process, its event
loop thread (the rest is SQLite's thread), and the peer (from /proc, Linux):
on a 2-core machine the peer and the sender share the same two cores, so
this is where the rate is decided.  The last line is the same figures as one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callproof.sms import OutboxSender  # noqa: E402
from callproof.sms.smpp import SmppBackend, SmppSettings  # noqa: E402
from callproof.storage import Database, NewCall, SmsDraft  # noqa: E402

SYSTEM_ID, PASSWORD = "bench", "b3nchpw"


def start_peer(log: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(["perl", str(ROOT / "tests" / "peers" / "smpp_peer.pl"), "--port", "0",
                             "--log", str(log), "--system-id", SYSTEM_ID, "--password", PASSWORD],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        raise SystemExit(f"SMPP peer did not start ({line!r}); is libnet-smpp-perl installed?")
    return proc, int(line.split()[1])


def pdu(command_id: int, seq: int, body: bytes) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


async def read_pdu(reader: asyncio.StreamReader) -> tuple[int, int, int]:
    head = await reader.readexactly(16)
    length, cmd, status, seq = struct.unpack(">IIII", head)
    await reader.readexactly(length - 16)
    return cmd, status, seq


async def peer_rate(port: int, n: int, window: int | None = None) -> float:
    """A minimal raw SMPP client: N pre-built submit_sm, at most ``window``
    outstanding (None: all written back to back), reading the N submit_sm_resp."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(pdu(0x09, 1, cstr(SYSTEM_ID) + cstr(PASSWORD) + cstr("") + bytes([0x34, 0, 0]) + cstr("")))
    cmd, status, _ = await read_pdu(reader)
    assert cmd == 0x80000009 and status == 0, "bind refused"
    text = b"ACME: protocolo de atendimento 20260000000000001 em 10/03/2026 14:00."
    # registered_delivery 0 and data_coding 0 (GSM-7 default alphabet, one octet per character,
    # as callproof.sms.smpp_pdu sends it), like the SmppBackend in drain_rate (request_dlr=False)
    pdus = [pdu(0x04, 2 + i, cstr("") + bytes([5, 0]) + cstr("ACME") + bytes([1, 1])
                + cstr("5511912345678") + bytes([0, 0, 0]) + cstr("") + cstr("")
                + bytes([0, 0, 0, 0, len(text)]) + text) for i in range(n)]
    first = n if window is None else min(window, n)
    t0 = time.perf_counter()
    writer.write(b"".join(pdus[:first]))
    for i in range(n):
        cmd, status, _ = await read_pdu(reader)
        assert cmd == 0x80000004 and status == 0
        if first + i < n:
            writer.write(pdus[first + i])  # one answer frees one slot
    elapsed = time.perf_counter() - t0
    writer.write(pdu(0x06, 10**6, b""))
    await read_pdu(reader)
    writer.close()
    return n / elapsed


def peer_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


CPU: dict[str, list[dict]] = {}  # drain name -> per round: CPU microseconds per message


async def drain_rate(port: int, n: int, window: int, workdir: Path, batch: int = 50,
                     peer_pid: int | None = None, name: str = "") -> float:
    db_path = workdir / f"bench-{window}-{time.monotonic_ns()}.db"
    now = datetime.now(UTC).isoformat()
    async with Database.open(db_path) as db:
        for i in range(n):
            call_id = await db.calls.create(NewCall(f"b{i}", None, None, "+5511912345678", "+5511912345678",
                                                    None, None, "pt_BR", now))
            await db.protocols.allocate_for_call(
                call_id, year=datetime.now(UTC).year, allocated_at=now,
                sms=SmsDraft("+5511912345678", "pt_BR",
                             lambda p: f"ACME: protocolo de atendimento {p} em 10/03/2026 14:00."))
        backend = SmppBackend(SmppSettings(port=port, system_id=SYSTEM_ID, password=PASSWORD,
                                           source_addr="ACME", request_dlr=False))
        sender = OutboxSender(db, backend, window=window, batch_size=max(batch, window), lease_seconds=60)
        await backend.send({"id": 0, "destination": "+5511900000000", "body": "warm-up bind"})
        q0 = peer_cpu_seconds(peer_pid) if peer_pid else None
        c0, m0 = time.process_time(), time.thread_time()
        t0 = time.perf_counter()
        done = 0
        while done < n:
            done += await sender.drain_once()
        elapsed = time.perf_counter() - t0
        c1, m1 = time.process_time(), time.thread_time()
        q1 = peer_cpu_seconds(peer_pid) if peer_pid else None
        CPU.setdefault(name, []).append({
            "process_us": 1e6 * (c1 - c0) / n, "event_loop_us": 1e6 * (m1 - m0) / n,
            "peer_us": 1e6 * (q1 - q0) / n if q0 is not None and q1 is not None else float("nan")})
        states = await db.outbox.counters()
        await backend.close()
        assert states["states"].get("sent") == n, states
    return n / elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=50, help="rows claimed per transaction ([sms] batch_size)")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, port = start_peer(work / "peer.jsonl")
        try:
            w = args.window
            # the baselines: the same peer, N messages, the same PDU, no database, no library
            drains = {"window_1": 1, f"window_{w}": w}
            peers = {"peer_max": None, "peer_w1": 1, f"peer_w{w}": w}
            results: dict[str, list[float]] = {k: [] for k in [*peers, *drains]}
            for r in range(args.rounds):
                order = list(results) if r % 2 == 0 else list(reversed(results))
                for name in order:
                    if name in peers:
                        results[name].append(await peer_rate(port, args.n, peers[name]))
                    else:
                        results[name].append(await drain_rate(port, args.n, drains[name], work, args.batch,
                                                              proc.pid, name))
        finally:
            proc.kill()
            proc.wait()
    med = {k: statistics.median(v) for k, v in results.items()}
    w = args.window
    # the peer's maximum: the best raw-client figure (unbounded or W outstanding), so a
    # noisy unbounded run cannot flatter the ratio
    best = max(med["peer_max"], med[f"peer_w{w}"])
    print(f"messages per round: {args.n}, rounds: {args.rounds}, claim batch: {args.batch} (median shown);"
          f" load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    for name in ("peer_max", "peer_w1", f"peer_w{w}"):
        print(f"  {name:>10}: {med[name]:8.0f} msg/s   (raw client baseline)")
    ratios = {}
    for name, same in (("window_1", "peer_w1"), (f"window_{w}", f"peer_w{w}")):
        ratios[f"{name}_ratio"] = med[name] / best  # the target's figure
        ratios[f"{name}_ratio_same_window"] = med[name] / med[same]
        print(f"  {name:>10}: {med[name]:8.0f} msg/s   ratio vs peer max {med[name] / best:5.2f}"
              f"   (vs raw client, same window: {med[name] / med[same]:5.2f})")
    cpu = {}
    for name in drains:
        per = {k: statistics.median(r[k] for r in CPU[name]) for k in ("process_us", "event_loop_us", "peer_us")}
        cpu.update({f"{name}_{k}": round(v, 1) for k, v in per.items()})
        print(f"  {name:>10}: CPU per message: callproof {per['process_us']:.0f} us (event loop"
              f" {per['event_loop_us']:.0f}, SQLite thread {per['process_us'] - per['event_loop_us']:.0f}),"
              f" peer {per['peer_us']:.0f} us")
    print(json.dumps({"n": args.n, "rounds": args.rounds, "batch": args.batch, "window": w,
                      "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
                      "peer_best_per_s": round(best, 1),
                      **{f"{k}_per_s": round(v, 1) for k, v in med.items()},
                      **{k: round(v, 3) for k, v in ratios.items()}, **cpu}))

if __name__ == "__main__":
    asyncio.run(main())
