"""Customer requests end to end on the sandbox Asterisk: a real call, then the
real ``callproof`` command (own process, a config file pointing at the test
database) looks it up, files requests, lists them, produces the customer's
history, and the retention sweeper keeps the requested recording; on SQLite and on
PostgreSQL (the commands open the application's ``[storage]``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from callproof.demo import write_config
from callproof.rights.deadlines import days_remaining, due_at
from callproof.storage import connect_sync
from callproof.storage.timefmt import parse_db_time, to_db_time

pytestmark = pytest.mark.integration

CALLER, CONTROL = "11976540601", "11976540602"
E164 = "+55" + CALLER
IDENTITY_KEY = "3375f8866eb96c1c9a62eab725610c2cc79e823ba4559786"  # random: configuration refuses regular secrets
LINK_SECRET = "be52a5fa9a8fbd0ab7927bee4eef0e48c2a7e3eda3fdf0f9"  # random: configuration refuses regular secrets


def rights_config(harness, app_config, tmp_path: Path) -> Path:
    """The admin's callproof.toml for the test database, plus a [rights] section."""
    run_dir = tmp_path / "cli"
    run_dir.mkdir()
    return write_config(
        harness.sandbox, run_dir, app_config.prompts.directory,
        storage={"database": str(app_config.storage.database), "url": app_config.storage.url},
        recording={"root": str(app_config.recording.root)},
        rights={"identity_key": IDENTITY_KEY, "link_secret": LINK_SECRET,
                "history_dir": str(tmp_path / "history"), "export_dir": str(tmp_path / "exports")})


async def cli(cfg: Path, *argv: str, expect: int = 0) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "callproof.cli", "--config", str(cfg), *argv],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == expect, f"callproof {' '.join(argv)} -> {done.returncode}\n{done.stderr}"
    return done.stdout


async def test_lookup_request_history_and_retention_with_the_real_cli(harness_on, tmp_path):
    harness, app_config = harness_on, harness_on.app.config
    requested, control = await asyncio.gather(harness.place(CALLER, record=False),
                                              harness.place(CONTROL, record=False))
    flows = await asyncio.gather(harness.app.wait_flow(requested.prefix, timeout=90),
                                 harness.app.wait_flow(control.prefix, timeout=90))
    assert [f.outcome for f in flows] == ["handed_off", "handed_off"]
    rows = [await harness.wait_call_row(f, {"completed"}, timeout=30) for f in flows]
    recs = [await harness.wait_recording_final(r["id"]) for r in rows]
    assert [r["state"] for r in recs] == ["finalised", "finalised"]
    protocol, control_protocol = rows[0]["protocol"], rows[1]["protocol"]
    cfg = rights_config(harness, app_config, tmp_path)
    tz = app_config.general.tz

    # Lookup by protocol: the call, its consent evidence, the recording, the SMS.
    [found] = json.loads(await cli(cfg, "lookup", "--protocol", protocol, "--json", "--by", "agent-1"))
    assert found["call"]["protocol"] == protocol and found["call"]["caller_number"] == E164
    assert found["consent"]["outcome"] == "finished" and len(found["consent"]["sha256"]) == 64
    assert [r["state"] for r in found["recordings"]] == ["finalised"]
    assert found["recordings"][0]["sha256"] == recs[0]["sha256"]
    assert found["sms"] and found["sms"][0]["destination"] == E164[:-4] + "****"
    assert found["hold"]["held"] is False and found["requests"] == []
    text = await cli(cfg, "lookup", "--protocol", protocol)
    assert f"protocol {protocol}" in text and "recording" in text and "finalised" in text

    # Lookup by phone in another spelling, today's local date as the range.
    today = datetime.now(tz).date().isoformat()
    by_phone = json.loads(await cli(cfg, "lookup", "--phone", "(11) 97654-0601", "--from", today, "--to", today,
                                    "--json"))
    assert [r["call"]["protocol"] for r in by_phone] == [protocol]

    # A request from another number waits for an identity check...
    other = json.loads(await cli(cfg, "request", "file", protocol, "--phone", "+55 21 99888-7777", "--json",
                                 "--by", "agent-1"))
    assert other["state"] == "needs_identity_check" and other["created"]
    # ...one from the caller's own number (another spelling) is received, due in 10 local days.
    mine = json.loads(await cli(cfg, "request", "file", protocol, "--phone", "011 97654-0601",
                                "--deliver-to", "sms:" + E164, "--json", "--by", "agent-1"))
    assert mine["state"] == "received" and mine["identity_basis"] == "caller_number"
    assert mine["request_protocol"] not in (protocol, other["request_protocol"])
    assert mine["due_at"] == to_db_time(due_at(mine["received_at"], 10, tz))
    assert parse_db_time(mine["due_at"]).astimezone(tz).time().isoformat() == "23:59:59"
    assert days_remaining(mine["due_at"], mine["received_at"], tz) == 10

    listed = json.loads(await cli(cfg, "request", "list", "--open", "--json"))
    ours = {r["id"]: r for r in listed if r["protocol"] == protocol}
    assert ours[mine["id"]]["state"] == "received" and ours[other["id"]]["state"] == "needs_identity_check"
    assert ours[mine["id"]]["days_remaining"] == 10 and ours[mine["id"]]["deadline"] == "on_time"
    table = await cli(cfg, "request", "list")
    assert mine["request_protocol"] in table and "10 day(s) left" in table
    shown = await cli(cfg, "request", "show", mine["request_protocol"])
    assert f"for call {protocol}" in shown and "request.received" in shown

    # The customer's history, as PDF and HTML, contains the protocol and the requests.
    pdf = tmp_path / "historico.pdf"
    out = json.loads(await cli(cfg, "history", "(11) 97654-0601", "--out", str(pdf), "--json"))
    assert out["format"] == "pdf" and out["subject_kind"] == "phone" and out["produced_at"]
    pdf_text = "\n".join(p.extract_text() for p in PdfReader(pdf).pages)
    assert protocol in pdf_text and mine["request_protocol"] in pdf_text and "Histórico" in pdf_text
    assert control_protocol not in pdf_text
    html_out = await cli(cfg, "history", "--phone", E164, "--format", "html")
    [html] = list((tmp_path / "history").glob("history-*.html"))
    assert str(html) in html_out
    assert protocol in html.read_text(encoding="utf-8")

    # Both recordings are now past retention; the sweeper (own process) keeps the requested one.
    conn = connect_sync(app_config.storage.target)
    try:
        conn.execute("UPDATE recordings SET retention_until = '2000-01-01T00:00:00.000000Z' WHERE id IN (?, ?)",
                     (recs[0]["id"], recs[1]["id"]))
    finally:
        conn.close()
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "callproof.cli", "--config", str(cfg), "retention", "sweep",
                         "--json", "--no-scan"], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    items = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(i.get("action") == "deleted" and i.get("protocol") == control_protocol for i in items)
    assert Path(recs[0]["path"]).exists() and not Path(recs[1]["path"]).exists()
    after = await harness.app.db.recordings.get(recs[0]["id"])
    assert after["state"] == "finalised"
    [kept] = json.loads(await cli(cfg, "lookup", "--protocol", protocol, "--json"))
    assert kept["hold"]["held"] is True and set(kept["hold"]["requests"]) == {mine["id"], other["id"]}
    [gone] = json.loads(await cli(cfg, "lookup", "--protocol", control_protocol, "--json"))
    receipt = gone["recordings"][0]["deletion_receipt"]
    assert gone["recordings"][0]["state"] == "deleted" and len(receipt["hash"]) == 64
