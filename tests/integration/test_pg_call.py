"""Real calls through the sandbox Asterisk with ``[storage] url`` on a real PostgreSQL.

An application of its own (Stasis app ``cppg``, 40 ms prompts) whose storage is a database
on the session's throw-away PostgreSQL cluster: the calls are completed, each with its
protocol, finalised recording, SMS row and audit entries in PostgreSQL, numbered 1..N, and
the audit chain is intact.  The same flow as on SQLite: only the configuration differs.

Then PostgreSQL stopped (``pg_ctl stop -m immediate``) under a call that is recording and
hangs up inside the outage, while another call arrives, and started 7 s later: the first
call heard everything and ends completed with its recording finalised from the journal, one
SMS; the second does what a call does when SQLite is locked (the announcement, the caller
routed, no protocol when none could be allocated, its row written from the journal once the
server is back, failed with ``storage_unavailable``).  And one call each through classic AGI
(inside the sandbox's chroot, on Debian's python3-psycopg, over loopback TCP with the password
from the secrets file) and FastAGI, with their rows in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows
import pytest

from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import Sandbox, originate_call

from .harness import ObservedApplication, running
from .test_call_state import short_prompts

pytestmark = pytest.mark.integration

APP = "cppg"


def pg_call_config(sandbox: Sandbox, app_config: Config, url: str, **storage: Any) -> Config:
    run_dir = sandbox.run_dir / f"pg-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    return load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP}, storage={"url": url, **storage},
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0}))


async def place(sandbox: Sandbox, caller: str, agent_seconds: int = 1) -> dict[str, Any]:
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=60,
                                   variables={"CALLPROOF_APP": APP, "SANDBOX_AGENT_SECONDS": str(agent_seconds)})


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


FINAL = {"completed", "failed", "abandoned_in_consent", "abandoned_in_protocol"}


def pg_rows(url: str, channels: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Each call's row as PostgreSQL has it, with its recordings and SMS rows (a connection of its
    own: what an auditor would read)."""
    out: dict[str, dict[str, Any] | None] = {}
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as pg:
        for ch in channels:
            row = pg.execute("SELECT * FROM calls WHERE linkedid = %s", (ch["id"],)).fetchone()
            if row is not None:
                row["recordings"] = pg.execute("SELECT * FROM recordings WHERE call_id = %s ORDER BY id",
                                               (row["id"],)).fetchall()
                row["sms"] = pg.execute("SELECT * FROM sms_outbox WHERE protocol = %s ORDER BY id",
                                        (row["protocol"],)).fetchall() if row["protocol"] else []
            out[ch["id"]] = row
    return out


