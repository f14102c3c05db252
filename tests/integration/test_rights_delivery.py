"""A customer asks for the recording of a real call and receives it.

A call goes through the sandbox Asterisk (consent, protocol, MixMonitor), the
request is filed, the recording exported to MP3 (tags read back with
ffprobe), and the download link delivered by e-mail to a real SMTP server on
loopback (aiosmtpd) -- first while that server is down -- and by SMS through
the outbox, sent by the running application's own sender.  The link from the
received mail gives back exactly the exported file.  A second test hands the
SMS to a real, independent SMSC (Net::SMPP) through the SMPP backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydub.generators import Sine

from callproof.config import Config, RecordingConfig, RightsConfig, SmtpConfig
from callproof.rights.codes import confirm_code_sync
from callproof.rights.delivery import deliver_request_sync
from callproof.rights.export import ExportError, export_request_sync
from callproof.rights.links import LinkError, make_token, redact_link_tokens, resolve_token_sync
from callproof.rights.requests import file_request_sync
from callproof.sms import OutboxSender
from callproof.sms.smpp import SmppBackend, SmppSettings
from callproof.storage import Database, NewCall, allocate_sync, connect_sync
from callproof.storage import calls as calls_store
from callproof.storage import recordings as recordings_store
from callproof.storage.audit import verify_chain_sync
from callproof.storage.requests import get_request_sync

from .harness import sha256_of
from .sms_peers import PASSWORD, SYSTEM_ID, SmppPeer, decode_text, free_port, require_smpp_peer
from .smtp_peer import smtp_peer  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SECRET = "integration-link-secret-0123456789abcdef"
TOKEN_IN_TEXT = re.compile(r"/d/([A-Za-z0-9_.-]+)")


def rights_config(base: Config, tmp_path: Path, smtp_port: int) -> Config:
    return replace(base, rights=replace(
        base.rights, export_dir=tmp_path / "exports", link_secret=SECRET,
        public_base_url="https://gravacoes.acme.example/",
        smtp=SmtpConfig(host="127.0.0.1", port=smtp_port, sender="gravacoes@acme.example",
                        timeout_seconds=10)))


async def in_db(path: Path, fn, *args, **kwargs):
    """Run a sync storage/rights function on its own connection in a worker
    thread, as the CLI or the web app's thread would (never on the event loop)."""
    def run():
        conn = connect_sync(path)
        try:
            return fn(conn, *args, **kwargs)
        finally:
            conn.close()
    return await asyncio.to_thread(run)


