"""Delivering a recording link: SMS through the outbox, e-mail over SMTP (a
stand-in client here; the real server is in tests/integration), refusals and
a mail server that cannot be reached."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import ClassVar

import pytest

from callproof.config import SmtpConfig
from callproof.rights.delivery import DeliveryError, deliver_request_sync
from callproof.rights.export import export_request_sync
from callproof.rights.links import resolve_token_sync
from callproof.rights.requests import file_request_sync
from callproof.sandbox.ports import free_port
from callproof.storage import connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.outbox import get_sync as get_outbox_sync
from callproof.storage.requests import get_request_sync, set_state_sync

from .test_export import CALLER, NOW, audit_rows, make_config, make_recording, needs_ffmpeg

pytestmark = needs_ffmpeg


class FakeSmtp:
    """Records what smtplib.SMTP would have sent."""

    sent: ClassVar[list[EmailMessage]] = []  # shared: the code under test makes its own instances
    calls: ClassVar[list[tuple]] = []
    on_send = None  # called while "sending" (to change the world meanwhile)

    def __init__(self, host, port, timeout=None):
        FakeSmtp.calls.append(("connect", host, port, timeout))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starttls(self, context=None):
        FakeSmtp.calls.append(("starttls",))

    def login(self, user, password):
        FakeSmtp.calls.append(("login", user))

    def send_message(self, msg):
        if FakeSmtp.on_send is not None:
            FakeSmtp.on_send()
        FakeSmtp.sent.append(msg)
        return {}


@pytest.fixture
def fake_smtp(monkeypatch):
    FakeSmtp.sent, FakeSmtp.calls, FakeSmtp.on_send = [], [], None
    monkeypatch.setattr(smtplib, "SMTP", FakeSmtp)
    return FakeSmtp


def closed_port() -> int:
    # outside the ephemeral range: no test running in parallel listens there by chance
    return free_port()


def world_for(tmp_path, target, *, language="pt_BR", deliver_to=None, smtp=None, export=True):
    config = make_config(tmp_path, smtp=smtp or SmtpConfig(sender="gravacoes@acme.example"))
    conn = connect_sync(target)  # SQLite and PostgreSQL (tests/conftest.py)
    rec = make_recording(conn, config, language=language)
    # an agent checked identity: a request accepted on its caller number alone is delivered only
    # to that number (tests/unit/rights/test_request_codes.py)
    request_id = file_request_sync(conn, config, call_protocol=rec["protocol"], channel="cli", actor="ops",
                                   now=NOW, requester_number=CALLER, deliver_to=deliver_to,
                                   identity_verified_by="agent-ana").id
    if export:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    return config, conn, rec, request_id


def test_sms_delivery_queues_an_outbox_row_on_the_request_protocol(tmp_path, target):
    config, conn, rec, request_id = world_for(tmp_path, target)
    row = deliver_request_sync(conn, config, request_id, via="sms", actor="agent7", now=NOW)
    request = get_request_sync(conn, request_id)
    assert row["channel"] == "sms" and row["state"] == "queued" and row["recipient"] == "sms:+5511987654321"
    sms = get_outbox_sync(conn, row["outbox_id"])
    assert sms["protocol"] == request["request_protocol"] and sms["state"] == "pending"
    assert sms["destination"] == "+5511987654321" and sms["language"] == "pt_BR"
    assert sms["body"].startswith("Atendimento: gravacao do protocolo " + rec["protocol"])
    assert "valido ate 13/03/2026 14:00" in sms["body"]  # 72 h, local time
    token = sms["body"].split("/d/")[1].split()[0]
    link, _export = resolve_token_sync(conn, config, token, now=NOW)
    assert link["id"] == row["link_id"] and link["recipient"] == row["recipient"]
    assert request["state"] == "delivered" and request["closed_at"] is not None
    (entry,) = audit_rows(conn, "request.delivery")
    assert entry["actor"] == "agent7" and entry["details"]["outcome"] == "queued"
    assert entry["details"]["outbox_id"] == row["outbox_id"] and entry["protocol"] == rec["protocol"]
    assert verify_chain_sync(conn) is None


def test_sms_in_the_call_language_to_another_number(tmp_path, target):
    config, conn, _rec, request_id = world_for(tmp_path, target, language="es")
    row = deliver_request_sync(conn, config, request_id, via="sms", actor="ops", now=NOW,
                               to="(11) 91234-5678")
    sms = get_outbox_sync(conn, row["outbox_id"])
    assert sms["destination"] == "+5511912345678" and sms["language"] == "es"
    assert "grabacion del protocolo" in sms["body"] and "valido hasta" in sms["body"]


def test_email_delivery_sends_the_link_in_the_customer_language(tmp_path, target, fake_smtp):
    config, conn, rec, request_id = world_for(tmp_path, target, deliver_to="email:Cliente@Example.com")
    row = deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW)
    assert row["state"] == "sent" and row["sent_at"] and row["error"] is None
    assert row["recipient"] == "email:Cliente@Example.com"
    (msg,) = fake_smtp.sent
    assert msg["To"] == "Cliente@Example.com" and msg["From"] == "gravacoes@acme.example"
    assert rec["protocol"] in msg["Subject"] and "gravação" in msg["Subject"]
    body = msg.get_content()
    token = body.split("/d/")[1].split()[0]
    assert resolve_token_sync(conn, config, token, now=NOW)[0]["id"] == row["link_id"]
    assert "válido até 13/03/2026 14:00" in body
    assert get_request_sync(conn, request_id)["state"] == "delivered"
    outcomes = [e["details"]["outcome"] for e in audit_rows(conn, "request.delivery")]
    assert outcomes == ["queued", "sent"]
    assert fake_smtp.calls == [("connect", "127.0.0.1", 25, 30.0)]


def test_starttls_and_login_when_configured(tmp_path, target, fake_smtp):
    smtp = SmtpConfig(host="mail.example", port=587, starttls=True, username="callproof",
                      password="a-long-mail-password", sender="rec@acme.example")
    config, conn, _rec, request_id = world_for(tmp_path, target, smtp=smtp)
    deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW, to="a@b.example")
    assert fake_smtp.calls == [("connect", "mail.example", 587, 30.0), ("starttls",), ("login", "callproof")]


def test_unreachable_smtp_server_leaves_a_failed_row_and_the_request_exported(tmp_path, target):
    port = closed_port()
    config, conn, _rec, request_id = world_for(
        tmp_path, target, smtp=SmtpConfig(port=port, sender="rec@acme.example", timeout_seconds=5))
    row = deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW,
                               to="email:cliente@example.com")
    assert row["state"] == "failed" and row["sent_at"] is None
    assert row["error"] == f"SMTP server 127.0.0.1:{port} unreachable: Connection refused"
    assert get_request_sync(conn, request_id)["state"] == "exported"
    link = conn.execute("SELECT revoked_at FROM download_links WHERE id = ?", (row["link_id"],)).fetchone()
    assert link[0] is not None, "a link nobody received is revoked"
    failed = audit_rows(conn, "request.delivery")[-1]["details"]
    assert failed["outcome"] == "failed" and "unreachable" in failed["error"]


def test_refusals_name_what_is_wrong(tmp_path, target):
    config, conn, _rec, request_id = world_for(tmp_path, target, export=False)
    with pytest.raises(DeliveryError, match="export it first") as exc:
        deliver_request_sync(conn, config, request_id, via="sms", actor="ops", now=NOW)
    assert exc.value.reason == "state"
    export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    for via, to, words in (("sms", "email:a@b.example", "cannot deliver via sms"),
                           ("sms", "+55 11 3333-4444", "cannot receive SMS"),
                           ("email", "not an address", "not valid"),
                           ("email", "a@b.example\r\nBcc: x@y.example", "not valid"),
                           ("fax", None, "'sms' or 'email'")):
        with pytest.raises(DeliveryError, match=words):
            deliver_request_sync(conn, config, request_id, via=via, actor="ops", now=NOW, to=to)
    with pytest.raises(DeliveryError, match="no email deliver-to"):
        deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW)
    no_sender = make_config(tmp_path)
    with pytest.raises(DeliveryError, match=r"rights\.smtp\.sender"):
        deliver_request_sync(conn, no_sender, request_id, via="email", actor="ops", now=NOW, to="a@b.example")
    assert conn.execute("SELECT count(*) FROM download_links").fetchone()[0] == 0, "no link for a refusal"
    assert conn.execute("SELECT count(*) FROM request_deliveries").fetchone()[0] == 0
    conn.execute("UPDATE request_exports SET deleted_at = '2026-03-11T00:00:00.000000Z'")
    with pytest.raises(DeliveryError) as exc:
        deliver_request_sync(conn, config, request_id, via="sms", actor="ops", now=NOW)
    assert exc.value.reason == "no_export"


def test_delivered_request_can_be_delivered_again(tmp_path, target, fake_smtp):
    config, conn, _rec, request_id = world_for(tmp_path, target)
    first = deliver_request_sync(conn, config, request_id, via="sms", actor="ops", now=NOW)
    closed = get_request_sync(conn, request_id)["closed_at"]
    again = deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW, to="a@b.example")
    assert again["state"] == "sent" and again["link_id"] != first["link_id"]
    assert get_request_sync(conn, request_id)["closed_at"] == closed, "a new link does not reopen it"


def test_sms_uses_the_requester_number_when_deliver_to_is_an_email(tmp_path, target, fake_smtp):
    config, conn, _rec, request_id = world_for(tmp_path, target, deliver_to="email:cliente@example.com")
    row = deliver_request_sync(conn, config, request_id, via="sms", actor="ops", now=NOW)
    assert row["recipient"] == "sms:+5511987654321"
    mail = deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW)
    assert mail["recipient"] == "email:cliente@example.com" and mail["state"] == "sent"


def test_mail_sent_while_the_request_was_refused_is_still_recorded(tmp_path, target, fake_smtp):
    config, conn, _rec, request_id = world_for(tmp_path, target)
    fake_smtp.on_send = lambda: set_state_sync(conn, request_id, "refused", actor="supervisor", at=NOW,
                                               reason="requester withdrew")
    row = deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW, to="a@b.example")
    assert row["state"] == "sent" and len(fake_smtp.sent) == 1
    assert get_request_sync(conn, request_id)["state"] == "refused"
