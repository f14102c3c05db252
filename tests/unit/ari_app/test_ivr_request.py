"""The recording-request IVR (ari_app/ivr_request.py) against a scripted fake ARI.

Each entry prompt the flow plays is answered with the keys the script says (as
ChannelDtmfReceived events), silence (the digit timeout runs out) or a hang-up.
Storage is the real SQLite layer with every migration, and requests are filed
by the real callproof/rights/requests.py.  The same flow is driven with real
DTMF on the sandbox Asterisk in tests/integration/test_ivr_request.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.flow import Services
from callproof.ari_app.ivr_request import DONE_CONTEXT, REQUEST_IVR_ARG, DigitEntry, RequestIvrFlow, is_request_ivr
from callproof.config import load_config
from callproof.storage import NewCall
from callproof.storage._sqlutil import fetch_all
from tests.engines import everything_stored
from tests.fakes import FakePrompts, ScriptedAri
from tests.fakes.flow_config import write_flow_config

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
CALLER = "11987654321"
CALLER_E164 = "+5511987654321"
PROMPTS = FakePrompts(digits="sound:/prompts/pt_BR/digits/")


# --------------------------------------------------------------------------
# the pure parts
# --------------------------------------------------------------------------

def test_digit_entry_keeps_digits_only():
    entry = DigitEntry()
    keys = [*"2026", "A", "D", "", "12", None, 7, *"0000000000042"]
    actions = [entry.press(k) for k in keys]
    assert actions[:4] == ["digit"] * 4
    assert actions[4:10] == ["ignored"] * 6
    assert entry.problem() is None and entry.protocol == "20260000000000042"
    assert entry.press("#") == "finish" and entry.press("*") == "restart"


@pytest.mark.parametrize("keys,problem", [("", "no_digits"), ("2026", "wrong_length"),
                                          ("2" * 16, "wrong_length"), ("2" * 18, "wrong_length"),
                                          ("2" * 400, "wrong_length")])
def test_digit_entry_problems(keys, problem):
    entry = DigitEntry()
    for k in keys:
        entry.press(k)
    assert entry.problem() == problem and entry.count == len(keys)
    with pytest.raises(ValueError):
        _ = entry.protocol
    assert len(entry._digits) <= 18, "a long entry is counted, not kept"


def test_is_request_ivr():
    def ev(args, app_data=None):
        channel = {"id": "1", "dialplan": {"context": "x", "exten": "s"}}
        if app_data is not None:
            channel["dialplan"].update(app_name="Stasis", app_data=app_data)
        return {"type": "StasisStart", "args": args, "channel": channel}

    assert is_request_ivr(ev([REQUEST_IVR_ARG, "pt_BR"]))
    assert not is_request_ivr(ev(["551130000000", "1700000000.0", "", "", ""]))
    assert not is_request_ivr(ev([]))
    # resumed after an ARI reconnect: no args, the dialplan location says it
    assert is_request_ivr(ev([], app_data="callproof,request-ivr,pt_BR"))
    assert not is_request_ivr(ev([], app_data="callproof,551130000000,1700000000.0,,,"))


# --------------------------------------------------------------------------
# the flow against a scripted ARI
# --------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path, target):
    """The request IVR's storage on both engines: ``[storage] url`` when the target is PostgreSQL."""
    return load_config(write_flow_config(tmp_path), env={"CALLPROOF_STORAGE_URL": target} if "://" in target else {})


@pytest.fixture
async def call_protocol(db):
    """A finished inbound call from CALLER, with its protocol."""
    call_id = await db.calls.create(NewCall(
        channel_id="1699999999.1", uniqueid="1699999999.1", linkedid="1699999999.1",
        caller_number_raw=CALLER, caller_number=CALLER_E164, caller_name="", dialled_number="551130000000",
        language="pt_BR", started_at=NOW))
    result = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=NOW, sms=None)
    return result.protocol


_channel_ids = iter(range(1, 10_000))


