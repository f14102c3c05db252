"""callproof sms status / list / retry / metrics on a real database file."""

from __future__ import annotations

import asyncio
import json

import pytest

from callproof.cli import main
from callproof.sms.metrics import exposition
from callproof.storage import Database, NewCall, SmsDraft

MOBILE = "+5511912345678"


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLPROOF_ARI_PASSWORD", "a-long-ari-secret")
    monkeypatch.setenv("CALLPROOF_AMI_PASSWORD", "a-long-ami-secret")
    db_path = tmp_path / "cp.db"
    cfg = tmp_path / "callproof.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db_path}"\n')

    async def fill():
        async with Database.open(db_path) as db:
            out = []
            for i in range(2):
                call_id = await db.calls.create(NewCall(f"c{i}", None, None, MOBILE, MOBILE, None, None,
                                                        "pt_BR", "2026-03-10T14:00:00Z"))
                r = await db.protocols.allocate_for_call(
                    call_id, year=2026, allocated_at="2026-03-10T14:00:00Z",
                    sms=SmsDraft(MOBILE, "pt_BR", lambda p: f"Protocolo {p}"))
                out.append(r)
            # row 1 dies after one rejected attempt, row 2 is sent and delivered
            for r, ok in zip(out, (False, True), strict=True):
                [att] = await db.outbox.claim_for_send("w", 1, 30, "2026-03-10T14:00:01Z", "smpp")
                assert att["id"] == r.outbox_id
                await db.outbox.finish_attempt(
                    att["attempt_id"], outcome="accepted" if ok else "rejected",
                    row_state="sent" if ok else "dead", now="2026-03-10T14:00:02Z", owner="w",
                    gateway_message_id="gw-2" if ok else None, reason=None if ok else "SMPP ESME_RINVDSTADR")
            await db.outbox.record_dlr("gw-2", "DELIVRD", "2026-03-10T14:00:05Z")
            return [(r.protocol, r.outbox_id) for r in out]

    return str(cfg), asyncio.run(fill())


def test_list_failed_shows_dead_letters_masked(setup, capsys):
    cfg, rows = setup
    assert main(["--config", cfg, "sms", "list", "--state", "failed", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == [rows[0][1]]
    assert lines[0]["state"] == "dead" and lines[0]["destination"] == "+551191234****"
    assert main(["--config", cfg, "sms", "list"]) == 0
    assert "ESME_RINVDSTADR" in capsys.readouterr().out


def test_status_shows_attempts_and_receipts_and_is_audited(setup, capsys):
    cfg, rows = setup
    assert main(["--config", cfg, "sms", "status", rows[1][0], "--actor", "ops1"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["state"] == "sent" and row["dlr_state"] == "DELIVRD"
    assert [a["outcome"] for a in row["attempts_log"]] == ["accepted"]
    assert [d["status"] for d in row["receipts"]] == ["DELIVRD"]
    assert main(["--config", cfg, "sms", "status", "123"]) == 2
    assert main(["--config", cfg, "sms", "status", "20269999999999999"]) == 1


def test_retry_requeues_dead_and_refuses_others(setup, capsys):
    cfg, rows = setup
    assert main(["--config", cfg, "sms", "retry", str(rows[1][1])]) == 1
    assert "only dead or failed" in capsys.readouterr().err
    assert main(["--config", cfg, "sms", "retry", str(rows[0][1])]) == 0
    assert "queued again" in capsys.readouterr().out
    assert main(["--config", cfg, "sms", "list", "--state", "pending", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["id"] for x in out] == [rows[0][1]]


def test_metrics_exposition(setup, capsys):
    cfg, _rows = setup
    assert main(["--config", cfg, "sms", "metrics"]) == 0
    text = capsys.readouterr().out
    assert "# TYPE callproof_sms_sent_total counter" in text
    assert "callproof_sms_sent_total 1.0" in text
    assert 'callproof_sms_failed_total{outcome="rejected"} 1.0' in text
    assert "callproof_sms_dlr_delivered_total 1.0" in text
    assert 'callproof_sms_outbox{state="dead"} 1.0' in text


def test_exposition_escapes_labels():
    text = exposition({"dlrs": {'we"ird\n': 2}})
    assert 'callproof_sms_dlr_total{status="we\\"ird\\n"} 2.0' in text


async def test_metrics_endpoint_on_loopback(tmp_path):
    import aiohttp

    from callproof.sms.cli import serve_metrics
    async with Database.open(tmp_path / "m.db") as db:
        runner = await serve_metrics(db, "127.0.0.1", 0)
        try:
            host, port = runner.addresses[0][:2]
            assert host == "127.0.0.1"
            async with aiohttp.ClientSession() as s, s.get(f"http://{host}:{port}/metrics") as r:
                assert r.status == 200 and r.content_type == "text/plain"
                assert "callproof_sms_sent_total 0.0" in await r.text()
        finally:
            await runner.cleanup()
