"""Each rendering of the seeded report shows the hand-worked figures: CSV cells, JSON counts,
the HTML tables and its inline SVG charts, the PDF's text."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from pypdf import PdfReader

from callproof.report.figures import Report
from callproof.report.render_data import render_csv, render_json
from callproof.report.render_html import body, document
from callproof.report.render_pdf import render_pdf


def test_csv_has_a_row_per_month_day_and_the_total_with_formatted_cells(report: Report):
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["kind"] for r in rows].count("month") == 2 and [r["kind"] for r in rows].count("day") == 61
    october = next(r for r in rows if r["period"] == "2026-10")
    assert october["Calls"] == "4"
    assert october["Announcement in full"] == "75.0 %"
    assert october["Protocol SMS within 24 h"] == "66.7 %"
    assert october["Wait to agent, median"] == "75 s" and october["Wait to agent, p95"] == "120 s"
    assert october["Answered within 60 s"] == "33.3 %" and october["Answered within 180 s"] == "66.7 %"
    assert october["Recordings held"] == "1" and october["Recordings deleted"] == "1"
    assert october["Requests delivered within 10 days"] == "1" and october["Requests late"] == "1"
    assert october["Histories within 5 days"] == "1"
    total = rows[-1]
    assert (total["kind"], total["Calls"], total["Protocol given"], total["Requests late"]) == \
        ("total", "7", "71.4 %", "2")
    quiet = next(r for r in rows if r["period"] == "2026-10-06")
    assert quiet["Calls"] == "0" and quiet["Announcement in full"] == "—"


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
    assert october[0] == "4" and october[1] == "75.0 %" and october[6] == "33.3 %"
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
    assert "Compliance report 2026-10-01 to 2026-11-30" in page


@pytest.fixture
def pdf_text(report: Report) -> str:
    data = render_pdf(report)
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_pdf_shows_the_title_the_charts_and_the_figures(pdf_text: str):
    assert "Compliance report 2026-10-01 to 2026-11-30" in pdf_text
    assert "Calls per day" in pdf_text and "Protocol given (%)" in pdf_text
    assert "Per month" in pdf_text and "Per day" in pdf_text
    assert "75.0 %" in pdf_text and "66.7 %" in pdf_text and "71.4 %" in pdf_text  # Oct and total
    assert "2026-11-30" in pdf_text  # the last day's row
