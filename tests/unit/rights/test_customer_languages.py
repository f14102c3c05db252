"""What the customer reads, in every language callproof serves callers in: the e-mail with the
link to a recording and the demand history (HTML and PDF), in Catalan, Basque and Galician as
in Portuguese, Spanish and English, chosen by the call's language (``calls.language``, as the
prompts and the SMS were), with no English left in them."""

from __future__ import annotations

import dataclasses
import io
import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from pypdf import PdfReader

from callproof.config import SmtpConfig
from callproof.rights.delivery import build_email, deliver_request_sync
from callproof.rights.history import produce_history_sync, resolve_subject
from callproof.rights.requests import file_request_sync
from callproof.rights.texts import EMAIL_TEXTS, HISTORY_LABELS, HISTORY_WORDS, LANGUAGES
from callproof.storage import connect_sync

from .test_delivery import fake_smtp  # noqa: F401 -- the fixture
from .test_export import CALLER, NOW, make_config, make_recording, needs_ffmpeg
from .test_requests import Calls
from .test_requests import make_config as make_rights_config

SPAIN = ("ca", "eu", "gl")
#: words spelt the same in English and in a language (cognates), allowed to look English
SAME_AS_ENGLISH = {"ca": {"Document", "Protocol"}, "eu": set(), "gl": set(), "es": set(), "pt_BR": set()}
#: phrases of the English texts that must not appear in another language's e-mail or history
ENGLISH = ("Hello", "recording of your call", "can be downloaded", "valid until", "up to", "Your request",
           "Contact history", "Customer", "Issued", "Due by", "Calls", "Recording requests", "Request protocol",
           "No records", "Times in time zone", "Generated automatically", "completed", "handed to an agent",
           "in progress", "available", "deleted", "received", "delivered", "refused")


def english_in(text: str) -> list[str]:
    return [phrase for phrase in ENGLISH if re.search(rf"\b{re.escape(phrase)}\b", text)]


def test_every_language_has_every_text_and_none_is_left_in_english():
    english = {"email": EMAIL_TEXTS["en"], "labels": HISTORY_LABELS["en"], "words": HISTORY_WORDS["en"]}
    for lang in LANGUAGES:
        texts = {"email": EMAIL_TEXTS[lang], "labels": HISTORY_LABELS[lang], "words": HISTORY_WORDS[lang]}
        for kind, table in texts.items():
            assert set(table) == set(english[kind]), (lang, kind)  # type: ignore[arg-type]
            if lang == "en":
                continue
            same = [k for k, v in table.items() if v == english[kind][k] and v != "—"  # type: ignore[index]
                    and v not in SAME_AS_ENGLISH[lang]]
            assert same == [], f"{lang} {kind}: still English: {same}"
        # the placeholders of the e-mail are the English one's
        for part in ("subject", "body"):
            assert set(re.findall(r"{(\w+)}", EMAIL_TEXTS[lang][part])) == \
                set(re.findall(r"{(\w+)}", EMAIL_TEXTS["en"][part])), (lang, part)


def _world(tmp_path, language: str):
    base = make_config(tmp_path, smtp=SmtpConfig(sender="gravacions@acme.example"))
    config = dataclasses.replace(base, general=dataclasses.replace(base.general, languages=LANGUAGES))
    conn = connect_sync(tmp_path / "cp.db")
    rec = make_recording(conn, config, language=language)
    request_id = file_request_sync(conn, config, call_protocol=rec["protocol"], channel="cli", actor="ops",
                                   now=NOW, requester_number=CALLER, deliver_to="email:client@example.cat",
                                   identity_verified_by="agent-ana").id
    return config, conn, rec, request_id