async def run_ivr(config, db, entries, *, caller=CALLER, consent_keys="", hangup_in=None,
                  channel_id=None, **timeouts):
    channel_id = channel_id or f"1700000000.{next(_channel_ids)}"
    ev = {"type": "StasisStart", "args": [REQUEST_IVR_ARG, ""],
          "channel": {"id": channel_id, "name": "Local/s@callproof-request-entry-0001;2", "state": "Ring",
                      "caller": {"number": caller, "name": ""}, "language": "en",
                      "dialplan": {"context": "callproof-request-entry", "exten": "s"}}}
    inbox = CallInbox(channel_id)
    ari = ScriptedAri(inbox, hangup_in, {"request-consent": consent_keys}, entries=entries)
    services = Services(config=config, db=db, ari=ari, recorder=None, prompts=PROMPTS,
                        wake_sms=lambda: None, clock=lambda: NOW)
    flow = RequestIvrFlow(services, inbox, ev)
    flow.first_digit_timeout = timeouts.get("first", 0.05)
    flow.inter_digit_timeout = timeouts.get("inter", 0.05)
    await asyncio.wait_for(flow.run(), 5)
    row = await flow.repo.get_by_channel(channel_id)
    return flow, ari, row


async def requests(db) -> list[dict]:
    return await db.run_in_connection(
        lambda conn: fetch_all(conn.execute("SELECT * FROM recording_requests ORDER BY id")))


SAME_ANSWER = {"CALLPROOF_REQUEST_PROTOCOL": "", "CALLPROOF_REQUEST_STATE": "submitted", "CALLPROOF_STATUS": "ok"}


async def outbox(db) -> list[tuple[str, str, str]]:
    return await db.run_in_connection(lambda c: c.execute(
        "SELECT protocol, destination, body FROM sms_outbox ORDER BY id").fetchall())


async def test_same_caller_gets_a_received_request_and_its_protocol_by_sms(config, db, call_protocol):
    flow, ari, row = await run_ivr(config, db, [call_protocol + "#"])
    assert flow.outcome == "completed"
    [req] = await requests(db)
    assert req["state"] == "received" and req["channel"] == "ivr" and req["created_by"] == "ivr"
    assert req["protocol"] == call_protocol and req["requester_number"] == CALLER_E164
    assert len(req["request_protocol"]) == 17 and req["request_protocol"] != call_protocol
    # what the caller heard, in order: the announcement first, then the one answer every entry gets
    assert ari.played() == ["request-consent", "request-enter", "request-registered"]
    assert ari.ops[0] == ("answer",)
    assert ari.variables() == SAME_ANSWER
    assert ari.ops[-1] == ("continue", DONE_CONTEXT, "s", 1)
    # the request's own protocol goes by SMS to the call's number (its owner), not by voice
    [(sms_protocol, destination, body)] = await outbox(db)
    assert (sms_protocol, destination) == (req["request_protocol"], CALLER_E164)
    assert req["request_protocol"] in body and call_protocol in body
    assert row["status"] == "completed" and row["call_protocol"] == call_protocol
    assert row["request_id"] == req["id"] and row["attempts"] == 1 and row["request_read_count"] == 1
    assert row["consent_prompt"] == "request-consent" and row["consent_outcome"] == "finished"
    assert row["caller_number"] == CALLER_E164 and row["ended_at"]


async def test_another_number_needs_an_identity_check_and_hears_the_same(config, db, call_protocol):
    _flow, ari, row = await run_ivr(config, db, [call_protocol + "#"], caller="21912345678")
    [req] = await requests(db)
    assert req["state"] == "needs_identity_check" and req["requester_number"] == "+5521912345678"
    # before: 'request-identity-check' told the caller their number did not match
    assert ari.played() == ["request-consent", "request-enter", "request-registered"]
    assert ari.variables() == SAME_ANSWER
    assert row["status"] == "completed"
    [(_p, destination, _b)] = await outbox(db)
    assert destination == CALLER_E164  # the call's owner learns someone asked, the caller does not


async def test_an_unknown_protocol_sounds_exactly_like_a_known_one(config, db, call_protocol):
    """Before: 'request-not-found' and another try for a protocol no call has, so sequential
    protocols could be enumerated by phone."""
    known_flow, known_ari, _ = await run_ivr(config, db, [call_protocol + "#"], caller="21912345678")
    unknown = "2026" + "9" * 13
    flow, ari, row = await run_ivr(config, db, [unknown + "#"], caller="21912345678")
    assert ari.played() == known_ari.played() == ["request-consent", "request-enter", "request-registered"]
    assert [op for op in ari.ops if op[0] != "play"] == [op for op in known_ari.ops if op[0] != "play"]
    assert ari.variables() == known_ari.variables() == SAME_ANSWER
    # the rows keep the truth: nothing filed, nothing typed stored, no SMS for it
    assert flow.outcome == "not_found" and known_flow.outcome == "completed"
    assert row["status"] == "not_found" and row["last_problem"] == "unknown_protocol" and row["attempts"] == 1
    assert row["call_protocol"] is None and row["request_id"] is None and row["ended_at"]
    assert len(await requests(db)) == 1 and len(await outbox(db)) == 1


