"""The recording-request IVR on a real Asterisk 22, driven by real DTMF.

First an ordinary call through callproof gives a protocol and a recording; then
the customer calls the request entry ([callproof-request-entry]) and types that
protocol and '#' on the keypad.  What they would notice: the request is filed
(or not), and Asterisk's own log shows the new request's protocol read to them.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

from callproof.rights.identity import identity_hash
from tests.engines import everything_stored

from .ivr_fixtures import IDENTITY_KEY, digits_after, files_played, ivr, ivr_on, ivr_pg  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

CALLER = "11987654321"
CPF = "529.982.247-25"
CPF_DIGITS = "52998224725"


async def finished_call(ivr, caller: str, variables: dict[str, str] | None = None) -> dict:
    """An ordinary call through callproof, completed, with its recording finalised."""
    call = await ivr.place_call(caller, variables=variables)
    flow = await ivr.app.wait_flow(call.prefix, timeout=90)
    assert flow.outcome == "handed_off"
    row = await ivr.wait_call_row(flow, {"completed"}, timeout=30)
    rec = await ivr.wait_recording_final(row["id"])
    assert rec["state"] == "finalised"
    return row


async def request_rows(ivr, protocol: str) -> list[dict]:
    return await ivr.sql("SELECT * FROM recording_requests WHERE protocol = ? ORDER BY id", protocol)


async def ivr_row(ivr, flow) -> dict:
    [row] = await ivr.sql("SELECT * FROM ivr_request_calls WHERE channel_id = ?", flow.channel_id)
    return row


async def enter_protocol(ivr, caller: str, protocol: str):
    call = await ivr.call_ivr(caller)
    await ivr.wait_prompt(call, "request-enter")
    await ivr.type_keys(call, protocol + "#")
    flow = await ivr.app.wait_flow(call.prefix, timeout=120)
    return call, flow


def names(files: list[str]) -> list[str]:
    return [f.rsplit("/", 1)[-1] for f in files]


async def outbox_rows(ivr, request_protocol: str) -> list[dict]:
    return await ivr.sql("SELECT destination, body FROM sms_outbox WHERE protocol = ?", request_protocol)


async def test_same_caller_gets_a_received_request_and_its_protocol_by_sms(ivr_on, sandbox):
    ivr = ivr_on  # SQLite, then PostgreSQL
    call_row = await finished_call(ivr, CALLER)
    protocol = call_row["protocol"]

    _call, flow = await enter_protocol(ivr, CALLER, protocol)
    assert flow.outcome == "completed"
    [req] = await request_rows(ivr, protocol)
    assert req["state"] == "received" and req["channel"] == "ivr" and req["created_by"] == "ivr"
    assert re.fullmatch(r"\d{17}", req["request_protocol"]) and req["request_protocol"] != protocol
    assert req["requester_number"] == "+5511987654321" and req["due_at"] > req["opened_at"]
    assert req["identity_basis"] == "caller_number"
    row = await ivr_row(ivr, flow)
    assert row["status"] == "completed" and row["call_protocol"] == protocol and row["request_id"] == req["id"]
    assert row["consent_outcome"] == "finished" and row["attempts"] == 1

    # Asterisk's log: the announcement first, then the one answer every 17-digit entry gets.
    played = files_played(sandbox, flow.channel["name"])
    assert played and played[0].endswith("/request-consent"), played[:3]
    assert names(played)[-1] == "request-registered" and digits_after(played, "request-registered") == ""
    # the request's own protocol went to the call's number, by SMS
    [sms] = await outbox_rows(ivr, req["request_protocol"])
    assert sms["destination"] == "+5511987654321" and req["request_protocol"] in sms["body"]
    # ... and the keys arrived as DTMF on the IVR's channel (ARI events).
    keys = [ev["digit"] for ev in ivr.app.events[flow.channel_id] if ev.get("type") == "ChannelDtmfReceived"]
    assert "".join(keys) == protocol + "#"


async def test_another_number_or_an_unknown_protocol_sound_the_same(ivr, sandbox):
    """Before: 'request-identity-check' told a caller their number was not the call's, and
    'request-not-found' that a protocol does not exist (protocols are sequential)."""
    protocol = (await finished_call(ivr, "11987650101"))["protocol"]
    _call, other = await enter_protocol(ivr, "21912345678", protocol)
    unknown = protocol[:4] + "9" * 13
    _call, missing = await enter_protocol(ivr, "21912345678", unknown)
    assert other.outcome == "completed" and missing.outcome == "not_found"
    heard_other = names(files_played(sandbox, other.channel["name"]))
    heard_missing = names(files_played(sandbox, missing.channel["name"]))
    assert heard_other == heard_missing and heard_other[-1] == "request-registered", (heard_other, heard_missing)
    # the rows keep the truth
    [req] = await request_rows(ivr, protocol)
    assert req["state"] == "needs_identity_check" and req["requester_number"] == "+5521912345678"
    [sms] = await outbox_rows(ivr, req["request_protocol"])
    assert sms["destination"] == "+5511987650101"  # the call's owner hears of it, the caller does not
    row = await ivr_row(ivr, missing)
    assert row["status"] == "not_found" and row["last_problem"] == "unknown_protocol"
    assert row["request_id"] is None and row["call_protocol"] is None
    assert await request_rows(ivr, unknown) == []


async def test_hang_up_mid_entry_files_nothing(ivr):
    protocol = (await finished_call(ivr, "11987650103"))["protocol"]
    call = await ivr.call_ivr("11987650103")
    await ivr.wait_prompt(call, "request-enter")
    await ivr.type_keys(call, protocol[:9])
    await asyncio.sleep(0.3)
    await ivr.hang_up(call)
    flow = await ivr.app.wait_flow(call.prefix, timeout=60)
    assert flow.outcome == "abandoned_in_entry"
    row = await ivr_row(ivr, flow)
    assert row["status"] == "abandoned_in_entry" and row["ended_at"] and row["request_id"] is None
    assert await request_rows(ivr, protocol) == []


FIND_IN_FILES = """
import os, sys
path, spellings = sys.argv[1], sys.argv[2:]
stored = b"".join(open(n, "rb").read() for n in (path, path + "-wal") if os.path.exists(n))
print(" ".join(s for s in spellings if s.encode() in stored))
"""


async def test_cpf_from_the_dialplan_is_stored_only_as_its_keyed_hash(ivr_on):
    ivr = ivr_on  # SQLite, then PostgreSQL
    row = await finished_call(ivr, "11987650104", variables={"CALLPROOF_CPF": CPF})
    assert row["cpf_hash"] == identity_hash(IDENTITY_KEY, "cpf", CPF_DIGITS)
    spellings = [CPF_DIGITS, CPF, "529982247", "982.247"]
    if ivr.app.config.storage.engine == "postgresql":
        # no file of callproof's own to read: every value of every table, through the engine
        stored = await ivr.app.db.run_in_connection(everything_stored)
        assert row["cpf_hash"] in stored  # what was stored instead is there
        assert [s for s in spellings if s in stored] == [], "the CPF is stored in the database"
    else:
        await ivr.app.db.run_in_connection(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
        # Read the files from another process (freed pages and the WAL included): closing a
        # descriptor of the database file in this one would drop the SQLite locks the running
        # application holds on it.
        path = ivr.app.db.path
        found = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", FIND_IN_FILES, path, *spellings],
                                        capture_output=True, text=True, check=True)
        assert found.stdout.split() == [], f"{found.stdout.split()} found in the database file or its WAL"


async def test_ari_link_lost_mid_entry_resumes_the_ivr(ivr):
    """Asterisk keeps the channel in Stasis while callproof is away; on reconnect the IVR
    (not the inbound call flow) picks it up again, from the entry prompt."""
    protocol = (await finished_call(ivr, "11987650105"))["protocol"]
    call = await ivr.call_ivr("11987650105")
    first = await ivr.wait_prompt(call, "request-enter")
    await ivr.app.ari.close()  # the WebSocket drops
    resumed = await ivr.wait_prompt(call, "request-enter", count=2, timeout=90)
    assert resumed is not first and type(resumed) is type(first)
    await ivr.type_keys(call, protocol + "#")
    flow = await ivr.app.wait_flow(call.prefix, timeout=120)
    assert flow.outcome == "completed"
    [req] = await request_rows(ivr, protocol)
    assert req["state"] == "received"
    row = await ivr_row(ivr, flow)
    assert row["status"] == "completed" and row["request_id"] == req["id"]
    assert row["consent_outcome"] == "finished", "the announcement is not replayed after a resume"
    assert await ivr.sql("SELECT id FROM calls WHERE channel_id = ?", flow.channel_id) == [], \
        "a resumed IVR call must not become an inbound call"
