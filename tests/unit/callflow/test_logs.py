"""The flow's log lines carry no caller number, on both transports: a recording's file
name holds the caller's digits, so the lines name the recording by id and protocol."""

from __future__ import annotations

import logging

import pytest

from callproof.logs import TextFormatter
from tests.fakes import FakeAsterisk
from tests.unit.agi_scripts.test_flow import run as run_agi
from tests.unit.ari_app.test_flow import run_call as run_ari

DIGITS = "987654321"  # of the fakes' caller, 11987654321


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    formatter = TextFormatter("%(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


async def test_ari_call_logs_no_caller_digits(config, db, caplog):
    caplog.set_level(logging.DEBUG)
    _flow, _ari, recorder, row = await run_ari(config, db)
    assert recorder.started and row["status"] == "handed_off"
    text = _logged(caplog)
    assert "recording.started" in text and "call.handed_off" in text
    assert DIGITS not in text


async def test_agi_call_logs_no_caller_digits(config, db, caplog):
    caplog.set_level(logging.DEBUG)
    _flow, outcome, row = await run_agi(config, db, FakeAsterisk())
    assert outcome == "handed_off" and row["status"] == "handed_off"
    text = _logged(caplog)
    assert "recording.started" in text and "handed_off" in text
    assert DIGITS not in text
