"""Database trouble during real calls through the sandbox Asterisk: locked by another process,
and a full disk.  What is asserted is what a caller notices (from Asterisk's own log: the
consent in full and once, no silence longer than ``[storage] call_wait_seconds`` plus a margin,
the hand-off carrying the protocol whenever one was allocated) and what the rows say once
storage is back (every call has a row, in a final state with its end, the reason
``storage_unavailable`` where storage failed it, its recording row finalised, nothing labelled
"disconnected").  Each test prints its figures (``-s``) for docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import originate_call
from callproof.storage.journal import read_entries

from .harness import ObservedApplication, running
from .storage_faults import heard_on

pytestmark = pytest.mark.integration

CALL_WAIT = 2.0
MARGIN = 1.5            # Asterisk's own latency between two steps, on a loaded 2-core machine
FINAL = {"completed", "failed", "abandoned_in_consent", "abandoned_in_protocol"}
STORAGE = {"call_wait_seconds": CALL_WAIT}
# Its own ARI application: under the session's name it would take that application over, and
# once it stops Asterisk destroys it, leaving the session's application deaf for later tests.
APP = "cpstorage"

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE protocol_sequences SET last_value = last_value WHERE 0")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@contextlib.asynccontextmanager
async def application(sandbox, app_config, run: Path, encryption: bool = False, **storage):
    """The application on a database of its own; ``encryption``: ``[encryption] enabled`` with
    keys made by ``callproof keys init`` before it starts, as an admin does."""
    run.mkdir(parents=True, exist_ok=True)
    sections = {"encryption": {"enabled": True, "public_keys_dir": str(run / "keys" / "public"),
                               "private_keys_dir": str(run / "keys" / "private")}} if encryption else {}
    path = write_config(sandbox, run, app_config.prompts.directory, ari={"app": APP},
                        storage={**STORAGE, **storage}, recording={"root": str(run / "recordings")},
                        protocol_reading={"replay_window_ms": 0, "repeat": 0}, **sections)  # one reading: ~10 s
    if encryption:
        done = cli(path, "keys", "init", "--by", "ops")
        assert done.returncode == 0, done.stdout + done.stderr
    async with running(ObservedApplication(load_sandbox_config(path))) as app:
        yield app


def cli(config_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command an admin or auditor runs, in its own process."""
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config_path), *argv],
                          capture_output=True, text=True, timeout=120, check=False)


async def place(sandbox, caller: str, max_seconds: int = 50) -> dict:
    """A customer who stays on the line long enough for the announcement (8 s), the waits and
    the reading of the protocol (~10 s); the agents hang up a second after the hand-off."""
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=max_seconds,
                                   variables={"CALLPROOF_APP": APP})


def rows_of(database: Path, channels: list[dict]) -> dict[str, dict | None]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        out = {}
        for ch in channels:
            row = conn.execute("SELECT * FROM calls WHERE linkedid = ?", (ch["id"],)).fetchone()
            out[ch["id"]] = dict(row) if row else None
            if row is not None:
                out[ch["id"]]["recordings"] = [dict(r) for r in conn.execute(
                    "SELECT * FROM recordings WHERE call_id = ? ORDER BY id", (row["id"],))]
        return out
    finally:
        conn.close()


async def wait_final(database: Path, channels: list[dict], timeout: float) -> dict[str, dict | None]:
    deadline = time.monotonic() + timeout
    rows = rows_of(database, channels)
    while time.monotonic() < deadline:
        if all(r is not None and r["status"] in FINAL and r["ended_at"]
               and all(rec["state"] != "recording" for rec in r["recordings"]) for r in rows.values()):
            break
        await asyncio.sleep(0.5)
        rows = rows_of(database, channels)
    return rows


def handoff_of(ami_events, channel: dict) -> dict | None:
    """The agents' report for this call (its ;2 side reached the hand-off)."""
    prefix = channel["name"].rsplit(";", 1)[0] + ";"
    for e in ami_events.user_events:
        value = e.get("Channel", "")  # Asterisk adds its own Channel header next to ours: a list
        names = value if isinstance(value, list) else [value]
        if e.get("UserEvent") == "CallproofHandoff" and any(str(c).startswith(prefix) for c in names):
            return e
    return None


