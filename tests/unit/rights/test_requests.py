"""Recording requests: intake (identity rule, due time, own protocol, idempotency),
the state diagram, listing by due time, metrics, and the retention hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from callproof.config import ConfigError, load_config
from callproof.rights.identity import identity_hash
from callproof.rights.requests import (
    file_request_sync,
    normalise_deliver_to,
    refuse_request_sync,
    request_metrics_sync,
    resolve_request_sync,
    verify_identity_sync,
    with_deadline,
)
from callproof.storage import InvalidStateError, NotFoundError, connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.dialect import dialect_of
from callproof.storage.holds import close_request_sync, open_request_sync
from callproof.storage.requests import (
    get_request_sync,
    list_requests_sync,
    requests_for_call_sync,
    set_state_in_transaction_sync,
    set_state_sync,
)
from tests.retention_helpers import Builder

KEY = "an-identity-key-of-at-least-32-characters"
CALLER = "+5511912345678"
CPF = "52998224725"
NOW = datetime(2026, 1, 25, 13, 0, tzinfo=UTC)   # 10:00 in São Paulo

def everything_stored(conn) -> str:
    """Every row of every table as text (SQLite's dump; on PostgreSQL each row's text form)."""
    if dialect_of(conn).name == "sqlite":
        return "\n".join(conn.iterdump())
    tables = [t for (t,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()]
    return "\n".join(str(row[0]) for t in tables for row in conn.execute(f"SELECT r::text FROM {t} r").fetchall())


class Calls(Builder):
    """retention_helpers.Builder, keeping protocol_sequences in step so the requests'
    own protocols (allocated through the sequence) never collide with its calls'."""

    def add(self, *args, **kw) -> dict:
        self.seq = self.conn.execute("SELECT coalesce(max(sequence), 0) FROM protocols WHERE year = ?",
                                     (self.year,)).fetchone()[0]
        made = super().add(*args, **kw)
        self.conn.execute("INSERT INTO protocol_sequences (year, last_value) VALUES (?, ?)"
                          " ON CONFLICT (year) DO UPDATE SET last_value = excluded.last_value",
                          (self.year, self.seq))
        return made


def make_config(**env):
    return load_config(env={"CALLPROOF_RIGHTS_IDENTITY_KEY": KEY, **env}, require_asterisk_apis=False)


@pytest.fixture
def env(tmp_path, target):
    conn = connect_sync(target)
    b = Calls(conn, tmp_path / "rec")
    call = b.add(NOW - timedelta(days=3), caller=CALLER)
    yield conn, b, call, make_config()
    conn.close()


def audit(conn, action=None):
    sql = "SELECT action, actor, protocol, subject, details FROM audit_log"
    rows = conn.execute(sql + (" WHERE action = ?" if action else "") + " ORDER BY id",
                        (action,) if action else ()).fetchall()
    return [(a, actor, p, s, json.loads(d) if d else None) for a, actor, p, s, d in rows]


def test_caller_number_in_another_spelling_is_received_due_in_10_local_days(env):
    conn, _, call, config = env
    filed = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                              now=NOW, requester_number="(11) 91234-5678")
    assert filed.state == "received" and filed.created and filed.identity_basis == "caller_number"
    assert filed.due_at == "2026-02-05T02:59:59.000000Z"   # end of Feb 4, São Paulo
    assert len(filed.request_protocol) == 17 and filed.request_protocol.startswith("2026")
    assert filed.request_protocol != call["protocol"]
    kind = conn.execute("SELECT kind, call_id FROM protocols WHERE protocol = ?",
                        (filed.request_protocol,)).fetchone()
    assert kind == ("request", None)
    row = get_request_sync(conn, filed.id)
    assert row["requester_number"] == CALLER and row["channel"] == "cli" and row["created_by"] == "ana"
    assert row["closed_at"] is None
    [entry] = audit(conn, "request.received")
    assert entry[1:4] == ("ana", call["protocol"], f"request:{filed.id}")
    assert entry[4]["request_protocol"] == filed.request_protocol
    assert entry[4]["identity_basis"] == "caller_number" and CALLER not in json.dumps(entry[4])
    assert verify_chain_sync(conn) is None


