"""Several OS processes allocate protocols from one database file at once.

Four processes use the async API (``db.protocols.allocate_for_call``), one
uses ``storage.protocols.allocate_sync`` on a plain sqlite3 connection.  They
all start on a database file that does not exist yet, released together by a
start gate, so the first-open migration race is exercised too.  Afterwards
the year's protocols must be exactly 1..total: no duplicates, no gaps.

Needs no Asterisk; this file doubles as the worker script
(``python test_allocator_processes.py async|sync DB NAME N GATE_DIR``).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASYNC_PROCESSES = 4
SYNC_PROCESSES = 1
PER_PROCESS = 200
YEAR = 2026
BUSY_TIMEOUT_MS = 60_000
AT = "2026-06-01T12:00:00Z"
MOBILE = "+5511912345678"


# ---------------------------------------------------------------- workers --

def _wait_for_gate(gate: Path, name: str) -> None:
    (gate / f"ready-{name}").touch()
    deadline = time.monotonic() + 120
    while not (gate / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("start gate never opened")
        time.sleep(0.001)


def _new_call(name: str, i: int):
    from callproof.storage import NewCall

    return NewCall(f"{name}-{i}", f"{name}.{i}", f"{name}.{i}", MOBILE, MOBILE, None,
                   "4000", "pt_BR", AT)


def _sms():
    from callproof.storage import SmsDraft

    return SmsDraft(MOBILE, "pt_BR", lambda p: f"Protocolo {p}")


def _async_worker(db_path: str, name: str, n: int, gate: Path) -> list[str]:
    import asyncio

    from callproof.storage import Database

    async def run() -> list[str]:
        got = []
        async with Database.open(db_path, busy_timeout_ms=BUSY_TIMEOUT_MS) as db:
            for i in range(n):
                call_id = await db.calls.create(_new_call(name, i))
                result = await db.protocols.allocate_for_call(
                    call_id, year=YEAR, allocated_at=AT, sms=_sms())
                await db.audit.append("protocol.allocated", name, protocol=result.protocol)
                got.append(result.protocol)
        return got

    _wait_for_gate(gate, name)
    return asyncio.run(run())


def _sync_worker(db_path: str, name: str, n: int, gate: Path) -> list[str]:
    from callproof.storage import allocate_sync, connect_sync
    from callproof.storage.audit import append_sync
    from callproof.storage.calls import create_sync

    _wait_for_gate(gate, name)
    conn = connect_sync(db_path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    got = []
    try:
        for i in range(n):
            call_id = create_sync(conn, _new_call(name, i), AT)
            result = allocate_sync(conn, year=YEAR, allocated_at=AT, call_id=call_id, sms=_sms())
            append_sync(conn, "protocol.allocated", name, AT, protocol=result.protocol)
            got.append(result.protocol)
    finally:
        conn.close()
    return got


if __name__ == "__main__":
    mode, db_arg, name_arg, n_arg, gate_arg = sys.argv[1:6]
    worker = {"async": _async_worker, "sync": _sync_worker}[mode]
    print(json.dumps(worker(db_arg, name_arg, int(n_arg), Path(gate_arg))))
    sys.exit(0)


# ------------------------------------------------------------------ test --

def test_processes_share_one_gapless_sequence(tmp_path):
    db_path = tmp_path / "callproof.db"  # does not exist yet: all processes race to create it
    gate = tmp_path / "gate"
    gate.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    modes = ["async"] * ASYNC_PROCESSES + ["sync"] * SYNC_PROCESSES
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, mode, str(db_path), f"{mode}-{i}", str(PER_PROCESS),
             str(gate)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        for i, mode in enumerate(modes)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(gate.glob("ready-*"))) < len(procs):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died before the gate"
            time.sleep(0.01)
        (gate / "go").touch()
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    per_process = []
    for p, (out, err) in zip(procs, outputs, strict=False):
        assert p.returncode == 0, err
        per_process.append(json.loads(out))

    total = PER_PROCESS * len(procs)
    everything = [protocol for got in per_process for protocol in got]
    assert len(everything) == total
    assert len(set(everything)) == total, "duplicate protocol numbers"
    assert sorted(everything) == [f"{YEAR:04d}{n:013d}" for n in range(1, total + 1)]
    for got in per_process:
        assert len(got) == PER_PROCESS and got == sorted(got)  # increasing within a process
    ranges = sorted((got[0], got[-1]) for got in per_process)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ranges)), (
        f"processes did not overlap in time, nothing was tested: {ranges}")

    conn = sqlite3.connect(db_path)
    try:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        assert q("SELECT year, last_value FROM protocol_sequences") == [(YEAR, total)]
        assert q("SELECT count(*), min(sequence), max(sequence) FROM protocols") == [
            (total, 1, total)]
        assert q("SELECT count(*) FROM calls WHERE protocol IS NULL") == [(0,)]
        assert q("SELECT count(*) FROM calls WHERE status = 'protocol_reading'") == [(total,)]
        assert q("SELECT count(*), count(DISTINCT protocol) FROM sms_outbox"
                 " WHERE state = 'pending'") == [(total, total)]
        from callproof.storage.db import load_migrations
        # Each migration applied exactly once although five processes raced to open a new file.
        assert q("SELECT count(*) FROM schema_migrations") == [(len(load_migrations()),)]
        assert q("SELECT count(*) FROM audit_log") == [(total,)]
    finally:
        conn.close()

    from callproof.storage.audit import verify_chain_sync

    conn = sqlite3.connect(db_path)
    try:
        assert verify_chain_sync(conn) is None  # five processes, one intact chain
    finally:
        conn.close()