def figures(name: str, sandbox, app, channels: list[dict], rows: dict, ami_events) -> list[dict]:
    out = []
    for ch in channels:
        callee = ch["name"].rsplit(";", 1)[0] + ";2"
        heard = heard_on(sandbox.console_log, app.events, callee)
        row = rows[ch["id"]]
        handoff = handoff_of(ami_events, ch)
        out.append({
            "channel": callee, "heard": heard, "row": row, "handoff": handoff,
            "silence": round(heard.longest_silence(), 2), "consents": heard.count("consent"),
        })
    untrue = sum(1 for f in out if f["row"] and "disconnected" in (f["row"]["hangup_cause"] or ""))
    not_final = sum(1 for f in out
                    if f["row"] is None or f["row"]["status"] not in FINAL or not f["row"]["ended_at"])
    no_row = sum(1 for f in out if f["row"] is None)
    missing_protocol = sum(1 for f in out if f["row"] and f["row"]["protocol"] and f["handoff"] is not None
                           and f["handoff"].get("Protocol") != f["row"]["protocol"])
    print(f"\n[{name}] calls {len(out)}; longest silence per caller {[f['silence'] for f in out]} s; "
          f"consents heard {[f['consents'] for f in out]}; rows missing {no_row}; rows not final {not_final}; "
          f"'disconnected' labels {untrue}; hand-offs without the allocated protocol {missing_protocol}")
    for f in out:
        row, h = f["row"] or {}, f["handoff"] or {}
        flow = app.done_flows.get(f["channel"].rsplit(";", 1)[0])
        print(f"  {f['channel']}: flow marks {flow.timings.relative_ms() if flow else None}")
        print(f"  {f['channel']}: heard {f['heard'].names[:2]}... silences {f['heard'].silences()} "
              f"status {row.get('status')} protocol {row.get('protocol')} error {(row.get('error') or '')[:80]!r} "
              f"cause {row.get('hangup_cause')!r} recordings {[r['state'] for r in row.get('recordings', [])]} "
              f"handoff {h.get('Status')}/{h.get('Reason')}/{h.get('Protocol')}")
    return out


def assert_truthful(out: list[dict]) -> None:
    """What a caller noticed and what the rows say: no silence over the bound, and truthful rows."""
    over = [(f["channel"], f["heard"].silences()) for f in out if f["silence"] > CALL_WAIT + MARGIN]
    for f in out:
        row, h, heard = f["row"], f["handoff"], f["heard"]
        assert row is not None, f"{f['channel']}: no call row at all"
        assert f["consents"] == 1, (f["channel"], heard.names)
        assert h is not None, f"{f['channel']}: never reached the hand-off"
        if row["protocol"]:
            assert h.get("Protocol") == row["protocol"], (f["channel"], h)
        assert row["status"] in FINAL and row["ended_at"], (f["channel"], row["status"], row["ended_at"])
        assert "disconnected" not in (row["hangup_cause"] or ""), row["hangup_cause"]
        for rec in row["recordings"]:
            assert rec["state"] == "finalised" and rec["sha256"], (f["channel"], rec)
            # the file the row names: the age file once it says encrypted
            assert Path(rec["age_path"] if rec.get("encryption") == "encrypted" else rec["path"]).is_file()
        if row["protocol"] and row["status"] == "completed":
            assert row["recordings"], f"{f['channel']}: a protocol but no recording"
    assert not over, f"callers waited over {CALL_WAIT + MARGIN} s: {over}"