@needs_ffmpeg
@pytest.mark.parametrize(("language", "words"), [
    ("ca", ("enregistrament de l'atenció", "Hola,", "enllaç", "vàlid fins al 13/03/2026 14:00")),
    ("eu", ("arretaren grabazioa", "Kaixo:", "esteka", "2026/03/13 14:00 arte")),
    ("gl", ("gravación da atención", "Ola:", "ligazón", "válida ata o 13/03/2026 14:00")),
])
def test_the_email_goes_in_the_calls_co_official_language(tmp_path, fake_smtp, language, words):
    from callproof.rights.export import export_request_sync

    config, conn, rec, request_id = _world(tmp_path, language)
    export_request_sync(conn, config, request_id, actor="ops", now=NOW)
    row = deliver_request_sync(conn, config, request_id, via="email", actor="ops", now=NOW)
    assert row["state"] == "sent"
    (msg,) = fake_smtp.sent
    subject, body = msg["Subject"], msg.get_content()
    assert rec["protocol"] in subject and words[0] in subject
    for word in words[1:]:
        assert word in body, (language, word)
    assert "/d/" in body
    assert english_in(subject + "\n" + body) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_renders_an_email(tmp_path, language):
    config = make_config(tmp_path, smtp=SmtpConfig(sender="rec@acme.example"))
    texts = {"company": "Acme", "protocol": "20260000000000042", "request_protocol": "20260000000000043",
             "url": "https://rec.example/d/abc", "expires": "13/03/2026 14:00", "call_time": "10/03/2026 14:00",
             "max_downloads": "3"}
    msg = build_email(config, "client@example.org", language, texts)
    body = msg.get_content()
    assert "20260000000000042" in msg["Subject"] and "https://rec.example/d/abc" in body and "Acme" in body
    if language != "en":
        assert english_in(msg["Subject"] + body) == []


@pytest.fixture
def history_world(tmp_path, target):
    conn = connect_sync(target)
    calls = Calls(conn, tmp_path / "rec")
    base = make_rights_config()
    config = dataclasses.replace(base, general=dataclasses.replace(base.general, languages=LANGUAGES),
                                 rights=dataclasses.replace(base.rights, history_dir=tmp_path / "hist"))
    first = calls.add(NOW - timedelta(days=9), caller=CALLER)
    latest = calls.add(NOW - timedelta(days=2), caller=CALLER)
    file_request_sync(conn, config, call_protocol=first["protocol"], channel="ivr", actor="ivr", now=NOW,
                      requester_number=CALLER)
    yield conn, config, first, latest
    conn.close()


@pytest.mark.parametrize(("language", "title", "words"), [
    ("ca", "Historial d'atencions", ("Sol·licituds d'enregistrament", "Termini de lliurament", "rebuda",
                                     "Dates a la zona horària")),
    ("eu", "Arreten historia", ("Grabazio-eskaerak", "Entrega-epea", "jasoa", "ordu-eremuan")),
    ("gl", "Historial de atencións", ("Solicitudes de gravación", "Prazo de entrega", "recibida",
                                      "Datas no fuso horario")),
])
def test_the_history_speaks_the_language_of_the_customers_latest_call(history_world, language, title, words):
    conn, config, first, latest = history_world
    conn.execute("UPDATE calls SET language = 'es' WHERE id = ?", (first["call_id"],))
    conn.execute("UPDATE calls SET language = ? WHERE id = ?", (language, latest["call_id"]))
    subject = resolve_subject(config, CALLER)
    html_row = produce_history_sync(conn, config, subject, fmt="html", actor="a", now=NOW)
    html = unescape(Path(html_row["path"]).read_text(encoding="utf-8"))
    assert f'<html lang="{language}">' in html and title in html
    for word in words:
        assert word in html, (language, word)
    assert first["protocol"] in html and latest["protocol"] in html
    pdf_row = produce_history_sync(conn, config, subject, fmt="pdf", actor="a", now=NOW)
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(Path(pdf_row["path"]).read_bytes())).pages)
    assert title in text and words[0] in text
    for document in (html, text):
        assert english_in(re.sub(r"<[^>]+>", " ", document)) == [], language


def test_an_explicit_language_wins_and_an_unoffered_one_falls_back(history_world):
    conn, config, _first, latest = history_world
    conn.execute("UPDATE calls SET language = 'eu' WHERE id = ?", (latest["call_id"],))
    subject = resolve_subject(config, CALLER)
    asked = produce_history_sync(conn, config, subject, fmt="html", actor="a", now=NOW, language="gl")
    assert "Historial de atencións" in Path(asked["path"]).read_text(encoding="utf-8")
    # a deployment that does not offer Basque: the default language, not the call's
    narrow = dataclasses.replace(config, general=dataclasses.replace(config.general, languages=("pt_BR", "es")))
    fallback = produce_history_sync(conn, narrow, subject, fmt="html", actor="a", now=NOW)
    assert "Histórico de atendimentos" in Path(fallback["path"]).read_text(encoding="utf-8")
