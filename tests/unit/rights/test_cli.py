"""callproof lookup / request ... / history on a real database file: what an
operator types, what they see, and errors on stderr with exit code 2."""

from __future__ import annotations

import io
import json
import os
import stat
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.storage import connect_sync
from tests.unit.rights.test_requests import CALLER, KEY, Calls

OTHER = "+5521998887777"


def wav_bytes(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * int(8000 * seconds))
    return buf.getvalue()


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.delenv("CALLPROOF_CONFIG", raising=False)
    db_path, rec, hist, exports = (tmp_path / "cp.db", tmp_path / "rec", tmp_path / "hist", tmp_path / "exp")
    rec.mkdir()
    cfg = tmp_path / "callproof.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db_path}"\n[recording]\nroot = "{rec}"\n'
                   f'[rights]\nidentity_key = "{KEY}"\nhistory_dir = "{hist}"\nexport_dir = "{exports}"\n'
                   'link_secret = "a-different-link-secret-of-32-chars-or-more"\n')
    cfg.chmod(0o600)
    conn = connect_sync(db_path)
    b = Calls(conn, rec)
    now = datetime.now(UTC)
    calls = [b.add(now - timedelta(days=2), caller=CALLER, content=wav_bytes()),
             b.add(now - timedelta(days=1), caller=CALLER, content=wav_bytes())]
    conn.close()
    return str(cfg), calls, tmp_path