def test_other_number_needs_identity_check_then_agent_verifies(env):
    conn, _, call, config = env
    filed = file_request_sync(conn, config, call_protocol=call["protocol"], channel="ivr", actor="ivr",
                              now=NOW, requester_number="+55 21 99888-7777")
    assert filed.state == "needs_identity_check" and filed.identity_basis is None
    assert [e[0] for e in audit(conn) if e[0].startswith("request.")] == ["request.needs_identity_check"]
    row = verify_identity_sync(conn, config, filed.id, actor="agent-bob", now=NOW + timedelta(hours=2),
                               note="confirmed birth date")
    assert row["state"] == "received" and row["updated_by"] == "agent-bob"
    assert row["due_at"] == filed.due_at   # verification does not move the deadline
    [entry] = audit(conn, "request.identity_verified")
    assert entry[1] == "agent-bob" and entry[4]["from"] == "needs_identity_check"


def test_cpf_and_customer_code_match_the_calls_keyed_hash(env):
    conn, _b, call, config = env
    conn.execute("UPDATE calls SET cpf_hash = ?, customer_code_hash = ? WHERE id = ?",
                 (identity_hash(KEY, "cpf", CPF), identity_hash(KEY, "customer_code", "AB-1"), call["call_id"]))
    by_cpf = file_request_sync(conn, config, call_protocol=call["protocol"], channel="web", actor="ana",
                               now=NOW, cpf="529.982.247-25")
    assert by_cpf.state == "received" and by_cpf.identity_basis == "cpf"
    by_code = file_request_sync(conn, config, call_protocol=call["protocol"], channel="web", actor="ana",
                                now=NOW, customer_code=" AB-1 ", requester_number="+5521998887777")
    assert by_code.state == "received" and by_code.identity_basis == "customer_code"
    wrong = file_request_sync(conn, config, call_protocol=call["protocol"], channel="web", actor="ana",
                              now=NOW, cpf="111.444.777-35")
    assert wrong.state == "needs_identity_check"
    stored = get_request_sync(conn, by_cpf.id)["requester_identity_hash"]
    assert stored == identity_hash(KEY, "cpf", CPF) and CPF not in stored
    dump = everything_stored(conn)
    assert CPF not in dump and "529.982.247-25" not in dump


def test_agent_verified_is_received(env):
    conn, _, call, config = env
    filed = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                              now=NOW, identity_verified_by="ana")
    assert filed.state == "received" and filed.identity_basis == "agent"
    assert audit(conn, "request.received")[0][4]["identity_verified_by"] == "ana"


def test_anonymised_call_cannot_be_matched_by_number(env):
    conn, _, call, config = env
    conn.execute("UPDATE calls SET caller_number = NULL WHERE id = ?", (call["call_id"],))
    filed = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                              now=NOW, requester_number=CALLER)
    assert filed.state == "needs_identity_check"


def test_same_requester_twice_gets_the_same_open_request(env):
    conn, _, call, config = env
    first = file_request_sync(conn, config, call_protocol=call["protocol"], channel="ivr", actor="ivr",
                              now=NOW, requester_number=CALLER)
    again = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                              now=NOW + timedelta(days=1), requester_number="011 91234-5678")
    assert again.id == first.id and not again.created
    assert again.request_protocol == first.request_protocol and again.due_at == first.due_at
    assert len(requests_for_call_sync(conn, call["protocol"])) == 1
    assert conn.execute("SELECT count(*) FROM protocols WHERE kind = 'request'").fetchone()[0] == 1
    other = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                              now=NOW, requester_number="+5521998887777")
    assert other.id != first.id and other.created
    # once closed, a new request is a new one
    refuse_request_sync(conn, config, first.id, reason="duplicate of a court order", actor="ana", now=NOW)
    third = file_request_sync(conn, config, call_protocol=call["protocol"], channel="ivr", actor="ivr",
                              now=NOW, requester_number=CALLER)
    assert third.created and third.id not in (first.id, other.id)


