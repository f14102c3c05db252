"""The two SMS a request sends (its one-time code, its filing notice) go through one helper:
both refuse a request that does not exist without writing anything, queue the SMS on the
request's own protocol, and audit it with its outbox id in the same transaction."""

from __future__ import annotations

import json

import pytest

from callproof.rights.requests import file_request_sync
from callproof.storage import connect_sync
from callproof.storage.errors import NotFoundError
from callproof.storage.request_codes import queue_code_sync, queue_notice_sync
from tests.unit.rights.test_export import CALLER, NOW, make_config, make_recording

SENDS = {
    "request.code_sent": lambda conn, rid: queue_code_sync(
        conn, rid, code="123456", salt="5a" * 16, destination=CALLER, language="pt_BR", body="code 123456",
        at=NOW, expires_at="2026-03-10T18:00:00.000000Z", actor="api"),
    "request.notice_sent": lambda conn, rid: queue_notice_sync(
        conn, rid, destination=CALLER, language="pt_BR", body="a request was filed", at=NOW, actor="api"),
}


def counts(conn) -> tuple[int, int, int]:
    return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("sms_outbox", "request_codes", "audit_log"))


@pytest.mark.parametrize("action", sorted(SENDS))
def test_each_request_sms_is_queued_on_the_request_protocol_and_audited(tmp_path, target, action):
    config = make_config(tmp_path)
    conn = connect_sync(target)
    rec = make_recording(conn, config)
    filed = file_request_sync(conn, config, call_protocol=rec["protocol"], channel="cli", actor="ops", now=NOW,
                              requester_number=CALLER)
    request_id, request_protocol = conn.execute("SELECT id, request_protocol FROM recording_requests").fetchone()
    before = counts(conn)
    with pytest.raises(NotFoundError, match="does not exist"):
        SENDS[action](conn, request_id + 100)
    assert counts(conn) == before  # nothing half-written
    SENDS[action](conn, request_id)
    outbox_id, protocol, body = conn.execute("SELECT id, protocol, body FROM sms_outbox ORDER BY id DESC").fetchone()
    assert protocol == request_protocol == filed.request_protocol and body.startswith(("code", "a request"))
    (subject, entry_protocol, details) = conn.execute(
        "SELECT subject, protocol, details FROM audit_log WHERE action = ?", (action,)).fetchone()
    assert subject == f"request:{request_id}" and entry_protocol == rec["protocol"]
    details = json.loads(details)
    assert details["outbox_id"] == outbox_id and "123456" not in json.dumps(details)
    if action == "request.code_sent":
        code_id, code_outbox = conn.execute("SELECT id, outbox_id FROM request_codes").fetchone()
        assert details["code_id"] == code_id and code_outbox == outbox_id
