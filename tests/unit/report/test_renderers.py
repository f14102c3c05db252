"""Each rendering of the seeded report shows the hand-worked figures: CSV cells, JSON counts,
the HTML tables and its inline SVG charts, the PDF's text."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from pypdf import PdfReader

from callproof.report.figures import Report
from callproof.report.layout import charts, columns, headings, subtitle, title, words
from callproof.report.render_data import render_csv, render_json
from callproof.report.render_html import body, document
from callproof.report.render_pdf import render_pdf


def test_csv_has_a_row_per_month_day_and_the_total_with_formatted_cells(report: Report):
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["kind"] for r in rows].count("month") == 2 and [r["kind"] for r in rows].count("day") == 61
    october = next(r for r in rows if r["period"] == "2026-10")
    assert october["calls"] == "4"
    assert october["announcement_pct"] == "75.0%"
    assert october["sms_pct"] == "66.7%"
    assert october["wait_median_seconds"] == "75 sec" and october["wait_p95_seconds"] == "120 sec"
    assert october["answered_within_60s_pct"] == "33.3%" and october["answered_within_180s_pct"] == "66.7%"
    assert october["recordings_held"] == "1" and october["recordings_deleted"] == "1"
    assert october["requests_in_time"] == "1" and october["requests_late"] == "1"
    assert october["histories_in_time"] == "1"
    total = rows[-1]
    assert (total["kind"], total["calls"], total["protocol_pct"], total["requests_late"]) == \
        ("total", "7", "71.4%", "2")
    quiet = next(r for r in rows if r["period"] == "2026-10-06")
    assert quiet["calls"] == "0" and quiet["announcement_pct"] == "—"


def test_the_csv_keys_are_the_same_in_every_locale_and_the_cells_follow_it(report: Report):
    english, spanish = (list(csv.reader(io.StringIO(render_csv(report, loc)))) for loc in ("en", "es"))
    assert english[0] == spanish[0]  # the header: stable keys
    assert [r[:2] for r in english] == [r[:2] for r in spanish]  # period and kind: ISO, month/day/total
    october = dict(zip(spanish[0], spanish[1], strict=True))
    assert (october["period"], october["announcement_pct"], october["wait_median_seconds"]) == \
        ("2026-10", "75,0\u00a0%", "75 s")  # CLDR: a no-break space before %


def test_json_carries_the_counts_and_the_targets(report: Report):
    data = json.loads(render_json(report))
    assert (data["from"], data["to"], data["timezone"]) == ("2026-10-01", "2026-11-30", "America/Sao_Paulo")
    assert data["targets"] == {"wait_thresholds_seconds": [60, 180], "sms_within_hours": 24,
                               "request_due_days": 10, "history_due_days": 5}
    total = data["total"]
    assert (total["calls"], total["queued"], total["answered"], total["abandoned"]) == (7, 5, 4, 1)
    assert total["wait_median_seconds"] == 90.0 and total["wait_p95_seconds"] == 240.0
    assert total["answered_within"]["60"] == {"calls": 2, "pct": 40.0}
    assert total["sms_pct"] == 60.0
    assert [m["label"] for m in data["months"]] == ["2026-10", "2026-11"]
    assert len(data["days"]) == 61


def cells(html: str, period: str) -> list[str]:
    row = re.search(rf'<tr[^>]*data-period="{period}"[^>]*>(.*?)</tr>', html, re.S)
    assert row, f"no row {period}"
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_html_tables_and_charts_without_a_script(report: Report):
    html = str(body(report))
    assert "<script" not in html.lower() and not re.search(r"\son[a-z]+=", html)  # no inline handler
    october = cells(html, "2026-10")
    assert october[0] == "4" and october[1] == "75.0%" and october[6] == "33.3%"
    assert cells(html, "total")[0] == "7"
    assert html.count("<svg") == 4
    assert "Calls per day" in html and "Answered within 180 s (%)" in html
    # the chart of calls: one bar for each day with calls (5 Oct: 4, 10 Nov: 3), scaled to 4
    calls_chart = html[html.index("Calls per day"):html.index("</svg>")]
    assert len(re.findall(r"<rect ", calls_chart)) == 61  # zero-height bars on the other days
    assert "2026-10-05: 4</title>" in calls_chart and "2026-11-10: 3</title>" in calls_chart


def test_the_html_document_is_a_whole_page_with_its_style_inline(report: Report):
    page = document(report)
    assert page.startswith("<!doctype html>") and "<style>" in page and "<link" not in page
    assert "Compliance report 10/1/2026 to 11/30/2026" in page and '<html lang="en">' in page


@pytest.fixture
def pdf_text(report: Report) -> str:
    data = render_pdf(report)
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_pdf_shows_the_title_the_charts_and_the_figures(pdf_text: str):
    assert "Compliance report 10/1/2026 to 11/30/2026" in pdf_text
    assert "Calls per day" in pdf_text and "Protocol given (%)" in pdf_text
    assert "Per month" in pdf_text and "Per day" in pdf_text
    assert "75.0%" in pdf_text and "66.7%" in pdf_text and "71.4%" in pdf_text  # Oct and total
    assert "11/30/2026" in pdf_text  # the last day's row


# -- the report in the web page's other languages ----------------------------------------------

def pdftotext(data: bytes, tmp_path) -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        message = "no `pdftotext` on PATH (Debian package poppler-utils, in scripts/setup)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(data)
    return subprocess.run([tool, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_a_spanish_pdf_has_the_spanish_headings_and_numbers(report: Report, tmp_path):
    text = pdftotext(render_pdf(report, "es"), tmp_path)
    flat = " ".join(text.split())  # the table's headings wrap in their cells
    for heading in ("Informe de cumplimiento del 1/10/2026 al 30/11/2026", "Llamadas por día",
                    "Protocolo informado (%)", "Por mes", "Por día"):
        assert heading in text, heading
    assert "Atendidas en 180 s (%)" in flat
    october = next(line for line in text.splitlines() if line.strip().startswith("10/2026 "))
    assert october.split()[1:4] == ["4", "75,0", "%"]  # calls; announcement in full, the Spanish way
    assert "30/11/2026" in text  # the last day's row, as Spain writes it
    assert "Compliance" not in text and "Per month" not in text and "Calls" not in text


def test_a_pt_br_html_body_speaks_portuguese(report: Report):
    html = str(body(report, "pt_BR"))
    assert 'lang="pt-BR"' in html
    assert "Relatório de conformidade de 01/10/2026 a 30/11/2026" in html
    assert "<h2>Por mês</h2>" in html and "<h2>Por dia</h2>" in html and "Chamadas por dia" in html
    assert cells(html, "2026-10")[:2] == ["4", "75,0%"] and cells(html, "total")[0] == "7"
    assert '<th scope="row" class="period">05/10/2026</th>' in html  # a day's row named as Brazil writes it
    assert '<th scope="row" class="period">Total</th>' in html
    for english in ("Compliance report", "Per month", "Calls per day", "Wait to agent", "Recordings held"):
        assert english not in html, english


@pytest.mark.parametrize("locale", ["pt_BR", "es"])
def test_every_label_of_the_report_is_translated(report: Report, locale: str):
    """Each heading, chart title and table name differs from the English (a missing catalogue
    entry would show the English text); the stable keys do not."""
    en, other = words(report, "en"), words(report, locale)
    pairs = [(a.heading, b.heading) for a, b in zip(columns(report, en), columns(report, other), strict=True)]
    pairs += [(a.title, b.title) for a, b in zip(charts(report, en), charts(report, other), strict=True)]
    pairs += list(zip(headings(en).values(), headings(other).values(), strict=True))
    pairs += [(title(report, en), title(report, other)), (subtitle(report, en), subtitle(report, other))]
    same = [a for a, b in pairs if a == b]
    assert not same, f"not translated in {locale}: {same}"
    assert [c.key for c in columns(report, en)] == [c.key for c in columns(report, other)]


def test_an_unknown_locale_is_refused(report: Report):
    with pytest.raises(ValueError, match="locale 'fr'"):
        words(report, "fr")