def test_intake_errors_name_what_is_wrong(env):
    conn, _, call, config = env
    kw = {"channel": "cli", "actor": "ana", "now": NOW}
    with pytest.raises(NotFoundError, match="20260000000999999"):
        file_request_sync(conn, config, call_protocol="20260000000999999", **kw)
    with pytest.raises(ValueError, match="17 digits"):
        file_request_sync(conn, config, call_protocol="2026-1", **kw)
    with pytest.raises(ValueError, match="requester number"):
        file_request_sync(conn, config, call_protocol=call["protocol"], requester_number="abc", **kw)
    with pytest.raises(ValueError, match="check digits"):
        file_request_sync(conn, config, call_protocol=call["protocol"], cpf="529.982.247-24", **kw)
    with pytest.raises(ValueError, match="channel"):
        file_request_sync(conn, config, call_protocol=call["protocol"], channel="fax", actor="a", now=NOW)
    with pytest.raises(ValueError, match="deliver-to"):
        file_request_sync(conn, config, call_protocol=call["protocol"], deliver_to="fax:123", **kw)
    no_key = load_config(env={}, require_asterisk_apis=False)
    with pytest.raises(ConfigError, match=r"rights\.identity_key"):
        file_request_sync(conn, no_key, call_protocol=call["protocol"], cpf=CPF, **kw)
    # nothing was stored, no protocol used
    assert conn.execute("SELECT count(*) FROM recording_requests").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM protocols WHERE kind = 'request'").fetchone()[0] == 0


def test_deliver_to_normalised():
    assert normalise_deliver_to("sms:(11) 91234-5678", "BR") == "sms:+5511912345678"
    assert normalise_deliver_to("EMAIL: ana@example.com ", "BR") == "email:ana@example.com"
    assert normalise_deliver_to(None, "BR") is None
    with pytest.raises(ValueError, match="cannot receive SMS"):
        normalise_deliver_to("sms:(11) 3333-4444", "BR")   # a landline
    for bad in ("email:ana", "email:a b@example.com", "email:ana@example.com\r\nBcc: x@y.z", "+5511912345678"):
        with pytest.raises(ValueError, match="deliver-to"):
            normalise_deliver_to(bad, "BR")


def test_state_diagram(env):
    conn, _, call, config = env
    r = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                          now=NOW, requester_number=CALLER)
    later = NOW + timedelta(days=1)
    with pytest.raises(InvalidStateError, match="'received'; it cannot become 'delivered'"):
        set_state_sync(conn, r.id, "delivered", actor="ana", at=later)
    with pytest.raises(InvalidStateError, match="cannot become 'received'"):
        set_state_sync(conn, r.id, "received", actor="ana", at=later)
    assert set_state_sync(conn, r.id, "exported", actor="exp", at=later)["state"] == "exported"
    again = set_state_sync(conn, r.id, "exported", actor="exp", at=later, details={"format": "ogg"})
    assert again["state"] == "exported"
    done = set_state_sync(conn, r.id, "delivered", actor="dlv", at=later + timedelta(hours=1))
    assert done["state"] == "delivered" and done["closed_at"] == "2026-01-26T14:00:00.000000Z"
    again = set_state_sync(conn, r.id, "delivered", actor="dlv", at=later + timedelta(days=2))
    assert again["closed_at"] == done["closed_at"]           # delivering again does not move it
    for bad in ("exported", "refused", "received"):
        with pytest.raises(InvalidStateError):
            set_state_sync(conn, r.id, bad, actor="x", at=later, reason="r")
    actions = [e[0] for e in audit(conn) if e[3] == f"request:{r.id}"]
    assert actions == ["request.received", "request.exported", "request.exported", "request.delivered",
                       "request.delivered"]
    assert audit(conn, "request.exported")[1][4]["format"] == "ogg"
    with pytest.raises(NotFoundError, match="999"):
        set_state_sync(conn, 999, "exported", actor="x", at=later)
    with pytest.raises(ValueError, match="unknown request state"):
        set_state_sync(conn, r.id, "lost", actor="x", at=later)


def test_refuse_needs_reason_and_is_final(env):
    conn, _, call, config = env
    r = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                          now=NOW, requester_number="+5521998887777")
    with pytest.raises(ValueError, match="reason"):
        refuse_request_sync(conn, config, r.id, reason="  ", actor="ana", now=NOW)
    row = refuse_request_sync(conn, config, r.id, reason="identity not confirmed", actor="bob", now=NOW)
    assert row["state"] == "refused" and row["refused_reason"] == "identity not confirmed"
    assert row["closed_at"] is not None
    with pytest.raises(InvalidStateError, match="final"):
        verify_identity_sync(conn, config, r.id, actor="bob", now=NOW)
    assert audit(conn, "request.refused")[0][4]["reason"] == "identity not confirmed"