def ffprobe_tags(path: Path) -> tuple[str, dict[str, str]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name:format_tags",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)["format"]
    return info["format_name"], info.get("tags", {})


async def test_recording_request_exported_and_delivered_by_email_and_sms(harness_on, smtp_peer, tmp_path):
    harness, app_config = harness_on, harness_on.app.config  # SQLite, then PostgreSQL
    db_path = app_config.storage.target
    call = await harness.place("11987651234", record=False)
    flow = await harness.app.wait_flow(call.prefix, timeout=90)
    assert flow.outcome == "handed_off"
    row = await harness.wait_call_row(flow, {"completed"}, timeout=30)
    rec = await harness.wait_recording_final(row["id"])
    assert rec["state"] == "finalised"
    protocol = row["protocol"]
    now = datetime.now(UTC)

    # SMTP not reachable first (nothing listens on that port).
    down = rights_config(app_config, tmp_path, free_port())
    up = rights_config(app_config, tmp_path, smtp_peer.port)

    # 1. The customer gives the call's number and wants the link by e-mail: the number alone
    #    (caller ID, no secret) is not identity, so a one-time code goes by SMS to the call's
    #    number, and the request is received once the code comes back.
    filed = await in_db(db_path, file_request_sync, down, call_protocol=protocol, channel="cli",
                        actor="ops-test", now=now, requester_number="(11) 98765-1234",
                        deliver_to="email:Cliente.Teste@example.com")
    assert filed.state == "needs_identity_check" and filed.code_sent
    with pytest.raises(ExportError):  # nothing leaves before the code is back
        await in_db(db_path, export_request_sync, down, filed.id, actor="ops-test", now=now)
    [code_sms] = await in_db(db_path, lambda c: c.execute(
        "SELECT destination, body FROM sms_outbox WHERE protocol = ?", (filed.request_protocol,)).fetchall())
    assert code_sms[0] == "+5511987651234"
    code = re.search(r"\b(\d{6})\b", code_sms[1])[1]
    check = await in_db(db_path, confirm_code_sync, down, filed.id, code, now=now, actor="api")
    assert (check.outcome, check.state) == ("verified", "received")

    # 2. Export to MP3 (the default): tags carry the protocol and the local call time.
    export = await in_db(db_path, export_request_sync, down, filed.id, actor="ops-test", now=now)
    path = Path(export["path"])
    assert path.parent == tmp_path / "exports" and path.suffix == ".mp3"
    assert export["sha256"] == sha256_of(path) and path.stat().st_mode & 0o777 == 0o640
    fmt, tags = ffprobe_tags(path)
    started_local = datetime.fromisoformat(row["started_at"]).astimezone(app_config.general.tz)
    assert fmt == "mp3"
    assert protocol in tags["title"] and started_local.strftime("%Y-%m-%d %H:%M:%S") in tags["title"]
    assert protocol in tags["comment"] and app_config.general.timezone in tags["comment"]

    # 3. E-mail while the mail server is down: a failed delivery, nothing lost.
    failed = await in_db(db_path, deliver_request_sync, down, filed.id, via="email", actor="ops-test",
                         now=now)
    assert failed["state"] == "failed" and "unreachable" in failed["error"]
    assert (await in_db(db_path, get_request_sync, filed.id))["state"] == "exported"
    assert smtp_peer.received == []

    # 4. Server up: the mail arrives with the link, in the call's language.
    sent = await in_db(db_path, deliver_request_sync, up, filed.id, via="email", actor="ops-test", now=now)
    assert sent["state"] == "sent" and sent["recipient"] == "email:Cliente.Teste@example.com"
    (mail,) = await asyncio.to_thread(smtp_peer.wait_for, 1)
    assert mail.rcpt_tos == ["Cliente.Teste@example.com"] and mail.mail_from == "gravacoes@acme.example"
    assert protocol in mail.message["Subject"]
    body = mail.message.get_content()
    assert "https://gravacoes.acme.example/d/" in body and filed.request_protocol in body
    token = TOKEN_IN_TEXT.search(body)[1]
    request = await in_db(db_path, get_request_sync, filed.id)
    assert request["state"] == "delivered" and request["closed_at"] is not None

    # 5. Following the link gives exactly the exported file; a forged one is refused.
    link, served = await in_db(db_path, resolve_token_sync, up, token, now=datetime.now(UTC),
                               remote="203.0.113.9")
    assert served["id"] == export["id"] and link["recipient"] == "email:Cliente.Teste@example.com"
    assert hashlib.sha256(Path(served["path"]).read_bytes()).hexdigest() == export["sha256"]
    with pytest.raises(LinkError) as refused:
        await in_db(db_path, resolve_token_sync, up, token[:-3] + "AAA", now=datetime.now(UTC))
    assert refused.value.reason == "bad_signature"

    # 6. By SMS: an outbox row on the request's own protocol, sent by the running app's sender.
    sms_delivery = await in_db(db_path, deliver_request_sync, up, filed.id, via="sms", actor="ops-test",
                               now=datetime.now(UTC))
    assert sms_delivery["state"] == "queued" and sms_delivery["recipient"] == "sms:+5511987651234"
    for _ in range(150):  # the code SMS is on the same protocol: wait for this row
        sms = dict(await harness.app.db.outbox.get(sms_delivery["outbox_id"]))
        if sms["state"] == "logged":
            break
        await asyncio.sleep(0.1)
    assert sms["state"] == "logged" and sms["destination"] == "+5511987651234"
    # Logged (the session's log backend): the stored body keeps its text, not the token.
    assert "https://gravacoes.acme.example/d/[redacted]" in sms["body"] and protocol in sms["body"]
    assert TOKEN_IN_TEXT.search(sms["body"]) is None
    [(expires_at,)] = await in_db(db_path, lambda c: c.execute(
        "SELECT expires_at FROM download_links WHERE id = ?", (sms_delivery["link_id"],)).fetchall())
    sms_token = make_token(up.rights.link_secret, sms_delivery["link_id"], datetime.fromisoformat(expires_at))
    sms_link, _ = await in_db(db_path, resolve_token_sync, up, sms_token, now=datetime.now(UTC))
    assert sms_link["id"] == sms_delivery["link_id"] != link["id"]

    # 7. The call's audit trail shows every step; the chain is intact.
    def trail(conn):
        return conn.execute("SELECT action, details FROM audit_log WHERE protocol = ? ORDER BY id",
                            (protocol,)).fetchall()
    entries = await in_db(db_path, trail)
    actions = [a for a, _ in entries]
    for wanted in ("request.needs_identity_check", "request.code_sent", "request.identity_verified",
                   "recording.exported", "request.exported", "link.issued",
                   "request.delivery", "request.delivered", "recording.downloaded"):
        assert wanted in actions, wanted
    outcomes = [json.loads(d)["outcome"] for a, d in entries if a == "request.delivery"]
    assert outcomes == ["queued", "failed", "queued", "sent", "queued"]
    downloads = [json.loads(d) for a, d in entries if a == "recording.downloaded"]
    assert downloads[0]["remote"] == "203.0.113.9" and downloads[0]["recipient"] == link["recipient"]

    # The forged token named no trustworthy link, so its refusal is not on the call's trail,
    # but it is in the log.
    def last_refusal(conn):
        return conn.execute("SELECT protocol, details FROM audit_log WHERE action = 'download.refused'"
                            " ORDER BY id DESC LIMIT 1").fetchone()
    where, details = await in_db(db_path, last_refusal)
    assert where is None and json.loads(details)["reason"] == "bad_signature"
    assert await in_db(db_path, verify_chain_sync) is None


# ---------------------------------------------------------------------------
# The link SMS through a real SMSC (own database: the session app's sender
# must not race for the row).

@pytest.fixture
def smpp_peer(tmp_path):
    require_smpp_peer()
    peer = SmppPeer(tmp_path / "smsc.jsonl").start()
    yield peer
    peer.stop()


def _recorded_call(conn, config: Config, now: datetime) -> str:
    """A call with its protocol and a finalised recording (a generated WAV)."""
    call_id = calls_store.create_sync(conn, NewCall("smpp-1", None, None, "11912345678", "+5511912345678",
                                                    None, None, "pt_BR", now), now)
    protocol = allocate_sync(conn, year=now.year, allocated_at=now, call_id=call_id).protocol
    config.recording.root.mkdir(parents=True)
    wav = config.recording.root / f"{protocol}_11912345678_20260310-140000.wav"
    Sine(440).to_audio_segment(duration=800).set_frame_rate(8000).set_channels(1).export(wav, format="wav")
    rec_id = recordings_store.create_sync(conn, call_id, protocol, str(wav), "+5511912345678", now)
    recordings_store.finalise_sync(conn, rec_id, size_bytes=wav.stat().st_size, duration_ms=800,
                                   sha256=sha256_of(wav), finalised_at=now)
    return protocol


async def test_link_sms_reaches_a_real_smsc(tmp_path, smpp_peer):
    config = Config(recording=RecordingConfig(root=tmp_path / "recordings"),
                    rights=RightsConfig(export_dir=tmp_path / "exports", link_secret=SECRET))
    db_path = tmp_path / "cp.db"
    now = datetime.now(UTC)

    def prepare(conn):
        protocol = _recorded_call(conn, config, now)
        filed = file_request_sync(conn, config, call_protocol=protocol, channel="ivr", actor="ivr", now=now,
                                  requester_number="+5511912345678")
        export_request_sync(conn, config, filed.id, actor="ops", now=now, fmt="ogg")
        return deliver_request_sync(conn, config, filed.id, via="sms", actor="ops", now=now)

    delivery = await in_db(db_path, prepare)
    backend = SmppBackend(SmppSettings(port=smpp_peer.port, system_id=SYSTEM_ID, password=PASSWORD,
                                       source_addr="ACME", enquire_link_seconds=5.0, submit_timeout_seconds=2.0))
    async with Database.open(db_path) as db:
        sender = OutboxSender(db, backend, lease_seconds=10, poll_interval=0.1, window=5, backoff_base=0.2,
                              backoff_max=1.0, throttle_seconds=0.3, send_timeout=4.0)
        task = asyncio.create_task(sender.run())
        try:
            for _ in range(300):
                row = await db.outbox.get(delivery["outbox_id"])
                if row["state"] in ("sent", "dead"):
                    break
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await backend.close()
    assert row["state"] == "sent", row
    text = "".join(decode_text(r) for r in smpp_peer.records())
    assert all(r["destination"] == "5511912345678" for r in smpp_peer.records())
    # The customer got the link; the row, once sent, holds the same text without the token.
    assert row["body"] == redact_link_tokens(text) != text and "http://127.0.0.1:8089/d/" in text
    link, export = await in_db(db_path, resolve_token_sync, config, TOKEN_IN_TEXT.search(text)[1], now=now)
    assert link["id"] == delivery["link_id"] and export["format"] == "ogg"