async def test_withheld_number_needs_an_identity_check(config, db, call_protocol):
    _flow, _ari, row = await run_ivr(config, db, [call_protocol + "#"], caller="anonymous")
    [req] = await requests(db)
    assert req["state"] == "needs_identity_check" and req["requester_number"] is None
    assert row["caller_number"] is None


async def test_wrong_lengths_get_not_a_protocol_then_a_retry(config, db, call_protocol):
    flow, ari, row = await run_ivr(config, db, ["2026#", "2" * 18 + "#", call_protocol + "#"])
    assert flow.outcome == "completed"
    assert ari.played()[:4] == ["request-consent", "request-enter", "request-not-found", "request-not-found"]
    retry = next(op[2] for op in ari.ops if op[0] == "play" and op[1] == "request-not-found")
    assert [m.rsplit("/", 1)[1] for m in retry] == ["request-not-found", "request-enter"]
    assert row["attempts"] == 3 and row["call_protocol"] == call_protocol
    assert len(await requests(db)) == 1


async def test_three_failures_file_nothing(config, db, call_protocol):
    flow, ari, row = await run_ivr(config, db, ["1#", "2026" + "9" * 12 + "#", "2" * 18 + "#"])
    assert flow.outcome == "not_found"
    assert await requests(db) == []
    assert ari.played()[-1] == "request-give-up"
    assert ari.variables() == {"CALLPROOF_REQUEST_PROTOCOL": "", "CALLPROOF_REQUEST_STATE": "not_filed",
                               "CALLPROOF_STATUS": "not_found"}
    assert ari.ops[-1] == ("continue", DONE_CONTEXT, "s", 1)
    assert row["status"] == "not_found" and row["attempts"] == 3 and row["last_problem"] == "wrong_length"
    assert row["call_protocol"] is None and row["request_id"] is None


async def test_silence_is_a_try_without_the_not_found_prompt(config, db, call_protocol):
    flow, ari, row = await run_ivr(config, db, ["", call_protocol + "#"])
    assert ari.played()[:3] == ["request-consent", "request-enter", "request-enter"]
    assert row["attempts"] == 2 and flow.outcome == "completed"


async def test_the_digit_timeout_ends_an_entry_without_hash(config, db, call_protocol):
    flow, _ari, row = await run_ivr(config, db, [call_protocol])
    assert flow.outcome == "completed" and row["attempts"] == 1


async def test_star_starts_again_and_other_keys_are_ignored(config, db, call_protocol):
    flow, ari, row = await run_ivr(config, db, ["99*", "A" + call_protocol[:5] + "B" + call_protocol[5:] + "C#"])
    assert flow.outcome == "completed"
    assert ari.played()[:3] == ["request-consent", "request-enter", "request-enter"]
    assert row["attempts"] == 1, "a restart is not a failed try"
    assert ari.stopped, "typing stops the prompt (barge-in)"


async def test_keys_during_the_announcement_are_ignored(config, db, call_protocol):
    flow, _ari, row = await run_ivr(config, db, [call_protocol + "#"], consent_keys="123#")
    assert flow.outcome == "completed" and row["attempts"] == 1 and row["call_protocol"] == call_protocol


async def test_hang_up_mid_entry_files_nothing_and_stores_no_digits(config, db, call_protocol):
    typed = "20269876543"
    flow, _ari, row = await run_ivr(config, db, [typed[:5] + "#", "HANGUP"])
    assert flow.outcome == "abandoned_in_entry"
    assert await requests(db) == []
    assert row["status"] == "abandoned_in_entry" and row["attempts"] == 1 and row["ended_at"]
    assert row["call_protocol"] is None and row["hangup_cause"]

    assert typed[:5] not in (await db.run_in_connection(everything_stored)).replace(call_protocol, "")