def test_set_state_inside_a_callers_transaction_rolls_back_with_it(env):
    conn, _, call, config = env
    r = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                          now=NOW, requester_number=CALLER)
    with pytest.raises(RuntimeError, match="open write transaction"):
        set_state_in_transaction_sync(conn, r.id, "exported", actor="x", at=NOW)
    dialect_of(conn).begin_write(conn)
    set_state_in_transaction_sync(conn, r.id, "exported", actor="x", at=NOW)
    conn.execute("ROLLBACK")
    assert get_request_sync(conn, r.id)["state"] == "received"
    assert not audit(conn, "request.exported")


def test_list_by_due_time_and_metrics(env):
    conn, b, _, config = env
    made = []
    for age_days in (0, 7, 9, 12):   # received 0/7/9/12 days before NOW -> due in 10/3/1/-2 days
        call = b.add(NOW - timedelta(days=30 + age_days), caller=CALLER)
        made.append(file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli",
                                      actor="ana", now=NOW - timedelta(days=age_days),
                                      requester_number=CALLER))
    hook = open_request_sync(conn, made[0].call_protocol, at=NOW, reference="legal")  # no due time
    rows = list_requests_sync(conn)
    assert [r["id"] for r in rows] == [made[3].id, made[2].id, made[1].id, made[0].id, hook]
    assert [r["id"] for r in list_requests_sync(conn, limit=2)] == [made[3].id, made[2].id]
    soon = list_requests_sync(conn, open_only=True, due_before=NOW + timedelta(days=2))
    assert [r["id"] for r in soon] == [made[3].id, made[2].id]
    decorated = [with_deadline(r, config, NOW) for r in rows]
    assert [(d["days_remaining"], d["deadline"]) for d in decorated] == [
        (-2, "overdue"), (1, "due_soon"), (3, "on_time"), (10, "on_time"), (None, "none")]
    m = request_metrics_sync(conn, config, now=NOW)
    assert (m["open"], m["due_soon"], m["overdue"]) == (5, 1, 1)
    assert m["by_state"]["received"] == 5
    refuse_request_sync(conn, config, made[3].id, reason="not the customer", actor="ana", now=NOW)
    close_request_sync(conn, hook, at=NOW)
    m = request_metrics_sync(conn, config, now=NOW)
    assert (m["open"], m["due_soon"], m["overdue"]) == (3, 1, 0)
    assert with_deadline(get_request_sync(conn, hook), config, NOW)["deadline"] == "closed"
    assert get_request_sync(conn, hook)["state"] == "delivered"   # the hook closes as delivered
    assert [r["id"] for r in list_requests_sync(conn, states=["refused"])] == [made[3].id]
    with pytest.raises(ValueError, match="unknown request state"):
        list_requests_sync(conn, states=["lost"])


def test_resolve_by_id_or_request_protocol(env):
    conn, _, call, config = env
    r = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="ana",
                          now=NOW, requester_number=CALLER)
    assert resolve_request_sync(conn, str(r.id))["id"] == r.id
    assert resolve_request_sync(conn, r.request_protocol)["id"] == r.id
    with pytest.raises(NotFoundError, match="protocol 20269999999999999"):
        resolve_request_sync(conn, "20269999999999999")
    with pytest.raises(NotFoundError, match="id 77"):
        resolve_request_sync(conn, "77")
    with pytest.raises(ValueError, match="17-digit"):
        resolve_request_sync(conn, "../etc")


def test_open_request_holds_the_recording_against_the_sweeper(env, tmp_path):
    from zoneinfo import ZoneInfo

    from callproof.retention import Sweeper

    conn, b, _, config = env
    old = b.add(NOW - timedelta(days=200), caller=CALLER)       # past its 90-day retention
    free = b.add(NOW - timedelta(days=200), caller=CALLER)
    r = file_request_sync(conn, config, call_protocol=old["protocol"], channel="cli", actor="ana",
                          now=NOW, requester_number=CALLER)
    Sweeper(conn, root=b.root, tz=ZoneInfo("America/Sao_Paulo"), now=lambda: NOW,
            report=lambda item: None).sweep()
    states = dict(conn.execute("SELECT id, state FROM recordings"))
    assert states[old["id"]] == "finalised" and states[free["id"]] == "deleted"
    assert r.state == "received"
