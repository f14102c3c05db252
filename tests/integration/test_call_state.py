"""Real calls leave nothing behind in the application, even when AMI misses the hang-up.

An application of its own (Stasis app ``cpstate``, its own database and recordings)
on the session's sandbox Asterisk, with 40 ms prompts so the calls are short: after
a few concurrent calls complete, its per-call state (``Application.stats()``, what
``callproof run`` logs on SIGUSR1) is empty; and a handed-off call whose AMI
``Hangup`` never arrives (the AMI link is closed while the agent talks) is still
completed, its recording finalised, once ARI no longer lists its channel.  The
memory these would hold over thousands of calls is measured by bench/bench_soak.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import pytest

from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import Sandbox, originate_call

from .harness import ObservedApplication, running

APP = "cpstate"
PER_CALL = ("flows", "tasks", "inboxes", "handed_off", "hangup_causes", "recordings_tracked",
            "recordings_finalising", "recordings_starting")
SHORT = ["consent", "protocol-is", "pause", *(f"digits/{d}" for d in range(10))]


def short_prompts(custom: Path, names: list[str] = SHORT, language: str = "pt_BR",
                  seconds: dict[str, float] | None = None) -> Path:
    """40 ms of silence under each of ``names`` (``seconds``: other lengths by name), in a
    custom prompts folder."""
    for name in names:
        path = custom / language / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\0\0" * int(8000 * (seconds or {}).get(name, 0.04)))
    return custom


def short_call_config(sandbox: Sandbox, app_config: Config, storage: dict[str, str] | None = None) -> Config:
    run_dir = sandbox.run_dir / f"state-{uuid.uuid4().hex[:8]}"  # inside the sandbox's view
    run_dir.mkdir()
    return load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": APP},
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0}, storage=storage or {}))


@pytest.fixture
async def app(sandbox: Sandbox, app_config: Config):
    application = ObservedApplication(short_call_config(sandbox, app_config))
    application.gone_check_seconds = 0.5
    async with running(application):
        yield application


@pytest.fixture
async def pg_app(sandbox: Sandbox, app_config: Config, pg_cluster: Any):
    """``app`` on a database of the session's PostgreSQL cluster."""
    application = ObservedApplication(short_call_config(sandbox, app_config, {"url": pg_cluster.new_database("state")}))
    application.gone_check_seconds = 0.5
    async with running(application):
        yield application


@pytest.fixture(params=["sqlite", "postgresql"])
def app_on(request: pytest.FixtureRequest) -> ObservedApplication:
    """``app``, then ``pg_app``: a test taking this runs once on each engine."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")


async def place(sandbox: Sandbox, caller: str, agent_seconds: int) -> dict[str, Any]:
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=60,
                                   variables={"CALLPROOF_APP": APP, "SANDBOX_AGENT_SECONDS": str(agent_seconds)})


async def rows_when(app: ObservedApplication, count: int, statuses: set[str], timeout: float = 40) -> list[dict]:
    """The rows of the calls whose flow has ended, once ``count`` of them are in ``statuses``."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = [dict(await app.db.calls.get(f.call_id)) for f in list(app.done_flows.values()) if f.call_id]
        if len(rows) >= count and all(r["status"] in statuses for r in rows):
            return rows
        await asyncio.sleep(0.2)
    raise TimeoutError(f"calls stayed {[r['status'] for r in rows]}, wanted {count} in {statuses}")


def per_call_state(app: ObservedApplication) -> dict[str, int]:
    return {k: v for k, v in app.stats().items() if k in PER_CALL and v}


def consent_playbacks(app: ObservedApplication, channel_id: str) -> list[str]:
    """The consent playbacks Asterisk reported finished on this channel, by state."""
    return [e["playback"]["state"] for e in app.events.get(channel_id, [])
            if e.get("type") == "PlaybackFinished" and e["playback"]["id"].startswith("cp-consent-")]


async def test_completed_calls_leave_no_state_in_the_application(app_on, sandbox, ami_events):
    app = app_on  # SQLite, then PostgreSQL
    await asyncio.gather(*(place(sandbox, f"1198700{i:04d}", 1) for i in range(4)))
    rows = await rows_when(app, 4, {"completed"})
    await asyncio.sleep(0.5)  # the last completion's own task
    assert per_call_state(app) == {}
    for row in rows:
        assert consent_playbacks(app, row["channel_id"]) == ["done"]  # the announcement, once, in full
        assert len(ami_events.handoffs_for(row["protocol"])) >= 1  # the agent got the call with its protocol
        recordings = await app.db.recordings.for_call(row["id"])
        assert [r["state"] for r in recordings] == ["finalised"] and recordings[0]["size_bytes"] > 44
        assert len(await app.db.outbox.get_for_protocol(row["protocol"])) == 1


async def test_a_hangup_that_ami_never_reports_still_completes_the_call(app, sandbox, ami_events):
    await place(sandbox, "11987009999", 3)
    (row,) = await rows_when(app, 1, {"handed_off"}, timeout=20)
    app.ami.manager.close()  # the AMI link is gone while the agent talks: its Hangup is never seen
    (row,) = await rows_when(app, 1, {"completed"}, timeout=30)
    assert "no AMI Hangup" in row["hangup_cause"]
    recordings = await app.db.recordings.for_call(row["id"])
    assert [r["state"] for r in recordings] == ["finalised"] and recordings[0]["sha256"]
    assert ami_events.handoffs_for(row["protocol"])  # what the caller noticed: an agent, with the protocol
    await asyncio.sleep(0.5)
    assert per_call_state(app) == {}


async def test_a_second_instance_under_our_name_takes_the_calls_and_gives_them_back(app, sandbox, app_config,
                                                                                     caplog):
    """A second process with the same ``[ari] app`` takes the application over: it serves the calls
    that arrive meanwhile (this one drives none of them).  When it stops Asterisk destroys the
    application; this one notices and registers again, so the next caller is served, not
    sent to the dialplan's fallback."""
    app.replaced_check_seconds = 0.2
    async with running(ObservedApplication(short_call_config(sandbox, app_config))) as other:
        await place(sandbox, "11987008801", 1)
        (taken,) = await rows_when(other, 1, {"completed"})
        assert not app.done_flows and any(r.getMessage() == "ari.application_replaced" for r in caplog.records)
    deadline = time.monotonic() + 10
    while not any(r.getMessage() == "ari.application_free" for r in caplog.records) or not app.connected.is_set():
        assert time.monotonic() < deadline, "the application was not registered again"
        await asyncio.sleep(0.1)
    await place(sandbox, "11987008802", 1)
    (row,) = await rows_when(app, 1, {"completed"})
    assert row["caller_number"].endswith("11987008802") and row["served_by"] == "ari"
    assert consent_playbacks(app, row["channel_id"]) == ["done"]  # the caller heard the announcement, in full
    assert taken["caller_number"].endswith("11987008801")
