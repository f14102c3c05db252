"""Two ``callproof run`` instances serve one Asterisk (docs/scale-out.md#two-applications-per-node).

The real processes (``[ari] instance`` a and b: applications ``cptwo_a``, ``cptwo_b``) share
one database; the dialplan offers each call to both with StasisBroadcast() and the first to
claim it gets it.  (a) With both up, calls go to either and every one is served in full.
(b) With two calls on instance a -- one inside the recording announcement, one inside the
protocol reading -- a is SIGKILLed: b takes a's lease over once it expires, moves both
calls into its application and resumes them from their stored step; what each caller heard
(Asterisk's own log of playbacks) has the announcement once and the protocol as configured,
and the rows say who serves them now and that they were moved.  (c) The first call placed
after the kill is answered by b; the time from dialling to its row is printed (the figure
goes in docs/scale-out.md; the assertion's bound is deliberately generous).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import originate_call
from callproof.storage import open_database

from .harness import sha256_of
from .test_agi_calls import handoffs_of, heard_sequence, wait_final_recording, wait_row, wait_sms
from .test_fallback_calls import wait_handoff
from .test_fault_app_killed import RunProcess

pytestmark = pytest.mark.integration

GROUP = "cptwo"
HEARTBEAT, LEASE = 1.0, 5.0  # seconds; the defaults are 2 / 10 (docs/scale-out.md)


@pytest.fixture(scope="module")
def config_path(sandbox, app_config) -> Path:
    run_dir = sandbox.run_dir / "two-instances"
    run_dir.mkdir(exist_ok=True)
    return write_config(sandbox, run_dir, app_config.prompts.directory, logging={"level": "INFO"},
                        ari={"app": GROUP, "heartbeat_seconds": HEARTBEAT, "lease_seconds": LEASE})


@pytest.fixture(scope="module")
async def db(config_path):
    database = await open_database(load_sandbox_config(config_path))
    yield database
    await database.close()


class Instance(RunProcess):
    """``callproof run`` with ``CALLPROOF_ARI_INSTANCE`` set (the one config file for both)."""

    def __init__(self, config_path: Path, name: str):
        super().__init__(config_path)
        self.name = name
        self.log = config_path.parent / f"callproof-run-{name}.log"
        # The module's tests share the log file: this instance reads only what it wrote.  (Counting
        # from the file's start, the second test's "a connected" was the first test's line: its
        # first call was placed before the new a had registered, nobody claimed it, and it fell
        # to the fallback -- the "restarted a gets no CallBroadcast" of #14.)
        self._offset = self.log.stat().st_size if self.log.exists() else 0

    def text(self) -> str:
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    def connections(self) -> int:
        return self.text().count('"ari.connected"')

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPROOF_")}
        env["CALLPROOF_ARI_INSTANCE"] = self.name
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "callproof.cli", "--config", str(self.config_path),
                                          "run"], stdout=subprocess.DEVNULL, stderr=log, env=env,
                                         start_new_session=True)

    def logged(self, name: str) -> int:
        return self.text().count(f'"{name}"')


async def place(sandbox, caller: str) -> dict:
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=120,
                                   variables={"CALLPROOF_APP": GROUP, "CALLPROOF_BROADCAST": "yes",
                                              # a loaded CI host: a claim may take longer than 500 ms
                                              "CALLPROOF_CLAIM_MS": "5000"})


async def row_of(db, linkedid: str) -> dict | None:
    return await db.run_in_connection(lambda c: (lambda r: None if r is None else dict(r))(
        c.execute("SELECT * FROM calls WHERE linkedid = ?", (linkedid,)).fetchone()))


async def wait_row_exists(db, linkedid: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await db.run_in_connection(lambda c: c.execute(
            "SELECT id FROM calls WHERE linkedid = ?", (linkedid,)).fetchall())
        if rows:
            return await wait_row(db, linkedid, {"consent_playing", "protocol_given", "protocol_reading",
                                                 "recording", "handed_off", "completed"}, timeout=5)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no call row for {linkedid} within {timeout} s")


async def served_in_full(db, sandbox, ami_events, calls: dict[str, dict]) -> dict[str, dict]:
    """Every call completed: one SMS, one finalised recording, one hand-off report 'ok'."""
    rows = dict(zip(calls, await asyncio.gather(*(
        wait_row(db, ch["id"], {"completed"}, timeout=150) for ch in calls.values())), strict=True))
    for name, row in rows.items():
        report = await wait_handoff(ami_events, calls[name], timeout=10)
        sms = await wait_sms(db, row["protocol"], {"logged"}, timeout=30)
        assert row["served_by"] == "ari" and row["consent_outcome"] == "finished", (name, row)
        assert row["protocol_read_count"] == 2, (name, row)
        assert len(await db.outbox.get_for_protocol(row["protocol"])) == 1 and sms["state"] == "logged", name
        assert len(await db.recordings.for_call(row["id"])) == 1, name
        rec = await wait_final_recording(db, row["id"])
        assert rec["state"] == "finalised" and rec["sha256"] == sha256_of(Path(rec["path"])), (name, rec)
        assert (report["Status"], report["Protocol"]) == ("ok", row["protocol"]), (name, report)
        assert len(handoffs_of(ami_events, calls[name])) == 1, name
    return rows


async def test_both_instances_serve_calls(sandbox, config_path, db, ami_events):
    instances = [Instance(config_path, "a"), Instance(config_path, "b")]
    try:
        for inst in instances:
            inst.start()
        for inst in instances:
            await inst.wait_connected(1)
        calls = {f"c{i}": await place(sandbox, f"1198765310{i}") for i in range(4)}
        rows = await served_in_full(db, sandbox, ami_events, calls)
    finally:
        for inst in instances:
            inst.stop()
    by_app = {row["ari_app"] for row in rows.values()}
    print(f"calls per instance: { {app: [r['ari_app'] for r in rows.values()].count(app) for app in by_app} }")
    assert by_app <= {f"{GROUP}_a", f"{GROUP}_b"}, by_app
    for name in calls:
        heard = heard_sequence(sandbox, calls[name])
        assert heard.count("consent") == 1 and heard.count("protocol-is") == 2, (name, heard)
    protocols = sorted(int(r["protocol"]) for r in rows.values())
    assert protocols == list(range(protocols[0], protocols[0] + len(protocols))), "one gap-free sequence"


async def test_sigkill_one_instance_the_other_resumes_its_calls_and_takes_new_ones(sandbox, config_path, db,
                                                                                    ami_events):
    a, b = Instance(config_path, "a"), Instance(config_path, "b")
    calls: dict[str, dict] = {}
    try:
        a.start()  # alone at first: the two calls in flight are a's
        await a.wait_connected(1)
        calls["reading"] = await place(sandbox, "11987653201")
        await wait_row(db, calls["reading"]["id"], {"protocol_reading"}, timeout=40)
        calls["consent"] = await place(sandbox, "11987653202")
        await wait_row(db, calls["consent"]["id"], {"consent_playing"}, timeout=15)
        b.start()
        await b.wait_connected(1)
        await asyncio.sleep(0.5)  # inside the announcement of one, a reading of the other
        a.kill()
        killed_at = datetime.now(UTC)
        dialled = time.monotonic()
        calls["after"] = await place(sandbox, "11987653203")
        after = await wait_row_exists(db, calls["after"]["id"], timeout=15)
        answered_after = time.monotonic() - dialled
        print(f"first call after the SIGKILL: its row (answered by {after['ari_app']}) "
              f"{answered_after * 1000:.0f} ms after dialling")
        rows = await served_in_full(db, sandbox, ami_events, calls)
        assert b.logged("ari.takeover") == 1, b.text()[-3000:]
    finally:
        a.stop()
        b.stop()
    assert after["ari_app"] == f"{GROUP}_b" and answered_after < 10, (after, answered_after)
    for name in ("reading", "consent"):
        row = rows[name]
        assert row["ari_app"] == f"{GROUP}_b", (name, row["ari_app"])  # the survivor serves it now
        moves = await db.ari_leases.takeovers(row["channel_id"])
        assert [(m["from_app"], m["to_app"], m["outcome"]) for m in moves] == [
            (f"{GROUP}_a", f"{GROUP}_b", "moved")], (name, moves)
        assert "disconnected" not in (row["hangup_cause"] or ""), (name, row["hangup_cause"])
    assert rows["after"]["ari_app"] == f"{GROUP}_b"
    taken = [datetime.fromisoformat((await db.ari_leases.takeovers(rows[n]["channel_id"]))[0]["taken_at"])
             for n in ("reading", "consent")]
    print(f"in-flight calls moved to the survivor {(min(taken) - killed_at).total_seconds():.1f} s after the SIGKILL"
          f" (heartbeat {HEARTBEAT:g} s, lease {LEASE:g} s)")
    heard = {name: heard_sequence(sandbox, ch) for name, ch in calls.items()}
    for name in calls:
        assert heard[name][0] == "consent" and heard[name].count("consent") == 1, (name, heard[name])
    # a reading whose play request the kill caught before its id was stored is played again
    # (docs/architecture.md#after-an-ari-drop): at most once more, only that call
    assert heard["reading"].count("protocol-is") in (2, 3), heard["reading"]
    assert heard["consent"].count("protocol-is") == 2 and heard["after"].count("protocol-is") == 2, heard
    lease = await db.ari_leases.get(f"{GROUP}_a")
    assert lease is not None and lease.state == "released" and lease.holder == f"{GROUP}_b", lease