def run(cfg, *argv, capsys):
    code = main(["--config", cfg, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lookup_by_protocol_and_phone(setup, capsys):
    cfg, calls, _ = setup
    code, out, err = run(cfg, "lookup", "--protocol", calls[0]["protocol"], "--by", "agent-1", capsys=capsys)
    assert code == 0, err
    assert f"protocol {calls[0]['protocol']}" in out and "recording" in out and "finalised" in out
    code, out, _ = run(cfg, "lookup", "--phone", "(11) 91234-5678", "--json", capsys=capsys)
    assert code == 0
    assert [r["call"]["protocol"] for r in json.loads(out)] == [calls[1]["protocol"], calls[0]["protocol"]]
    code, out, _ = run(cfg, "lookup", "--phone", "+5521 99999-0000", capsys=capsys)
    assert code == 1 and "no calls found" in out


@pytest.mark.parametrize("argv, message", [
    (["lookup", "--protocol", "123"], "17 digits"),
    (["lookup", "--phone", "banana"], "not a valid phone number"),
    (["lookup", "--cpf", "529.982.247-24"], "process list"),
    (["lookup", "--protocol", "20260000000000001", "--from", "2026-01-01"], "--from/--to go with"),
    (["lookup", "--phone", CALLER, "--from", "01/02/2026"], "bad date"),
    (["request", "file", "20269999999999999"], "no call with protocol 20269999999999999"),
    (["request", "file", "20260000000000001", "--deliver-to", "pigeon:home"], "deliver-to"),
    (["request", "show", "42"], "no recording request with id 42"),
    (["request", "show", "../../etc/passwd"], "17-digit protocol"),
    (["history", "hello"], "neither a valid phone number nor a valid CPF"),
])
def test_errors_go_to_stderr_with_exit_2(setup, capsys, argv, message):
    cfg, *_ = setup
    code, out, err = run(cfg, *argv, capsys=capsys)
    assert code == 2 and message in err and out == ""


def test_missing_identity_key_is_named(setup, capsys, tmp_path):
    cfg, *_ = setup
    text = Path(cfg).read_text().replace(f'identity_key = "{KEY}"\n', "")
    no_key = tmp_path / "nokey.toml"
    no_key.write_text(text)
    no_key.chmod(0o600)
    os.environ["CALLPROOF_CPF"] = "529.982.247-25"
    try:
        code, _, err = run(str(no_key), "lookup", "--cpf", capsys=capsys)
    finally:
        del os.environ["CALLPROOF_CPF"]
    assert code == 2 and "rights.identity_key" in err


def test_request_file_list_show_verify_refuse_metrics(setup, capsys):
    cfg, calls, _ = setup
    p0, p1 = calls[0]["protocol"], calls[1]["protocol"]
    code, out, err = run(cfg, "request", "file", p0, "--phone", "011 91234-5678", "--by", "ana", capsys=capsys)
    assert code == 0, err
    assert "state received (calling number matches the call; the link goes only to that number)" in out
    code, out, _ = run(cfg, "request", "file", p1, "--phone", OTHER, "--by", "ana", "--json", capsys=capsys)
    other = json.loads(out)
    assert other["state"] == "needs_identity_check" and len(other["request_protocol"]) == 17
    # filing again from the same number gives back the same request
    code, out, _ = run(cfg, "request", "file", p1, "--phone", OTHER, "--json", capsys=capsys)
    assert json.loads(out)["id"] == other["id"] and json.loads(out)["created"] is False

    code, out, _ = run(cfg, "request", "list", capsys=capsys)
    assert code == 0 and "needs_identity_check" in out and "10 day(s) left" in out
    code, out, _ = run(cfg, "request", "list", "--state", "needs_identity_check", "--json", capsys=capsys)
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [other["id"]] and "requester_identity_hash" not in rows[0]
    code, out, _ = run(cfg, "request", "list", "--overdue", capsys=capsys)
    assert "no requests" in out

    code, out, _ = run(cfg, "request", "show", other["request_protocol"], "--by", "bob", capsys=capsys)
    assert code == 0 and f"request {other['id']}" in out and "request.needs_identity_check" in out

    code, out, err = run(cfg, "request", "verify-identity", str(other["id"]), "--by", "agent-bob",
                         "--note", "confirmed date of birth", capsys=capsys)
    assert code == 0 and "identity verified by agent-bob" in out and "state received" in out
    code, _, err = run(cfg, "request", "verify-identity", str(other["id"]), "--by", "agent-bob", capsys=capsys)
    assert code == 2 and "it cannot become 'received'" in err

    code, out, _ = run(cfg, "request", "refuse", str(other["id"]), "--reason", "customer withdrew",
                       "--by", "ana", capsys=capsys)
    assert code == 0 and "refused by ana: customer withdrew" in out

    code, out, _ = run(cfg, "request", "metrics", "--json", capsys=capsys)
    m = json.loads(out)
    assert (m["open"], m["overdue"], m["by_state"]["refused"]) == (1, 0, 1)
    code, out, _ = run(cfg, "request", "metrics", capsys=capsys)
    assert "open requests: 1" in out


def test_export_and_deliver_are_wired(setup, capsys):
    cfg, calls, _ = setup
    code, out, err = run(cfg, "request", "file", calls[0]["protocol"], "--phone", CALLER,
                         "--deliver-to", "sms:(11) 91234-5678", "--json", capsys=capsys)
    req = json.loads(out)
    code, out, err = run(cfg, "request", "export", str(req["id"]), "--format", "wav", "--by", "ana", capsys=capsys)
    assert code == 0, err
    assert "exported: wav" in out
    code, out, err = run(cfg, "request", "deliver", req["request_protocol"], "--via", "sms", "--by", "ana",
                         capsys=capsys)
    assert code == 0, err
    assert "by sms to +5511912345678: queued" in out
    code, out, _ = run(cfg, "request", "show", str(req["id"]), "--json", capsys=capsys)
    shown = json.loads(out)
    assert shown["request"]["state"] == "delivered" and len(shown["exports"]) == 1
    assert [d["channel"] for d in shown["deliveries"]] == ["sms"]


def test_history_pdf_and_html(setup, capsys):
    cfg, calls, tmp_path = setup
    run(cfg, "request", "file", calls[0]["protocol"], "--phone", CALLER, capsys=capsys)
    code, out, err = run(cfg, "history", "(11) 91234-5678", "--by", "ana", capsys=capsys)
    assert code == 0, err
    [pdf] = list((tmp_path / "hist").glob("history-*.pdf"))
    assert f"history 1 (phone {CALLER}): {pdf}" in out
    assert stat.S_IMODE(os.stat(pdf).st_mode) == 0o640
    from pypdf import PdfReader
    text = PdfReader(pdf).pages[0].extract_text()
    assert calls[0]["protocol"] in text and calls[1]["protocol"] in text
    out_file = tmp_path / "h.html"
    code, out, err = run(cfg, "history", "--phone", CALLER, "--format", "html", "--out", str(out_file),
                         "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["path"] == str(out_file)
    assert calls[1]["protocol"] in out_file.read_text(encoding="utf-8")


# -- a CPF or customer code never on the command line (ps, shell history) ----

@pytest.mark.parametrize("argv", [
    ["lookup", "--cpf", "529.982.247-25"],
    ["lookup", "--customer-code", "C-1234"],
    ["request", "file", "20260000000000001", "--cpf", "529.982.247-25"],
    ["history", "--cpf", "529.982.247-25"],
    ["history", "529.982.247-25"],
])
def test_identifier_on_the_command_line_is_refused_with_what_to_use(setup, capsys, argv):
    cfg, *_ = setup
    code, out, err = run(cfg, *argv, capsys=capsys)
    assert code == 2 and out == ""
    assert "process list" in err and "stdin" in err and "CALLPROOF_" in err
    assert "529.982.247-25" not in err and "C-1234" not in err


def test_cpf_read_from_stdin_the_environment_or_a_prompt(setup, capsys, monkeypatch):
    from callproof.rights import cli_input

    cfg, *_ = setup
    monkeypatch.setattr("sys.stdin", io.StringIO("529.982.247-25\n"))
    code, out, err = run(cfg, "lookup", "--cpf", capsys=capsys)
    assert code == 1 and "no calls found" in out, err  # read and looked up (the calls have no CPF)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setenv("CALLPROOF_CPF", "529.982.247-24")
    code, _, err = run(cfg, "lookup", "--cpf", capsys=capsys)
    assert code == 2 and "check digits" in err  # the environment's value was the one read
    monkeypatch.delenv("CALLPROOF_CPF")
    code, _, err = run(cfg, "lookup", "--cpf", capsys=capsys)
    assert code == 2 and "no CPF given" in err

    class Tty(io.StringIO):
        def isatty(self):
            return True

    asked = []
    value = cli_input.read_identifier("cpf", cli_input.READ, env={}, stdin=Tty(),
                                      prompt=lambda text: asked.append(text) or "529.982.247-25")
    assert value == "529.982.247-25" and asked == ["CPF: "]
