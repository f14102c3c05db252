"""The call-status state machine (storage/call_status.py) and storage enforcing it."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from callproof.storage import CallStatus, Database, IllegalTransitionError, NewCall
from callproof.storage import call_status as cs

S = CallStatus


def test_every_status_has_its_transitions() -> None:
    assert set(cs.TRANSITIONS) == set(CallStatus)
    for nexts in cs.TRANSITIONS.values():
        assert nexts <= set(CallStatus)


def test_the_happy_path_is_allowed_step_by_step() -> None:
    path = [*cs.PROGRESS, S.COMPLETED]
    for current, wanted in itertools.pairwise(path):
        assert cs.allowed(current, wanted), (current, wanted)


@pytest.mark.parametrize("current,wanted", [
    (S.PROTOCOL_READING, S.CONSENT_PLAYING),     # consent written after the protocol
    (S.CONSENT_PLAYING, S.PROTOCOL_GIVEN),       # protocol read before it was allocated
    (S.COMPLETED, S.RECORDING),
    (S.ABANDONED_IN_CONSENT, S.PROTOCOL_READING),
    (S.FAILED, S.PROTOCOL_GIVEN),
    (S.HANDED_OFF, S.RECORDING),
])
def test_impossible_changes_are_refused(current: CallStatus, wanted: CallStatus) -> None:
    assert not cs.allowed(current, wanted)


def test_final_statuses() -> None:
    assert {s for s in CallStatus if cs.is_final(s)} == {
        S.COMPLETED, S.ABANDONED_IN_CONSENT, S.ABANDONED_IN_PROTOCOL, S.FAILED}


def test_endings() -> None:
    assert cs.when_caller_left("consent_playing") is S.ABANDONED_IN_CONSENT
    assert cs.when_caller_left("protocol_reading") is S.ABANDONED_IN_PROTOCOL
    assert cs.when_caller_left("recording") is S.RECORDING
    assert cs.when_ended("handed_off") is S.COMPLETED
    assert cs.when_ended("protocol_given") is S.PROTOCOL_GIVEN


def test_step_done() -> None:
    assert cs.step_done("protocol_given", S.PROTOCOL_READING)
    assert not cs.step_done("protocol_reading", S.PROTOCOL_READING)
    assert not cs.step_done("failed", S.CONSENT_PLAYING)
    assert not cs.step_done(None, S.CONSENT_PLAYING)


def test_unknown_status_is_named() -> None:
    with pytest.raises(ValueError, match="'ringing'"):
        cs.parse("ringing")


async def _call(db: Database) -> int:
    return await db.calls.create(NewCall(
        channel_id="ch-1", uniqueid="ch-1", linkedid="ch-1", caller_number_raw="11987654321",
        caller_number="+5511987654321", caller_name="", dialled_number="100", language="pt_BR",
        started_at="2026-12-01T10:00:00Z"))


async def test_storage_refuses_an_illegal_change_and_keeps_the_row(target: str) -> None:
    db = await Database.open(target)
    try:
        call_id = await _call(db)
        with pytest.raises(IllegalTransitionError) as err:
            await db.calls.update(call_id, status="protocol_given")
        assert "'consent_playing' cannot become 'protocol_given'" in str(err.value)
        row = await db.calls.get(call_id)
        assert row["status"] == "consent_playing"
        await db.calls.update(call_id, status="abandoned_in_consent", ended_at="2026-12-01T10:00:05Z")
        with pytest.raises(IllegalTransitionError, match="it is final"):
            await db.calls.update(call_id, status="failed")
        await db.calls.update(call_id, status="abandoned_in_consent")  # the same status again is fine
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # the table knows its statuses too
            await db.calls.update(call_id, status="ringing")
    finally:
        await db.close()