async def wait_pg_final(url: str, channels: list[dict[str, Any]], timeout: float,
                        sender: bool = True) -> dict[str, dict[str, Any] | None]:
    """Until every call's row is final, its recordings settled and (``sender``: an SMS sender
    runs) its SMS attempted."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await asyncio.to_thread(pg_rows, url, channels)
        done = all(r is not None and r["status"] in FINAL and r["ended_at"]
                   and all(rec["state"] != "recording" for rec in r["recordings"])
                   and (not sender or all(m["state"] not in ("pending", "sending") for m in r["sms"]))
                   for r in rows.values())
        if done or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.3)


async def wait_pg_status(url: str, channel: dict[str, Any], statuses: set[str], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        row = (await asyncio.to_thread(pg_rows, url, [channel]))[channel["id"]]
        if row is not None and row["status"] in statuses:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"call {channel['id']} stayed {row and row['status']}, wanted {statuses}")


OUTAGE_SECONDS = 7.0
CALL_WAIT = 2.0


async def test_postgresql_stopped_during_a_call_and_while_one_arrives(sandbox, app_config, pg_cluster, ami_events):
    """PostgreSQL stopped (``pg_ctl stop -m immediate``: every connection cut) while a call is
    recording, its hang-up inside the outage, and another call arriving in it; started again
    ~7 s later.  What the callers heard, and what PostgreSQL says once it is back."""
    url = pg_cluster.new_database("outage")
    # the throw-away cluster's synchronous_commit = off would lose the last commits to the
    # immediate stop (a crash): what a production server, with the default "on", never does
    pg_cluster.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET synchronous_commit = on")
    config = pg_call_config(sandbox, app_config, url, call_wait_seconds=CALL_WAIT)
    app = ObservedApplication(config)
    async with running(app):
        during = await place(sandbox, "11987120001", agent_seconds=5)  # hangs up inside the outage
        await wait_pg_status(url, during, {"handed_off"})  # protocol given, recording running
        await asyncio.to_thread(pg_cluster.pg_ctl, "stop", "-m", "immediate")
        stopped = time.monotonic()
        try:
            arriving = await place(sandbox, "11987120002")
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        finally:
            await asyncio.to_thread(pg_cluster.pg_ctl, "start")
        restarted = time.monotonic()
        rows = await wait_pg_final(url, [during, arriving], timeout=60)
        settled = time.monotonic() - restarted
        journal = config.storage.journal_path
        left_in_journal = journal.exists() and journal.stat().st_size > 0
    first, second = rows[during["id"]], rows[arriving["id"]]
    print(f"\n[pg outage {OUTAGE_SECONDS:g} s] rows final {settled:.1f} s after the restart; "
          f"during: {first and (first['status'], first['error'], [r['state'] for r in first['recordings']])}; "
          f"arriving: {second and (second['status'], second['protocol'], second['error'])}")
    check_outage_rows(sandbox, ami_events, url, during, arriving, rows, left_in_journal)


def check_outage_rows(sandbox, ami_events, url: str, during: dict[str, Any], arriving: dict[str, Any],
                      rows: dict[str, dict[str, Any] | None], left_in_journal: bool) -> None:
    """What the callers heard and what PostgreSQL says once it answers again, for a call that
    was recording when storage went away (its hang-up inside the outage) and one that arrived
    in it."""
    from callproof.storage import connect_sync
    from callproof.storage.audit import verify_chain_sync

    from .harness import sha256_of
    from .test_agi_calls import handoffs_of, heard_sequence

    first, second = rows[during["id"]], rows[arriving["id"]]
    assert first is not None and second is not None, rows
    # the call in progress: whole flow heard, hand-off with its protocol, completed, recording
    # finalised (through the journal: its hang-up fell in the outage), one SMS
    heard = heard_sequence(sandbox, during)
    assert heard[0] == "consent" and heard.count("consent") == 1 and heard.count("protocol-is") == 1, heard
    assert [h.get("Protocol") for h in handoffs_of(ami_events, during)] == [first["protocol"]]
    assert first["status"] == "completed" and first["ended_at"], first
    assert "disconnected" not in (first["hangup_cause"] or ""), first["hangup_cause"]
    assert [r["state"] for r in first["recordings"]] == ["finalised"], first["recordings"]
    rec = first["recordings"][0]
    assert rec["sha256"] == sha256_of(Path(rec["path"])), rec
    assert [(m["state"], m["attempts"]) for m in first["sms"]] == [("logged", 1)], first["sms"]
    # the call that arrived in the outage: what a call does when SQLite is locked -- the
    # announcement once and first, the caller routed (with the protocol whenever one could be
    # allocated), the row written once PostgreSQL is back, final and truthful
    heard2 = heard_sequence(sandbox, arriving)
    assert heard2[:1] == ["consent"] and heard2.count("consent") == 1, heard2
    handoffs = handoffs_of(ami_events, arriving)
    assert len(handoffs) == 1, handoffs
    assert second["status"] in FINAL and second["ended_at"], second
    if second["protocol"]:
        assert handoffs[0].get("Protocol") == second["protocol"]
        assert [m["state"] for m in second["sms"]] == ["logged"], second["sms"]
    else:
        assert "storage_unavailable" in (second["error"] or ""), second
        assert handoffs[0].get("Protocol", "") == ""
    assert "disconnected" not in (second["hangup_cause"] or ""), second["hangup_cause"]
    for r in second["recordings"]:
        assert r["state"] == "finalised", r
    assert not left_in_journal, "the journal was not brought in"
    protocols = sorted(int(r["protocol"]) for r in (first, second) if r["protocol"])
    assert protocols == list(range(protocols[0], protocols[0] + len(protocols))), "gap-free"
    conn = connect_sync(url)
    try:
        assert verify_chain_sync(conn) is None
    finally:
        conn.close()


async def test_network_to_postgresql_goes_silent_during_a_call_and_while_one_arrives(sandbox, app_config, pg_cluster,
                                                                                     ami_events):
    """The application reaches PostgreSQL through a relay that, while a call records, stops
    forwarding with every socket left open (a cut network, a blocked port: nothing is reset,
    nobody is told); another call arrives; ~7 s later the relay forwards again.  A storage step
    fails within its bound instead of waiting on the silence, the calls go on through the
    journal, and once the link is back the rows are truthful, as after a stopped server."""
    from callproof.storage.errors import StorageUnavailable
    from callproof.storage.pg_watchdog import OVERRUN_SECONDS
    from tests.faults.stalling_relay import StallingRelay

    url = pg_cluster.new_database("netcut")
    name = url.rsplit("/", 1)[1]
    relay = await StallingRelay(pg_cluster.socket_dir / f".s.PGSQL.{pg_cluster.port}").start()
    # TCP to the relay (libpq's keepalives and tcp_user_timeout apply), connect_timeout 2 s
    relayed = f"postgresql://{pg_cluster.user}@127.0.0.1:{relay.port}/{name}?connect_timeout=2"
    config = pg_call_config(sandbox, app_config, relayed, call_wait_seconds=CALL_WAIT)
    app = ObservedApplication(config)
    try:
        async with running(app):
            during = await place(sandbox, "11987140001", agent_seconds=5)  # hangs up inside the cut
            await wait_pg_status(url, during, {"handed_off"})  # (read past the relay, on the socket)
            relay.stall()
            stalled = time.monotonic()
            try:
                # (bounded here: without a bound on the steps, the originate waits on a flow stuck on the silence)
                async with asyncio.timeout(30):
                    arriving = await place(sandbox, "11987140002")
                began = time.monotonic()
                step = asyncio.ensure_future(
                    app.db.run_within(CALL_WAIT, lambda c: c.execute("SELECT count(*) FROM calls").fetchone()))
                # (not awaited bare: a step stuck on the silence must fail the test, not stall it)
                await asyncio.wait({step}, timeout=CALL_WAIT + OVERRUN_SECONDS + 10)
                step_took = time.monotonic() - began
                assert step.done(), f"a bounded step still waits on the silent network after {step_took:.0f} s"
                with pytest.raises(StorageUnavailable) as refused:
                    step.result()
                await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stalled)))
            finally:
                relay.resume()
            resumed = time.monotonic()
            rows = await wait_pg_final(url, [during, arriving], timeout=60)
            settled = time.monotonic() - resumed
            journal = config.storage.journal_path
            left_in_journal = journal.exists() and journal.stat().st_size > 0
    finally:
        await relay.close()
    first, second = rows[during["id"]], rows[arriving["id"]]
    print(f"\n[pg network silent {OUTAGE_SECONDS:g} s] a bounded step ({CALL_WAIT:g} s) failed after "
          f"{step_took:.2f} s ({refused.value.problem}); rows final {settled:.1f} s after the relay resumed; "
          f"during: {first and (first['status'], [r['state'] for r in first['recordings']])}; "
          f"arriving: {second and (second['status'], second['protocol'], second['error'])}")
    # the step gave up at its deadline plus the watchdog's overrun, not when TCP would have
    # (never, here: the relay's kernel acknowledges everything); 2 s of slack for a loaded host
    assert refused.value.problem in ("io_error", "timeout"), refused.value
    assert step_took < CALL_WAIT + OVERRUN_SECONDS + 2.0, step_took
    check_outage_rows(sandbox, ami_events, url, during, arriving, rows, left_in_journal)


async def test_classic_agi_and_fastagi_calls_on_postgresql(sandbox, app_config, pg_tcp, ami_events):
    """One call through each dialplan-driven transport with ``[storage] url`` set: the rows,
    protocols, recordings, SMS and audit are PostgreSQL's, as on SQLite."""
    from callproof.agi_scripts.fastagi import FastAgiServer
    from callproof.storage import connect_sync
    from callproof.storage.audit import verify_chain_sync

    from .agi_install import install_classic_agi
    from .conftest import pg_tcp_storage
    from .harness import sha256_of
    from .test_agi_calls import fastagi_vars, handoffs_of
    from .test_agi_calls import place as place_agi

    run_dir = sandbox.run_dir / f"pg-agi-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    storage = pg_tcp_storage(pg_tcp, run_dir, "agi")
    config_path = write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP}, storage=storage,
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0})
    config = load_sandbox_config(config_path)
    assert config.storage.password == pg_tcp.tcp_password  # from the secrets file beside the configuration
    url = pg_tcp.url(storage["url"].rsplit("/", 1)[1])  # what this test reads the rows with (the socket)
    wrapper = install_classic_agi(sandbox, config_path)
    server = await FastAgiServer(config).start(port=0)
    try:
        calls = dict(zip(("agi", "fastagi"), await asyncio.gather(
            place_agi(sandbox, "agi", "11987130001", {"CALLPROOF_APP": APP}),
            place_agi(sandbox, "fastagi", "11987130002", {"CALLPROOF_APP": APP, **fastagi_vars(server)})),
            strict=True))
        rows = await wait_pg_final(url, list(calls.values()), timeout=90, sender=False)
    finally:
        await server.stop()
        wrapper.unlink(missing_ok=True)  # later modules' fallback calls must not reach this database
    for path, channel in calls.items():
        row = rows[channel["id"]]
        assert row is not None, (path, rows)
        assert (row["status"], row["served_by"], row["consent_outcome"]) == ("completed", path, "finished"), (path, row)
        assert [h.get("Protocol") for h in handoffs_of(ami_events, channel)] == [row["protocol"]], path
        assert [r["state"] for r in row["recordings"]] == ["finalised"], (path, row["recordings"])
        rec = row["recordings"][0]
        assert rec["sha256"] == sha256_of(Path(rec["path"])), (path, rec)
        # one SMS row per protocol, waiting for the sender of ``callproof run`` / ``callproof sms``
        assert [m["state"] for m in row["sms"]] == ["pending"], (path, row["sms"])
    year = rows[calls["agi"]["id"]]["protocol"][:4]
    assert sorted(r["protocol"] for r in rows.values()) == [f"{year}{n:013d}" for n in (1, 2)]  # one sequence
    conn = connect_sync(url)
    try:
        assert verify_chain_sync(conn) is None
        actions = {a for (a,) in conn.execute("SELECT DISTINCT action FROM audit_log").fetchall()}
    finally:
        conn.close()
    assert "recording.finalised" in actions, actions