async def test_database_locked_by_another_process(sandbox, app_config, ami_events):
    """Another process holds the write lock for 12 s while four calls arrive."""
    run = sandbox.run_dir / "db-locked"
    async with application(sandbox, app_config, run) as app:
        database = Path(app.config.storage.database)
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(database), "12"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert locker.stdout.readline().strip() == "locked"
            channels = []
            for i in range(4):
                channels.append(await place(sandbox, f"1198765070{i}"))
                await asyncio.sleep(1.5)
            # (in a thread: the application runs on this event loop, and a blocking wait here
            # froze every call until the lock ended; that was the "fourth caller" of earlier runs)
            await asyncio.to_thread(locker.wait, 30)
        finally:
            locker.kill()
            locker.wait()
        rows = await wait_final(database, channels, timeout=60)
        out = figures("locked", sandbox, app, channels, rows, ami_events)
    assert_truthful(out)
    assert_signed_evidence(app.config, out)
    hit = [f for f in out if "storage_unavailable" in (f["row"]["error"] or "")]
    assert hit, "no call noticed the lock: the test did not test anything"


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str):
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def journalled_finalisations(journal: Path, count: int, timeout: float = 120) -> int:
    """Wait until ``count`` recordings' ends wait in the journal (its file, or one a failed
    replay renamed): the calls finished while the disk was full."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        files = [f for f in journal.parent.glob(journal.name + "*") if not f.name.endswith(".lock")]
        found = sum(1 for f in files if f.exists() for e in read_entries(f) if e.get("op") == "recording.finalise")
        if found >= count:
            return found
        await asyncio.sleep(0.5)
    raise TimeoutError(f"only {found} of {count} recordings' ends reached the journal")


def assert_signed_evidence(config, out: list[dict]) -> int:
    """Each finalised recording has a signed evidence record that verifies against its file,
    and a recording.finalised audit entry; the number finalised from the journal."""
    from callproof.evidence.keys import trusted_from_config
    from callproof.integrity import verify_recordings
    from callproof.storage import open_sync

    ids = {rec["id"] for f in out for rec in f["row"]["recordings"]}
    with open_sync(config) as db:
        trusted = trusted_from_config(config)
        results = {r["id"]: r for r in verify_recordings(db, config.recording.root, trusted=trusted)}
        entries = list(db.audit.page(action="recording.finalised", limit=100))
    assert all(results[i]["result"] == "ok" and results[i]["signed"] for i in ids), \
        {i: (results[i]["result"], results[i].get("detail")) for i in ids}
    assert len(entries) == len(ids), entries
    return sum(1 for e in entries if '"journalled":true' in (e["details"] or ""))


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    return filler


async def test_disk_full(sandbox, app_config, ami_events):
    """The database's file system fills up while two calls arrive, then space comes back."""
    run = sandbox.run_dir / "db-full"
    if os.geteuid() != 0:
        pytest.fail("mounting the small tmpfs needs root (the integration tests run as root)")
    with small_tmpfs(run / "fs", "4m") as fs:
        async with application(sandbox, app_config, run, database=str(fs / "callproof.db"),
                               journal=str(run / "callproof.journal")) as app:
            database = Path(app.config.storage.database)
            conn = sqlite3.connect(database)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next write must grow the WAL file
            conn.close()
            filler = fill(fs)
            channels = [await place(sandbox, "11987650710")]
            await asyncio.sleep(3)
            channels.append(await place(sandbox, "11987650711"))
            await asyncio.sleep(8)
            filler.unlink()
            rows = await wait_final(database, channels, timeout=60)
            out = figures("disk full", sandbox, app, channels, rows, ami_events)
            assert_truthful(out)
            assert_signed_evidence(app.config, out)
    assert any("storage_unavailable" in (f["row"]["error"] or "") for f in out), "the full disk went unnoticed"


async def recording_started(database: Path, channel: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = rows_of(database, [channel])[channel["id"]]
        if row and row["recordings"]:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the call's recording never started")


async def locked_through_the_recording(sandbox, app, number: str) -> dict:
    """A call whose recording starts, then another process holds the write lock until the
    call's recording end has gone to the journal; the lock is gone when this returns."""
    database = Path(app.config.storage.database)
    channel = await place(sandbox, number)
    await recording_started(database, channel)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(database), "300"],
                              stdout=subprocess.PIPE, text=True)
    try:  # (waited for in a thread: the application runs on this event loop)
        assert (await asyncio.to_thread(locker.stdout.readline)).strip() == "locked"
        await journalled_finalisations(Path(app.config.storage.journal_path), 1)
    finally:
        locker.kill()
        locker.wait()
    return channel