async def test_hang_up_during_the_announcement(config, db, call_protocol):
    _flow, ari, row = await run_ivr(config, db, [], hangup_in="request-consent")
    assert row["status"] == "abandoned_in_consent" and row["consent_outcome"] == "caller_left"
    assert ari.played() == ["request-consent"] and await requests(db) == []


async def test_hang_up_while_hearing_the_new_protocol_keeps_the_request(config, db, call_protocol):
    _flow, _ari, row = await run_ivr(config, db, [call_protocol + "#"], hangup_in="request-registered")
    [req] = await requests(db)
    assert row["status"] == "filed" and row["request_id"] == req["id"] and row["ended_at"]
    assert row["request_read_count"] == 0


async def test_a_resumed_call_does_not_file_twice(config, db, call_protocol):
    _flow, _ari, row = await run_ivr(config, db, [call_protocol + "#"], hangup_in="request-registered",
                                   channel_id="1700000001.1")
    # ARI came back and the channel is still ours: the same row, told its protocol again
    await db.run_in_connection(lambda c: c.execute(
        "UPDATE ivr_request_calls SET ended_at = NULL WHERE id = ?", (row["id"],)))
    flow2, ari2, row2 = await run_ivr(config, db, [], channel_id="1700000001.1")
    [req] = await requests(db)
    assert flow2.outcome == "completed" and row2["id"] == row["id"]
    assert ari2.played() == ["request-registered"]
    assert ari2.variables() == SAME_ANSWER and row2["request_id"] == req["id"]
    assert len(await outbox(db)) == 1  # told once


async def test_a_second_call_for_the_same_protocol_hears_the_open_request(config, db, call_protocol):
    _, _, first = await run_ivr(config, db, [call_protocol + "#"])
    _flow, ari, row = await run_ivr(config, db, [call_protocol + "#"])
    reqs = await requests(db)
    assert len(reqs) == 1, "the open request by the same number is reused, not duplicated"
    assert ari.variables() == SAME_ANSWER and len(await outbox(db)) == 1
    assert row["request_id"] == first["request_id"]


async def test_storage_refuses_anything_but_an_accepted_protocol(config, db, call_protocol):
    flow, _ari, row = await run_ivr(config, db, [call_protocol + "#"])
    for bad in ("2026", "2026abc0000000042", "../../etc/passwd", "2026000000000004٢"):
        with pytest.raises(ValueError):
            await flow.repo.update(row["id"], call_protocol=bad)
    with pytest.raises(ValueError):
        await flow.repo.update(row["id"], status="whatever")


async def test_rows_of_calls_that_ended_while_away_are_settled(config, db):
    from callproof.ari_app.ivr_request import settle_unfinished_ivr
    from callproof.storage.ivr_requests import IvrRequestCalls

    repo = IvrRequestCalls(db)
    ids = {}
    for channel, status in (("s.1", "consent_playing"), ("s.2", "collecting"), ("s.3", "collecting"),
                            ("s.4", "collecting")):
        ids[channel] = await repo.create(channel_id=channel, caller_number=None, language="pt_BR", started_at=NOW)
        if status != "consent_playing":
            await repo.update(ids[channel], status=status)

    class Asterisk:
        async def channel_exists(self, channel_id):
            return channel_id == "s.3"  # still up, not (yet) ours again

    settled = await settle_unfinished_ivr(db, Asterisk(), {"s.4"}, lambda: NOW)
    assert settled == 2
    rows = {c: await repo.get(i) for c, i in ids.items()}
    assert rows["s.1"]["status"] == "abandoned_in_consent" and rows["s.1"]["ended_at"]
    assert rows["s.2"]["status"] == "abandoned_in_entry"
    assert "disconnected" in rows["s.2"]["hangup_cause"]
    assert rows["s.3"]["ended_at"] is None and rows["s.4"]["ended_at"] is None


async def test_a_call_resumed_after_it_was_over_is_only_handed_back(config, db, call_protocol):
    _, _, row = await run_ivr(config, db, [call_protocol + "#"], channel_id="1700000002.1")
    _flow, ari, again = await run_ivr(config, db, [], channel_id="1700000002.1")
    assert ari.ops == [("continue", DONE_CONTEXT, "s", 1)]
    assert again == row and len(await requests(db)) == 1
