"""Finding 6 of the security review: knowing a call's protocol and its phone number is not
identity (caller ID is spoofable, a number no secret).  Before, ``protocol + the call's number
+ deliver_to an attacker's address`` came back ``received`` and the link went there.  Now such a
request waits, a one-time code goes by SMS to the call's number, and only the code (or an agent)
lets the link go anywhere but that number."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from callproof.rights.codes import MAX_CODES_PER_CALL_PER_DAY, confirm_code_sync
from callproof.rights.delivery import DeliveryError, deliver_request_sync
from callproof.rights.export import ExportError, export_request_sync
from callproof.rights.requests import file_request_sync, verify_identity_sync
from callproof.storage import connect_sync
from callproof.storage.requests import get_request_sync

from .test_delivery import fake_smtp  # noqa: F401  (fixture)
from .test_export import CALLER, NOW, make_config, make_recording, needs_ffmpeg

ATTACKER = "email:attacker@evil.example"


@pytest.fixture
def world(tmp_path, target):
    from callproof.config import SmtpConfig

    config = make_config(tmp_path, smtp=SmtpConfig(sender="gravacoes@acme.example"))
    conn = connect_sync(target)
    rec = make_recording(conn, config)
    return config, conn, rec


def file(conn, config, protocol, *, number=CALLER, deliver_to=ATTACKER, channel="http", now=NOW, **kw):
    return file_request_sync(conn, config, call_protocol=protocol, channel=channel, actor="api", now=now,
                             requester_number=number, deliver_to=deliver_to, **kw)


def code_sms(conn, request_protocol):
    rows = conn.execute("SELECT destination, body FROM sms_outbox WHERE protocol = ? ORDER BY id",
                        (request_protocol,)).fetchall()
    return [(d, b) for d, b in rows]


def the_code(body: str) -> str:
    return next(w for w in body.split() if w.isdigit() and len(w) == 6)


def test_the_call_number_and_a_foreign_address_no_longer_make_a_request_received(world):
    config, conn, rec = world
    filed = file(conn, config, rec["protocol"])
    assert filed.state == "needs_identity_check"  # before: 'received' (identity_basis caller_number)
    assert filed.identity_basis is None and filed.code_sent
    [(destination, body)] = code_sms(conn, filed.request_protocol)
    assert destination == CALLER  # the call's number, never the address asked for
    assert filed.request_protocol in body and rec["protocol"] in body
    with pytest.raises(ExportError):
        export_request_sync(conn, config, filed.id, actor="ops", now=NOW)
    stored = conn.execute("SELECT code_hash, salt FROM request_codes").fetchone()
    code = the_code(body)
    assert code not in stored[0] and code not in stored[1]
    audit = " ".join(d or "" for (d,) in conn.execute("SELECT details FROM audit_log"))
    assert code not in audit


@needs_ffmpeg
def test_the_code_from_the_phone_verifies_and_then_the_link_may_go_elsewhere(world, fake_smtp):
    config, conn, rec = world
    filed = file(conn, config, rec["protocol"])
    code = the_code(code_sms(conn, filed.request_protocol)[0][1])
    check = confirm_code_sync(conn, config, filed.id, code, now=NOW + timedelta(minutes=2), actor="api")
    assert (check.outcome, check.state) == ("verified", "received")
    assert get_request_sync(conn, filed.id)["identity_basis"] == "sms_code"
    assert confirm_code_sync(conn, config, filed.id, code, now=NOW, actor="api").outcome == "not_waiting"
    export_request_sync(conn, config, filed.id, actor="ops", now=NOW)
    row = deliver_request_sync(conn, config, filed.id, via="email", actor="ops", now=NOW)
    assert row["recipient"] == ATTACKER and row["state"] == "sent"  # the requester proved it: their address


def test_wrong_codes_run_out_and_then_even_the_right_one_is_refused(world):
    config, conn, rec = world
    filed = file(conn, config, rec["protocol"])
    code = the_code(code_sms(conn, filed.request_protocol)[0][1])
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    outcomes = [confirm_code_sync(conn, config, filed.id, wrong, now=NOW, actor="api")
                for _ in range(config.rights.code_max_attempts)]
    assert [o.outcome for o in outcomes] == ["wrong"] * config.rights.code_max_attempts
    assert outcomes[-1].tries_left == 0
    check = confirm_code_sync(conn, config, filed.id, code, now=NOW, actor="api")
    assert (check.outcome, check.state) == ("spent", "needs_identity_check")
    actions = [a for (a,) in conn.execute("SELECT action FROM audit_log WHERE action LIKE 'request.code%'")]
    assert actions == ["request.code_sent"] + ["request.code_wrong"] * 5 + ["request.code_spent"]


def test_an_expired_code_is_refused(world):
    config, conn, rec = world
    filed = file(conn, config, rec["protocol"])
    code = the_code(code_sms(conn, filed.request_protocol)[0][1])
    late = NOW + timedelta(minutes=config.rights.code_lifetime_minutes, seconds=1)
    assert confirm_code_sync(conn, config, filed.id, code, now=late, actor="api").outcome == "expired"
    with pytest.raises(ValueError, match="6 digits"):
        confirm_code_sync(conn, config, filed.id, "12ab56", now=NOW, actor="api")


def test_codes_to_one_call_number_are_limited_per_day(world):
    config, conn, rec = world
    sent = [file(conn, config, rec["protocol"], deliver_to=f"email:a{i}@evil.example",
                 number=CALLER, customer_code=None, now=NOW + timedelta(minutes=i)).code_sent
            for i in range(MAX_CODES_PER_CALL_PER_DAY + 2)]
    # the same requester (number) has one open request: filing again returns it, no new code
    assert sent == [True] + [False] * (MAX_CODES_PER_CALL_PER_DAY + 1)
    for i in range(MAX_CODES_PER_CALL_PER_DAY + 1):  # different requesters (an identity hash each)
        conn.execute("UPDATE recording_requests SET closed_at = opened_at, state = 'refused',"
                     " refused_reason = 'test' WHERE closed_at IS NULL")
        file(conn, config, rec["protocol"], now=NOW + timedelta(hours=1, minutes=i))
    count = conn.execute("SELECT count(*) FROM request_codes").fetchone()[0]
    assert count == MAX_CODES_PER_CALL_PER_DAY


@needs_ffmpeg
def test_a_request_on_the_call_number_alone_is_delivered_only_to_that_number(world, fake_smtp):
    config, conn, rec = world
    filed = file(conn, config, rec["protocol"], deliver_to=None, channel="ivr")
    assert (filed.state, filed.identity_basis, filed.code_sent) == ("received", "caller_number", False)
    export_request_sync(conn, config, filed.id, actor="ops", now=NOW)
    for via, to in (("email", "attacker@evil.example"), ("sms", "+5521998887777")):
        with pytest.raises(DeliveryError) as err:
            deliver_request_sync(conn, config, filed.id, via=via, to=to, actor="ops", now=NOW)
        assert err.value.reason == "identity"
    assert deliver_request_sync(conn, config, filed.id, via="sms", actor="ops", now=NOW)["recipient"] == f"sms:{CALLER}"
    # an agent's check lets it go elsewhere too (recorded with who did it)
    verify_identity_sync(conn, config, filed.id, actor="maria", now=NOW, note="date of birth")
    assert get_request_sync(conn, filed.id)["identity_basis"] == "agent"
    mail = deliver_request_sync(conn, config, filed.id, via="email", to="ana@example.com", actor="ops", now=NOW)
    assert mail["state"] == "sent"
    details = [json.loads(d) for (d,) in conn.execute(
        "SELECT details FROM audit_log WHERE action = 'request.identity_verified'")]
    assert details[-1]["identity_basis"] == "agent" and details[-1]["note"] == "date of birth"


def test_the_call_number_and_its_own_number_as_deliver_to_is_received(world):
    config, conn, rec = world
    filed = file(conn, config, rec["protocol"], deliver_to=f"sms:{CALLER}")
    assert (filed.state, filed.identity_basis) == ("received", "caller_number")
