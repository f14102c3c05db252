"""Dropped-call call-backs on the real Asterisk 22 sandbox.

A caller's network drops the call after the protocol was given (the caller's
leg is cleared with a Q.850 network cause): a call-back is scheduled with the
call's end, the scheduler dials the customer, who answers and records what
they hear: the recording announcement and the same protocol.  A normal
hang-up, or a drop before the protocol, schedules nothing.  A busy customer,
or one who never answers, gets its attempts and then the call-back fails.

The answered call-back runs on both engines (``callback_rig_on``: its PostgreSQL twin has a
40 ms announcement and one reading); the retries and the not-scheduled cases run on SQLite,
their rules having unit tests on both (tests/unit/ari_app/test_callbacks.py).
"""

from __future__ import annotations

import array
import asyncio
import json
import re
import subprocess
import sys
import wave
from datetime import datetime
from pathlib import Path

import pytest

from callproof.storage.callbacks import Plan

from .callback_fixtures import (  # noqa: F401  (fixtures)
    CALLBACK_SETTINGS,
    callback_customer,
    callback_rig,
    callback_rig_on,
    pg_callback_rig,
)

pytestmark = pytest.mark.integration


def played_on(sandbox, channel_name: str) -> list[str]:
    """What Asterisk's verbose log says it played on ``channel_name``, in order:
    prompt names, each digit as itself, pauses left out."""
    out = []
    for line in sandbox.console_log.read_text(errors="replace").splitlines():
        m = re.search(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'", line)
        if m and m["chan"] == channel_name:
            name = Path(m["file"]).name.rsplit(".", 1)[0]
            if name != "pause":
                out.append(name)
    return out


def peak_amplitude(path: Path) -> int:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        samples = array.array("h", w.readframes(w.getnframes()))
    return max((abs(s) for s in samples), default=0)


async def audit_actions(db, protocol: str) -> list[str]:
    rows = await db.run_in_connection(
        lambda c: c.execute("SELECT action FROM audit_log WHERE protocol = ? ORDER BY id", (protocol,)).fetchall())
    return [r[0] for r in rows]


async def dropped_call(rig, caller: str, cause: int, *, after: str = "protocol_playback_started") -> dict:
    call = await rig.place(caller)
    await rig.harness.wait_mark(call, after, timeout=60)
    await rig.drop(call, cause)
    flow = await rig.app.wait_flow(call.prefix, timeout=30)
    return dict(await rig.app.db.calls.get(flow.call_id))


async def recorded_seconds(path: Path, wait: float = 15.0) -> float:
    """The length of a WAV file the customer's side records, once Asterisk has closed it (its
    RIFF header is written last: on a loaded machine the file exists a moment before)."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            with wave.open(str(path)) as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_drop_after_protocol_is_called_back_with_the_same_protocol(callback_rig_on, sandbox):
    rig = callback_rig_on  # SQLite, then PostgreSQL
    call = await dropped_call(rig, "11987650011", 38)
    assert call["status"] == "abandoned_in_protocol" and call["protocol"]
    assert "q850=38" in call["hangup_cause"]

    scheduled = await rig.store.get_for_call(call["id"])
    assert scheduled is not None, "a network drop after the protocol must schedule a call-back"
    assert scheduled["protocol"] == call["protocol"] and scheduled["destination"] == "+5511987650011"
    assert "q850=38" in scheduled["reason"]

    row = await rig.wait_callback(scheduled["id"], {"completed", "failed"})
    assert row["state"] == "completed" and row["outcome"] == "answered_played" and row["attempts"] == 1
    [attempt] = await rig.store.attempts(row["id"])
    assert attempt["outcome"] == "answered_played"
    assert attempt["started_at"] <= attempt["answered_at"] <= attempt["ended_at"]

    # Asterisk's own log: on the call-back channel, the announcement, then the protocol read
    # digit by digit, as many times as a caller hears it.
    start = next(e for e in rig.app.events[attempt["channel_id"]] if e["type"] == "StasisStart")
    assert start["args"] == ["callback", str(row["id"])]
    heard = played_on(sandbox, start["channel"]["name"])
    readings = 1 + rig.config.protocol_reading.repeat
    assert heard == ["consent"] + (["protocol-is", *call["protocol"]] * readings), heard

    # The customer's side recorded real audio for the whole message (each reading of the
    # protocol is about 9 s).
    recording = rig.customer_recordings / f"{attempt['channel_id']};2.wav"
    assert recording.exists(), sorted(p.name for p in rig.customer_recordings.iterdir())
    seconds = await recorded_seconds(recording)
    assert seconds > 5 * readings, seconds
    assert peak_amplitude(recording) > 1000

    assert (await audit_actions(rig.app.db, call["protocol"]))[-2:] == ["callback.scheduled", "callback.completed"]

    # Ops see it from the command line.
    listed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "callproof.cli", "--config", str(rig.harness.run_dir / "callproof.toml"),
                         "callback", "list", "--state", "completed", "--json"],
        capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert row["id"] in [r["id"] for r in json.loads(listed.stdout)]


async def test_normal_hangup_or_early_drop_is_not_called_back(callback_rig):
    rig = callback_rig
    hung_up = await dropped_call(rig, "11987650012", 16)
    assert hung_up["status"] == "abandoned_in_protocol" and "q850=16" in hung_up["hangup_cause"]
    early = await dropped_call(rig, "11987650013", 38, after="consent_playback_started")
    assert early["status"] == "abandoned_in_consent" and early["protocol"] is None
    for call in (hung_up, early):
        assert await rig.store.get_for_call(call["id"]) is None
    # The recovery sweep agrees: neither is a drop after the protocol.
    await rig.store.sweep(drop_causes=rig.config.callback.drop_causes, since=hung_up["started_at"], plan=Plan(0, 1))
    for call in (hung_up, early):
        assert await rig.store.get_for_call(call["id"]) is None


@pytest.mark.parametrize("caller, cause, outcome, q850", [
    ("11987650021", 41, "busy", 17),
    ("11987650031", 27, "no_answer", 19),
])
async def test_unreachable_customer_is_retried_then_failed(callback_rig, caller, cause, outcome, q850):
    rig = callback_rig
    call = await dropped_call(rig, caller, cause)
    scheduled = await rig.store.get_for_call(call["id"])
    assert scheduled is not None and f"q850={cause}" in scheduled["reason"]
    seen: list[tuple[str, int]] = []
    row = await rig.wait_callback(scheduled["id"], {"completed", "failed"}, seen=seen)
    max_attempts = CALLBACK_SETTINGS["max_attempts"]
    assert row["state"] == "failed" and row["attempts"] == max_attempts
    assert row["outcome"] == f"gave up after {max_attempts} attempts (last: {outcome})"
    assert ("scheduled", 1) in seen, f"no retry was scheduled between the attempts: {seen}"
    attempts = await rig.store.attempts(row["id"])
    assert [(a["outcome"], a["hangup_cause"], a["answered_at"]) for a in attempts] == [(outcome, q850, None)] * 2
    waited = datetime.fromisoformat(attempts[1]["started_at"]) - datetime.fromisoformat(attempts[0]["ended_at"])
    assert waited.total_seconds() >= CALLBACK_SETTINGS["retry_delay_seconds"]
    assert (await audit_actions(rig.app.db, call["protocol"]))[-2:] == ["callback.scheduled", "callback.failed"]
