"""The customer's history document: subject resolution, HTML (escaped) and PDF
(accented text, checked by extracting it), the history_requests row with its
5-day due time, file mode, audit."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from callproof.rights import history
from callproof.rights.history import FontMissing, produce_history_sync, resolve_subject
from callproof.rights.identity import identity_hash
from callproof.rights.requests import file_request_sync, refuse_request_sync
from callproof.storage import connect_sync
from tests.unit.rights.test_requests import CALLER, CPF, KEY, Calls, make_config

NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)    # 12:00 in São Paulo
OTHER = "+5521998887777"


@pytest.fixture
def env(tmp_path, target):
    conn = connect_sync(target)
    b = Calls(conn, tmp_path / "rec")
    base = make_config()
    config = dataclasses.replace(base, rights=dataclasses.replace(base.rights, history_dir=tmp_path / "hist"))
    c1 = b.add(NOW - timedelta(days=20), caller=CALLER)
    c2 = b.add(NOW - timedelta(days=5), caller=CALLER)
    c3 = b.add(NOW - timedelta(days=4), caller=OTHER)
    conn.execute("UPDATE calls SET cpf_hash = ? WHERE id IN (?, ?)",
                 (identity_hash(KEY, "cpf", CPF), c1["call_id"], c3["call_id"]))
    r1 = file_request_sync(conn, config, call_protocol=c1["protocol"], channel="ivr", actor="ivr", now=NOW,
                           requester_number=CALLER)
    r2 = file_request_sync(conn, config, call_protocol=c2["protocol"], channel="cli", actor="ana", now=NOW,
                           requester_number=OTHER)
    refuse_request_sync(conn, config, r2.id, reason="identidade não confirmada <script>", actor="ana", now=NOW)
    yield conn, config, (c1, c2, c3), (r1, r2), tmp_path
    conn.close()


def test_subject_from_phone_or_cpf_text_and_ambiguity(env):
    _, config, *_ = env
    assert resolve_subject(config, "(11) 91234-5678") == history.HistorySubject("phone", CALLER, CALLER)
    s = resolve_subject(config, "529.982.247-25")
    assert s.kind == "cpf" and s.key == identity_hash(KEY, "cpf", CPF) and s.display == "***.982.247-**"
    assert resolve_subject(config, "52998224725").kind == "cpf"   # not a valid BR phone number
    # 11 digits that are both a mobile number and a valid CPF: the operator must say which
    ambiguous = "11987654374"
    from stdnum.br import cpf as stdcpf

    from callproof.numbers import normalise_caller
    assert stdcpf.is_valid(ambiguous) and normalise_caller(ambiguous, "BR").e164
    with pytest.raises(ValueError, match="--cpf or --phone"):
        resolve_subject(config, ambiguous)
    assert resolve_subject(config, phone=ambiguous).kind == "phone"
    assert resolve_subject(config, cpf=ambiguous).kind == "cpf"
    assert resolve_subject(config, customer_code=" C-1 ").display == "C-1"
    with pytest.raises(ValueError, match="neither"):
        resolve_subject(config, "hello")
    with pytest.raises(ValueError, match="check digits"):
        resolve_subject(config, "529.982.247-24")
    with pytest.raises(ValueError, match="exactly one"):
        resolve_subject(config, CALLER, cpf=CPF)


def test_html_history_by_phone(env):
    conn, config, (c1, c2, c3), (r1, r2), tmp_path = env
    row = produce_history_sync(conn, config, resolve_subject(config, "+55 11 91234-5678"), fmt="html",
                               actor="ana", now=NOW)
    assert row["subject_kind"] == "phone" and row["subject_hash"] == CALLER
    assert row["received_at"] == "2026-09-01T15:00:00.000000Z"
    assert row["due_at"] == "2026-09-07T02:59:59.000000Z"      # end of Sep 6 local: 5 calendar days
    assert row["produced_at"] >= row["received_at"] and row["format"] == "html"
    path = row["path"]
    assert os.path.dirname(path) == str((tmp_path / "hist").resolve())
    assert os.path.basename(path).startswith(f"history-{row['id']:08d}-")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    data = Path(path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == row["sha256"]
    text = data.decode("utf-8")
    for expected in (c1["protocol"], c2["protocol"], r1.request_protocol, r2.request_protocol,
                     "Histórico de atendimentos", "Situação", "recusada", "06/09/2026 23:59"):
        assert expected in text
    assert c3["protocol"] not in text                          # someone else's call
    assert "<script>" not in text and "&lt;script&gt;" in text  # escaped
    actions = conn.execute("SELECT action, actor, subject, details FROM audit_log WHERE action LIKE 'history.%'"
                           " ORDER BY id").fetchall()
    assert [(a, who, s) for a, who, s, _ in actions] == [("history.requested", "ana", f"history:{row['id']}"),
                                                         ("history.produced", "ana", f"history:{row['id']}")]
    produced = json.loads(actions[1][3])
    assert produced["sha256"] == row["sha256"] and produced["calls"] == 2 and produced["requests"] == 2
    assert CALLER not in json.dumps(actions)


def test_pdf_history_by_cpf_has_accented_text(env):
    conn, config, (c1, c2, c3), (r1, r2), tmp_path = env
    out = tmp_path / "out" / "cliente.pdf"
    out.parent.mkdir()
    row = produce_history_sync(conn, config, resolve_subject(config, cpf="529.982.247-25"), fmt="pdf",
                               actor="ana", now=NOW, out=out)
    assert row["subject_kind"] == "cpf" and CPF not in row["subject_hash"]
    assert row["path"] == str(out.resolve()) and stat.S_IMODE(out.stat().st_mode) == 0o640
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and hashlib.sha256(data).hexdigest() == row["sha256"]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    for expected in (c1["protocol"], c3["protocol"], r1.request_protocol, "Histórico de atendimentos",
                     "Solicitações de gravação", "***.982.247-**", "Gravação"):
        assert expected in text, expected
    assert c2["protocol"] not in text and r2.request_protocol not in text   # calls without that CPF
    assert CPF not in text


def test_spanish_labels(env):
    conn, config, *_ = env
    row = produce_history_sync(conn, config, resolve_subject(config, CALLER), fmt="html", actor="a", now=NOW,
                               language="es")
    assert "Historial de atenciones" in Path(row["path"]).read_text(encoding="utf-8")


def test_out_never_follows_a_symlink(env):
    conn, config, *_, tmp_path = env
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    with pytest.raises(OSError):
        produce_history_sync(conn, config, resolve_subject(config, CALLER), fmt="html", actor="a", now=NOW,
                             out=link)
    assert target.read_text() == "keep"


def test_missing_font_is_named_before_anything_is_recorded(env, monkeypatch, tmp_path):
    conn, config, *_ = env
    history.find_fonts.cache_clear()
    monkeypatch.setattr(history, "FONT_ROOTS", (tmp_path / "no-fonts",))
    try:
        with pytest.raises(FontMissing, match="fonts-dejavu-core"):
            produce_history_sync(conn, config, resolve_subject(config, CALLER), fmt="pdf", actor="a", now=NOW)
    finally:
        history.find_fonts.cache_clear()
    assert conn.execute("SELECT count(*) FROM history_requests").fetchone()[0] == 0


def test_bad_format(env):
    conn, config, *_ = env
    with pytest.raises(ValueError, match="pdf, html"):
        produce_history_sync(conn, config, resolve_subject(config, CALLER), fmt="docx", actor="a", now=NOW)
