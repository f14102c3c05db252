"""A call handed off to a context that hangs up at once (the issue's missing ``Queue(support)``)
leaves a header-only recording, 0 ms of audio: with the real sandbox Asterisk, its row ends
'empty' (not 'finalised'), a warning is logged, the metrics count it, and ``recording
verify`` reports it EMPTY instead of "ok"."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.metrics import StoredFigures
from callproof.sandbox import Sandbox, originate_call

from .harness import ObservedApplication, running
from .test_call_state import short_prompts

APP = "cpempty"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app(sandbox: Sandbox, app_config: Config):
    run_dir = sandbox.run_dir / f"empty-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    path = write_config(sandbox, run_dir, app_config.prompts.directory, ari={"app": APP},
                        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
                        protocol_reading={"repeat": 0, "replay_window_ms": 0},
                        # the hand-off target ends the call at once, as a Queue() that does not exist
                        handoff={"context": "callproof-request-done"})
    application = ObservedApplication(load_sandbox_config(path))
    application.config_path = path
    async with running(application):
        yield application


async def test_a_call_that_hangs_up_at_once_after_hand_off_is_empty(app, sandbox, caplog):
    with caplog.at_level(logging.WARNING, logger="callproof.recording"):
        await asyncio.to_thread(originate_call, sandbox, "11987001111", max_seconds=60,
                                variables={"CALLPROOF_APP": APP})
        deadline = time.monotonic() + 60
        rows: list = []
        while time.monotonic() < deadline:
            flows = [f for f in app.done_flows.values() if f.call_id]
            rows = [dict(r) for f in flows for r in await app.db.recordings.for_call(f.call_id)]
            logged = any(r.getMessage() == "recording.empty" for r in caplog.records)
            if rows and rows[0]["state"] != "recording" and logged:  # the row is written before the audit and log
                break
            await asyncio.sleep(0.2)
    (rec,) = rows
    assert (rec["state"], rec["duration_ms"]) == ("empty", 0), rec
    assert Path(rec["path"]).stat().st_size == rec["size_bytes"] <= 44 + 320  # a header, no audio to speak of
    assert any(r.getMessage() == "recording.empty" for r in caplog.records)
    figures = StoredFigures(app.db, soon_until=lambda now: now)
    registry = CollectorRegistry()
    registry.register(figures)
    await figures.refresh()
    assert 'callproof_recordings{state="empty"} 1.0' in generate_latest(registry).decode()  # what /metrics serves

    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPROOF_")}
    env.update(PYTHONPATH=str(REPO), CALLPROOF_GENERAL_SERVICE_USER=os.environ["CALLPROOF_GENERAL_SERVICE_USER"])
    verify = subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(app.config_path),
                             "recording", "verify", rec["protocol"]],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert f"EMPTY  recording {rec['id']}" in verify.stdout and "no audio" in verify.stdout
    assert " ok " not in verify.stdout.replace("ok 0", "")
