"""Lookup by protocol, phone (any spelling, date range), CPF and customer code:
call, consent evidence, recording (present / deleted with receipt / held), SMS,
requests; each lookup audited without the CPF."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callproof.config import ConfigError, load_config
from callproof.retention import Sweeper
from callproof.rights.identity import identity_hash
from callproof.rights.lookup import lookup_sync, mask_number, parse_day_bound
from callproof.rights.requests import file_request_sync
from callproof.storage import connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.holds import place_hold_sync
from tests.unit.rights.test_requests import CALLER, CPF, KEY, Calls, make_config

SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
SHA = "ab" * 32


@pytest.fixture
def env(tmp_path, target):
    conn = connect_sync(target)  # SQLite and PostgreSQL (tests/conftest.py)
    b = Calls(conn, tmp_path / "rec")
    config = make_config()
    calls = {
        "recent": b.add(datetime(2026, 8, 20, 2, 30, tzinfo=UTC), caller=CALLER),   # Aug 19 23:30 local
        "older": b.add(datetime(2026, 8, 10, 12, 0, tzinfo=UTC), caller=CALLER),
        "expired": b.add(NOW - timedelta(days=200), caller=CALLER),
        "other": b.add(datetime(2026, 8, 15, 12, 0, tzinfo=UTC), caller="+5521998887777"),
    }
    conn.execute(
        "UPDATE calls SET consent_prompt = 'consent-pt_BR', consent_language = 'pt_BR', consent_sha256 = ?,"
        " consent_started_at = started_at, consent_finished_at = started_at, consent_outcome = 'finished',"
        " hangup_cause = '16', cpf_hash = ?, customer_code_hash = ? WHERE caller_number = ?",
        (SHA, identity_hash(KEY, "cpf", CPF), identity_hash(KEY, "customer_code", "C-77"), CALLER))
    conn.execute(
        "INSERT INTO sms_outbox (protocol, call_id, destination, language, body, state, attempts,"
        " created_at, updated_at) VALUES (?, ?, ?, 'pt_BR', 'Protocolo', 'sent', 1, ?, ?)",
        (calls["recent"]["protocol"], calls["recent"]["call_id"], CALLER, "2026-08-20T02:31:00.000000Z",
         "2026-08-20T02:31:05.000000Z"))
    # the expired recording goes (with an audit receipt); the older one is held by a legal hold
    Sweeper(conn, root=b.root, tz=SP, now=lambda: NOW, report=lambda item: None).sweep()
    hold = place_hold_sync(conn, "protocol", protocol=calls["older"]["protocol"], reason="case 12/2026",
                           placed_by="legal", at=NOW)
    yield conn, config, calls, hold
    conn.close()


def by_protocol(results):
    return {r["call"]["protocol"]: r for r in results}


def test_by_protocol_shows_call_consent_recording_sms_requests(env):
    conn, config, calls, _ = env
    req = file_request_sync(conn, config, call_protocol=calls["recent"]["protocol"], channel="cli",
                            actor="ana", now=NOW, requester_number=CALLER)
    [r] = lookup_sync(conn, config, actor="agent-1", protocol=calls["recent"]["protocol"], now=NOW)
    assert r["call"]["protocol"] == calls["recent"]["protocol"]
    assert r["call"]["caller_number"] == CALLER and r["call"]["status"] == "completed"
    assert r["call"]["hangup_cause"] == "16" and r["call"]["ended_at"]
    assert r["consent"] == {"prompt": "consent-pt_BR", "language": "pt_BR", "sha256": SHA,
                            "started_at": r["call"]["started_at"], "finished_at": r["call"]["started_at"],
                            "outcome": "finished"}
    [rec] = r["recordings"]
    assert rec["state"] == "finalised" and rec["sha256"] == calls["recent"]["sha256"]
    assert rec["deletion_receipt"] is None
    assert r["hold"] == {"held": True, "legal_holds": [], "requests": [req.id]}
    [sms] = r["sms"]
    assert sms["state"] == "sent" and sms["destination"] == "+551191234****"
    [q] = r["requests"]
    assert q["request_protocol"] == req.request_protocol and q["state"] == "received"
    assert q["deadline"] == "on_time" and q["days_remaining"] == 10
    assert "requester_identity_hash" not in q


def test_deleted_recording_has_its_audit_receipt_and_held_one_names_the_hold(env):
    conn, config, calls, hold = env
    [gone] = lookup_sync(conn, config, actor="a", protocol=calls["expired"]["protocol"], now=NOW)
    [rec] = gone["recordings"]
    assert rec["state"] == "deleted"
    receipt = rec["deletion_receipt"]
    entry = conn.execute("SELECT id, hash, at FROM audit_log WHERE action = 'recording.deleted'"
                         " AND subject = ?", (f"recording:{calls['expired']['id']}",)).fetchone()
    assert (receipt["audit_id"], receipt["hash"], receipt["at"]) == entry
    assert gone["hold"]["held"] is False
    [held] = lookup_sync(conn, config, actor="a", protocol=calls["older"]["protocol"], now=NOW)
    assert held["hold"]["held"] is True and held["hold"]["requests"] == []
    assert [(h["id"], h["reason"]) for h in held["hold"]["legal_holds"]] == [(hold, "case 12/2026")]


@pytest.mark.parametrize("spelling", ["+55 11 91234-5678", "(11) 91234-5678", "011 91234 5678",
                                      "0xx11 91234-5678", "5511912345678", "11912345678"])
def test_by_phone_in_any_spelling_newest_first(env, spelling):
    conn, config, calls, _ = env
    results = lookup_sync(conn, config, actor="a", phone=spelling, now=NOW)
    assert [r["call"]["protocol"] for r in results] == [
        calls["recent"]["protocol"], calls["older"]["protocol"], calls["expired"]["protocol"]]


def test_phone_with_local_day_range(env):
    conn, config, calls, _ = env
    # Aug 20 02:30 UTC is Aug 19 local: a range ending on Aug 19 (inclusive) finds it
    got = lookup_sync(conn, config, actor="a", phone=CALLER, date_from="2026-08-11", date_to="2026-08-19", now=NOW)
    assert [r["call"]["protocol"] for r in got] == [calls["recent"]["protocol"]]
    got = lookup_sync(conn, config, actor="a", phone=CALLER, date_from=date(2026, 8, 20), now=NOW)
    assert got == []
    got = lookup_sync(conn, config, actor="a", phone=CALLER, date_to="2026-08-10", now=NOW)
    assert [r["call"]["protocol"] for r in got] == [calls["older"]["protocol"], calls["expired"]["protocol"]]
    with pytest.raises(ValueError, match="empty"):
        lookup_sync(conn, config, actor="a", phone=CALLER, date_from="2026-08-12", date_to="2026-08-11")
    with pytest.raises(ValueError, match="bad date"):
        lookup_sync(conn, config, actor="a", phone=CALLER, date_from="12/08/2026")


def test_by_cpf_and_customer_code(env):
    conn, config, _calls, _ = env
    assert len(lookup_sync(conn, config, actor="a", cpf="529.982.247-25", now=NOW)) == 3
    assert len(lookup_sync(conn, config, actor="a", customer_code=" C-77", now=NOW)) == 3
    assert lookup_sync(conn, config, actor="a", cpf="111.444.777-35", now=NOW) == []
    with pytest.raises(ValueError, match="check digits"):
        lookup_sync(conn, config, actor="a", cpf="529.982.247-26")
    no_key = load_config(env={}, require_asterisk_apis=False)
    with pytest.raises(ConfigError, match=r"rights\.identity_key"):
        lookup_sync(conn, no_key, actor="a", cpf=CPF)


def test_selector_errors(env):
    conn, config, calls, _ = env
    with pytest.raises(ValueError, match="exactly one"):
        lookup_sync(conn, config, actor="a")
    with pytest.raises(ValueError, match=r"exactly one .*protocol, phone"):
        lookup_sync(conn, config, actor="a", protocol=calls["recent"]["protocol"], phone=CALLER)
    with pytest.raises(ValueError, match="17 digits"):
        lookup_sync(conn, config, actor="a", protocol="123")
    with pytest.raises(ValueError, match="not a valid phone"):
        lookup_sync(conn, config, actor="a", phone="call me")
    assert lookup_sync(conn, config, actor="a", protocol="20269999999999999", now=NOW) == []


def test_every_lookup_is_audited_without_the_cpf(env):
    conn, config, calls, _ = env
    lookup_sync(conn, config, actor="agent-7", cpf="529.982.247-25", now=NOW)
    lookup_sync(conn, config, actor="agent-8", phone="(11) 91234-5678", now=NOW)
    lookup_sync(conn, config, actor="agent-9", protocol=calls["other"]["protocol"], now=NOW)
    rows = conn.execute("SELECT actor, protocol, subject, details FROM audit_log WHERE action = 'lookup'"
                        " ORDER BY id").fetchall()
    assert [(a, s) for a, _, s, _ in rows] == [("agent-7", "lookup:cpf"), ("agent-8", "lookup:phone"),
                                               ("agent-9", "lookup:protocol")]
    first = json.loads(rows[0][3])
    assert first["by"] == "cpf" and first["count"] == 3 and calls["recent"]["protocol"] in first["protocols"]
    assert rows[2][1] == calls["other"]["protocol"]
    everything = json.dumps(rows)
    for secret in (CPF, "529.982.247-25", identity_hash(KEY, "cpf", CPF), "91234-5678"):
        assert secret not in everything
    assert verify_chain_sync(conn) is None


def test_helpers():
    assert mask_number("+5511912345678") == "+551191234****"
    assert mask_number(None) is None
    assert parse_day_bound("2026-03-01", SP, end=False) == "2026-03-01T03:00:00.000000Z"
    assert parse_day_bound("2026-03-01", SP, end=True) == "2026-03-02T03:00:00.000000Z"
    assert parse_day_bound("2026-03-01T10:00:00+01:00", SP, end=True) == "2026-03-01T09:00:00.000000Z"
