"""A customer's call history as a document they can be sent (HTML or PDF).

The customer may ask for the history of their contacts (protocols, dates,
states, requests), to be provided within ``[rights] history_due_days``
(5 calendar days).  Each document is a ``history_requests`` row: received and
due times, then produced time, file and sha256, so producing it on time can be
proved.  The subject is stored as E.164 for a phone number and as the keyed
hash for a CPF / customer code (never the CPF itself).

The file name is built from the row id and the time only: nothing the customer
typed reaches a path.  Files are mode 0640.  With ``[encryption] enabled`` the
document stored under ``[rights] history_dir`` is encrypted (``….pdf.age``) to the
newest hold key's public key (docs/keys.md): like an export, it belongs to a customer's
request, not to a recording's retention period.  It is read with the hold key
(``age -d -i hold-N.key``).  The row's sha256 is the document's (what the customer gets).
A document written to an explicit ``--out`` file is the operator's copy to hand over:
written as asked, in plaintext.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from callproof.config import Config
from callproof.numbers import normalise_caller
from callproof.storage import SyncDatabase
from callproof.storage.history import HistoryCall, HistoryRequest, HistoryRequestLine
from callproof.storage.timefmt import parse_db_time, to_db_time

from .deadlines import due_at
from .identity import identity_hash_for, mask_cpf, normalise_cpf, normalise_customer_code
from .texts import HISTORY_LABELS, HISTORY_TIME_FORMAT, HISTORY_TIME_FORMATS, HISTORY_WORDS

__all__ = [
    "FORMATS",
    "FontMissing",
    "HistorySubject",
    "collect_history_sync",
    "find_fonts",
    "produce_history_sync",
    "render_html",
    "render_pdf",
    "resolve_subject",
]

FORMATS = ("pdf", "html")
FILE_MODE = 0o640
DIR_MODE = 0o750
FONT_ROOTS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


class FontMissing(RuntimeError):
    """The PDF needs a Unicode TrueType font (DejaVu, Debian package fonts-dejavu-core)."""


@dataclass(frozen=True, slots=True)
class HistorySubject:
    kind: str       # phone | cpf | customer_code
    key: str        # E.164, or the keyed hash
    display: str    # what the document shows: the number, a masked CPF, the code


def resolve_subject(config: Config, text: str | None = None, *, phone: str | None = None,
                    cpf: str | None = None, customer_code: str | None = None) -> HistorySubject:
    """The subject from exactly one of: ``text`` (a phone number or a CPF, told
    apart by their shape), ``phone``, ``cpf``, ``customer_code``.

    An 11-digit string can be both a Brazilian mobile number and a valid CPF:
    then ValueError asks to say which (``--phone`` / ``--cpf``)."""
    given = [v for v in (text, phone, cpf, customer_code) if v not in (None, "")]
    if len(given) != 1:
        raise ValueError("give exactly one subject: a phone number, a CPF or a customer code")
    region = config.general.phone_region
    if text:
        stripped = text.strip()
        if _looks_like_cpf(stripped):
            normalise_cpf(stripped)  # a punctuated CPF with a typo: say what is wrong with it
        as_cpf = as_phone = None
        try:
            as_cpf = normalise_cpf(stripped)
        except ValueError:
            pass
        number = normalise_caller(stripped, region)
        if number.e164 is not None:
            as_phone = number.e164
        if as_cpf and as_phone and not _looks_like_cpf(stripped):
            raise ValueError(f"{stripped!r} is both a valid CPF and a valid phone number: "
                             "say which with --cpf or --phone")
        if as_cpf:
            cpf = stripped
        elif as_phone:
            phone = stripped
        else:
            raise ValueError(f"{stripped!r} is neither a valid phone number nor a valid CPF")
    if phone:
        number = normalise_caller(phone, region)
        if number.e164 is None:
            raise ValueError(f"phone {phone!r} is not a valid phone number ({number.reason})")
        return HistorySubject("phone", number.e164, number.e164)
    if cpf:
        value = normalise_cpf(cpf)
        return HistorySubject("cpf", identity_hash_for(config, "cpf", value), mask_cpf(value))
    assert customer_code is not None  # the one subject given
    code = normalise_customer_code(customer_code)
    return HistorySubject("customer_code", identity_hash_for(config, "customer_code", code), code)


def _looks_like_cpf(text: str) -> bool:
    """``123.456.789-09``: the punctuation only a CPF has."""
    return len(text) == 14 and text[3] == "." and text[7] == "." and text[11] == "-"


# -- data --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HistoryData:
    calls: list[HistoryCall]
    requests: list[HistoryRequestLine]

    def __getitem__(self, key: str) -> list[HistoryCall] | list[HistoryRequestLine]:
        lists: dict[str, list[HistoryCall] | list[HistoryRequestLine]] = {"calls": self.calls,
                                                                          "requests": self.requests}
        return lists[key]


def collect_history_sync(db: SyncDatabase, subject: HistorySubject) -> HistoryData:
    """The subject's calls (oldest first) with their recording state and requests,
    and requests the subject filed on other calls."""
    calls, requests = SyncDatabase.wrap(db).history.collect(subject.kind, subject.key)
    return HistoryData(calls, requests)


# -- rendering ---------------------------------------------------------------

def _language(config: Config, language: str | None, data: HistoryData | None = None) -> str:
    """The document's language: the one asked for, else the subject's latest call's (as its
    prompts and SMS were), else ``[general] default_language``; English without a text."""
    latest = next((c.language for c in reversed(data.calls) if c.language), None) if data else None
    for lang in (language, latest if latest in config.general.languages else None,
                 config.general.default_language):
        if lang in HISTORY_LABELS:
            return lang
    return "en"


def _view(config: Config, subject: HistorySubject, data: HistoryData, meta: dict[str, Any],
          language: str | None) -> dict[str, Any]:
    """Everything the templates print, already formatted as local text."""
    lang = _language(config, language, data)
    tz = config.general.tz
    words = HISTORY_WORDS[lang]
    time_format = HISTORY_TIME_FORMATS.get(lang, HISTORY_TIME_FORMAT)

    def when(value: str | None) -> str:
        return parse_db_time(value).astimezone(tz).strftime(time_format) if value else "—"

    def word(value: str | None) -> str:
        return words.get(value, value or "—")

    return {
        "lang": lang.replace("_", "-"),
        "l": HISTORY_LABELS[lang],
        "company": config.general.company_name,
        "subject": subject.display,
        "document": f"#{meta['id']}",
        "generated": when(meta["received_at"]),
        "due": when(meta["due_at"]),
        "footer": HISTORY_LABELS[lang]["footer"].format(tz=config.general.timezone),
        "calls": [{"protocol": c["protocol"] or "—", "date": when(c["started_at"]), "status": word(c["status"]),
                   "recording": word(c.recording)} for c in data.calls],
        "requests": [{"request_protocol": r["request_protocol"], "call_protocol": r["protocol"],
                      "received": when(r["opened_at"]), "due": when(r["due_at"]),
                      "state": word(r["state"]) + (f" ({r['refused_reason']})" if r["refused_reason"] else ""),
                      "closed": when(r["closed_at"]) if r["closed_at"] else ""}
                     for r in data.requests],
    }


_HTML = """<!DOCTYPE html>
<html lang="{{ v.lang }}">
<head>
<meta charset="utf-8">
<title>{{ v.l.title }} — {{ v.company }}</title>
<style>
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5em; }
th, td { border: 1px solid #999; padding: 4px 8px; text-align: left; font-size: 0.9em; }
th { background: #eee; }
.meta td { border: none; padding: 2px 8px 2px 0; }
footer { font-size: 0.8em; color: #555; }
</style>
</head>
<body>
<h1>{{ v.company }} — {{ v.l.title }}</h1>
<table class="meta">
<tr><td>{{ v.l.customer }}:</td><td>{{ v.subject }}</td></tr>
<tr><td>{{ v.l.document }}:</td><td>{{ v.document }}</td></tr>
<tr><td>{{ v.l.generated }}:</td><td>{{ v.generated }}</td></tr>
<tr><td>{{ v.l.due }}:</td><td>{{ v.due }}</td></tr>
</table>
<h2>{{ v.l.calls }}</h2>
{% if v.calls %}
<table>
<tr><th>{{ v.l.protocol }}</th><th>{{ v.l.date }}</th><th>{{ v.l.situation }}</th><th>{{ v.l.recording }}</th></tr>
{% for c in v.calls %}<tr><td>{{ c.protocol }}</td><td>{{ c.date }}</td><td>{{ c.status }}</td><td>{{ c.recording }}</td></tr>
{% endfor %}</table>
{% else %}<p>{{ v.l.none }}</p>{% endif %}
<h2>{{ v.l.requests }}</h2>
{% if v.requests %}
<table>
<tr><th>{{ v.l.request_protocol }}</th><th>{{ v.l.call_protocol }}</th><th>{{ v.l.received }}</th><th>{{ v.l.request_due }}</th><th>{{ v.l.state }}</th></tr>
{% for r in v.requests %}<tr><td>{{ r.request_protocol }}</td><td>{{ r.call_protocol }}</td><td>{{ r.received }}</td><td>{{ r.due }}</td><td>{{ r.state }}{% if r.closed %} — {{ v.l.closed }} {{ r.closed }}{% endif %}</td></tr>
{% endfor %}</table>
{% else %}<p>{{ v.l.none }}</p>{% endif %}
<footer>{{ v.footer }}</footer>
</body>
</html>
"""  # noqa: E501 -- one table row per template line, as the page is rendered


def render_html(view: dict) -> bytes:
    """The history as a standalone UTF-8 HTML page (every value escaped)."""
    from jinja2 import Environment

    env = Environment(autoescape=True, keep_trailing_newline=True)
    return env.from_string(_HTML).render(v=view).encode("utf-8")


@lru_cache(maxsize=1)
def find_fonts() -> tuple[Path, Path]:
    """(regular, bold) DejaVu Sans TTF files; FontMissing says how to get them."""
    for root in FONT_ROOTS:
        if not root.is_dir():
            continue
        regular = next(iter(sorted(root.rglob("DejaVuSans.ttf"))), None)
        bold = next(iter(sorted(root.rglob("DejaVuSans-Bold.ttf"))), None)
        if regular and bold:
            return regular, bold
    raise FontMissing("PDF history needs the DejaVu Sans fonts (DejaVuSans.ttf, DejaVuSans-Bold.ttf) under "
                      f"{' or '.join(str(r) for r in FONT_ROOTS)}: install the Debian package fonts-dejavu-core, "
                      "or use --format html")


def render_pdf(view: dict) -> bytes:
    """The history as a PDF (fpdf2, DejaVu Sans so accented text is drawn right)."""
    from fpdf import FPDF

    regular, bold = find_fonts()
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(f"{view['l']['title']} — {view['company']}")
    pdf.set_creator("callproof")
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    labels = view["l"]
    pdf.set_font("DejaVu", "B", 16)
    pdf.multi_cell(0, 9, f"{view['company']} — {labels['title']}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("DejaVu", "", 10)
    for label, value in ((labels["customer"], view["subject"]), (labels["document"], view["document"]),
                         (labels["generated"], view["generated"]), (labels["due"], view["due"])):
        pdf.cell(45, 6, f"{label}:")
        pdf.cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
    for title, headings, rows in (
        (labels["calls"], (labels["protocol"], labels["date"], labels["situation"], labels["recording"]),
         [(c["protocol"], c["date"], c["status"], c["recording"]) for c in view["calls"]]),
        (labels["requests"], (labels["request_protocol"], labels["call_protocol"], labels["received"],
                              labels["request_due"], labels["state"]),
         [(r["request_protocol"], r["call_protocol"], r["received"], r["due"],
           r["state"] + (f" — {labels['closed']} {r['closed']}" if r["closed"] else "")) for r in view["requests"]]),
    ):
        pdf.ln(4)
        pdf.set_font("DejaVu", "B", 12)
        pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 9)
        if not rows:
            pdf.cell(0, 6, labels["none"], new_x="LMARGIN", new_y="NEXT")
            continue
        widths = (34, 34, 24, 24, 54) if len(headings) == 5 else (40, 35, 55, 40)
        with pdf.table(headings_style=_heading_style(), line_height=5.5, padding=1.2, text_align="LEFT",
                       col_widths=widths) as table:
            table.row(headings)
            for row in rows:
                table.row(row)
    pdf.ln(6)
    pdf.set_font("DejaVu", "", 8)
    pdf.multi_cell(0, 4.5, view["footer"], new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _heading_style():
    from fpdf.fonts import FontFace

    return FontFace(family="DejaVu", emphasis="BOLD", fill_color=(230, 230, 230))


# -- producing ---------------------------------------------------------------

def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write ``data`` to ``path`` with mode 0640, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def produce_history_sync(
    db: SyncDatabase,
    config: Config,
    subject: HistorySubject,
    *,
    fmt: str = "pdf",
    actor: str,
    now: str | datetime,
    out: str | os.PathLike[str] | None = None,
    language: str | None = None,
) -> HistoryRequest:
    """Record a history request (due in ``[rights] history_due_days`` local days),
    produce the document, write it (``out`` or a new file under
    ``[rights] history_dir``) and record when, where and its sha256.  Returns the
    ``history_requests`` row.  Audited: ``history.requested`` and ``history.produced``."""
    db = SyncDatabase.wrap(db)
    if fmt not in FORMATS:
        raise ValueError(f"history format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not actor or not actor.strip():
        raise ValueError("a history needs who asked for it (actor)")
    if fmt == "pdf":
        find_fonts()  # fail before anything is recorded
    hold = None
    if out is None and config.encryption.enabled:  # the key it is stored encrypted to: checked first too
        from callproof.encryption.atrest import hold_recipients
        hold = hold_recipients(config)
    received = to_db_time(now)
    due = to_db_time(due_at(received, config.rights.history_due_days, config.general.tz))
    if out is None:
        directory = Path(config.rights.history_dir)
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    history_id = db.history.create(subject.kind, subject.key, received_at=received, due_at=due, actor=actor,
                                   fmt=fmt)
    data = collect_history_sync(db, subject)
    view = _view(config, subject, data, {"id": history_id, "received_at": received, "due_at": due}, language)
    document = render_pdf(view) if fmt == "pdf" else render_html(view)
    digest = hashlib.sha256(document).hexdigest()
    stored: dict[str, Any] = {}
    if out is None:
        stamp = parse_db_time(received).strftime("%Y%m%dT%H%M%SZ")
        path = Path(config.rights.history_dir) / f"history-{history_id:08d}-{stamp}.{fmt}"
        if hold is not None:  # at rest: to the hold key
            from callproof.encryption.atrest import encrypt_bytes
            document_at_rest = encrypt_bytes(document, hold.recipients)
            path = path.with_name(path.name + ".age")
            stored = {"encrypted_to": list(hold.key_ids),
                      "stored_sha256": hashlib.sha256(document_at_rest).hexdigest()}
            _write_private(path, document_at_rest, exclusive=True)
        else:
            _write_private(path, document, exclusive=True)
    else:
        path = Path(out)
        _write_private(path, document, exclusive=False)
    produced = max(to_db_time(datetime.now(UTC)), received)  # text compare: fixed-width UTC
    protocols = [c.protocol for c in data.calls if c.protocol]
    return db.history.mark_produced(
        history_id, produced_at=produced, fmt=fmt, path=str(path.resolve()), sha256=digest, actor=actor,
        audit_details={"format": fmt, "sha256": digest, "size_bytes": len(document),
                       "calls": len(data.calls), "requests": len(data.requests), "protocols": protocols[:50],
                       **stored})