async def test_database_locked_from_the_recording_to_the_end_of_the_call(sandbox, app_config, ami_events):
    """Another process takes the write lock once the call's recording has started and holds it
    until the call has ended: the recording's end waits in the journal, and once the lock is
    gone the replay finalises it with its signed evidence record and recording.finalised audit
    entry, like a live finalisation."""
    run = sandbox.run_dir / "db-locked-recording"
    async with application(sandbox, app_config, run) as app:
        database = Path(app.config.storage.database)
        channels = [await locked_through_the_recording(sandbox, app, "11987650720")]
        rows = await wait_final(database, channels, timeout=60)
        out = figures("locked during the recording", sandbox, app, channels, rows, ami_events)
        assert_truthful(out)
        journalled = assert_signed_evidence(app.config, out)
    assert journalled == 1, "the recording was not finalised from the journal: the test did not test that"


async def encrypted_and_settled(database: Path, channel: dict, timeout: float = 60) -> dict:
    """The call's recording row once it says encrypted and its plaintext is gone (the
    application settles what the replay finalised, off the calls' time)."""
    deadline = time.monotonic() + timeout
    rec: dict = {}
    while time.monotonic() < deadline:
        row = rows_of(database, [channel])[channel["id"]]
        rec = row["recordings"][0] if row and row["recordings"] else {}
        if rec.get("encryption") == "encrypted" and not Path(rec["path"]).exists():
            return rec
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the recording did not end encrypted: {rec.get('encryption')} {rec.get('encryption_error')}")


async def test_database_locked_from_the_recording_to_the_end_with_encryption(sandbox, app_config, ami_events):
    """The same lock with ``[encryption]`` on: the recording finalised from the journal ends
    encrypted like a live one: its age file opens with Debian's ``age -d`` and the period key
    to the sha256 the signed record holds, the record binds the age payload too, no plaintext
    is left, and ``callproof recording verify`` passes, without the private key and with it."""
    import hashlib
    import json

    from .age_tool import age_binaries

    age, _ = age_binaries()
    run = sandbox.run_dir / "db-locked-recording-encrypted"
    async with application(sandbox, app_config, run, encryption=True) as app:
        database = Path(app.config.storage.database)
        channels = [await locked_through_the_recording(sandbox, app, "11987650721")]
        rows = await wait_final(database, channels, timeout=60)
        rec = await encrypted_and_settled(database, channels[0])
        rows = rows_of(database, channels)
        out = figures("locked during the recording, encrypted", sandbox, app, channels, rows, ami_events)
        assert_truthful(out)
        journalled = assert_signed_evidence(app.config, out)
        config = app.config
    assert journalled == 1, "the recording was not finalised from the journal: the test did not test that"
    sealed = Path(rec["age_path"])
    assert sealed == Path(rec["path"] + ".age") and sealed.is_file() and not Path(rec["path"]).exists()
    (key_id,) = rec["key_ids"].split(",")
    assert key_id.startswith("consumer_service-"), key_id  # its period key, not the hold key
    opened = subprocess.run([age, "-d", "-i", str(config.encryption.private_keys_dir / f"{key_id}.key"),
                             str(sealed)], capture_output=True, timeout=120)
    assert opened.returncode == 0, opened.stderr.decode()
    from callproof.storage import open_sync
    with open_sync(config) as db:
        stored = db.evidence.for_recording(rec["id"])
    assert stored is not None and stored["signature"]
    record = json.loads(stored["record"])
    assert hashlib.sha256(opened.stdout).hexdigest() == record["recording"]["sha256"] == rec["sha256"]
    assert record["encryption"]["payload_sha256"] == rec["payload_sha256"]
    config_path = run / "callproof.toml"
    done = cli(config_path, "recording", "verify", rows[channels[0]["id"]]["protocol"], "--by", "auditor")
    assert done.returncode == 0 and "ok 1 (signed)" in done.stdout, done.stdout + done.stderr
    done = cli(config_path, "recording", "verify", rows[channels[0]["id"]]["protocol"], "--plaintext", "-v")
    assert done.returncode == 0 and "decrypted: plaintext matches" in done.stdout, done.stdout + done.stderr
