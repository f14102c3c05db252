"""The compliance report built by the real components and looked at.

* ``callproof report compliance`` (a subprocess) writes a PDF from a database seeded through
  the real storage (tests/report_seed.py); poppler's ``pdftoppm`` renders its first page and
  the PNG must show the charts' bars (not a blank page); ``pdftotext`` reads its figures, and
  those of the same report with ``--locale es`` in Spanish.
* ``callproof web`` serves /admin/report to a real headless Chromium: an admin sees the
  hand-worked figures and four drawn charts with no Content Security Policy refusal in
  the console, and at 1280x800 the daily table fits the page (no sideways scrolling), in
  English and in Spanish (the browser asking for it); a viewer gets the 403 page.
  Screenshots: test-artifacts/screenshots/report-*.png.
* Two calls through the sandbox Asterisk: the report of their day counts two more calls, two
  more protocols given, than before them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from callproof.config import Config, load_config
from callproof.storage import connect_sync
from tests.report_seed import seed_two_months

from .conftest import in_ci
from .web_fixtures import (
    add_web_user,
    chromium,
    cli,
    free_port,
    login_in_browser,
    screenshot,
    web_server,
    write_web_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ADMIN, ADMIN_PW = "ada.admin", "admin passphrase 6632 report"
VIEWER, VIEWER_PW = "vic.viewer", "viewer passphrase 1947 report"
BLUE = (43, 108, 176)  # the bars (callproof/report/render_pdf.py)


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"no `{tool}` on PATH (Debian package poppler-utils, in scripts/setup)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Config, Path]:
    path = tmp_path / "report.toml"
    path.write_text(f'[general]\ntimezone = "America/Sao_Paulo"\n[storage]\ndatabase = "{tmp_path / "r.db"}"\n'
                    f'[recording]\nroot = "{tmp_path / "recordings"}"\n')
    path.chmod(0o600)
    config = load_config(path, env={}, require_asterisk_apis=False)
    conn = connect_sync(config.storage.database)
    try:
        seed_two_months(conn)
    finally:
        conn.close()
    return config, path


def report_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config_path), "report",
                           "compliance", *args], capture_output=True, text=True, timeout=120)


def test_the_cli_pdf_renders_through_poppler_with_its_charts_and_figures(seeded, tmp_path):
    _, config_path = seeded
    pdf = tmp_path / "compliance.pdf"
    done = report_cli(config_path, "--from", "2026-10-01", "--to", "2026-11-30", "--out", str(pdf))
    assert done.returncode == 0, done.stderr
    assert pdf.read_bytes().startswith(b"%PDF-")

    subprocess.run([poppler("pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(tmp_path / "page1")], check=True, timeout=120)
    image = Image.open(tmp_path / "page1.png").convert("RGB")
    width, height = image.size
    assert width > height  # landscape A4
    pixels = list(image.get_flattened_data())
    inked = sum(1 for p in pixels if p != (255, 255, 255))
    blue = sum(1 for p in pixels if all(abs(a - b) <= 30 for a, b in zip(p, BLUE, strict=True)))
    assert inked > 0.01 * len(pixels), f"page 1 is nearly blank: {inked} of {len(pixels)} pixels inked"
    assert blue > 50, f"no bars drawn on page 1 ({blue} blue pixels)"
    # ... and only the bars are blue, in the upper half (the charts): the tables below are not filled
    lower = image.crop((0, height // 2 + height // 8, width, height))
    assert sum(1 for p in lower.get_flattened_data() if all(abs(a - b) <= 30 for a, b in zip(p, BLUE, strict=True))) \
        < 0.002 * width * height, "the tables are filled with the bars' colour"
    kept = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "page1.png", kept / "report-pdf-page1.png")

    def pdftotext(path: Path) -> str:
        return subprocess.run([poppler("pdftotext"), "-layout", str(path), "-"], capture_output=True, text=True,
                              check=True, timeout=120).stdout

    text = pdftotext(pdf)
    assert "Compliance report 10/1/2026 to 11/30/2026" in text
    october = next(line for line in text.splitlines() if line.strip().startswith("10/2026 "))
    assert october.split()[1:3] == ["4", "75.0%"]  # calls, announcement in full
    total = next(line for line in text.splitlines() if line.strip().startswith("Total "))
    assert total.split()[1] == "7"

    # the same report for a Spanish reader: its words and its numbers, the figures unchanged
    spanish = tmp_path / "informe.pdf"
    done = report_cli(config_path, "--from", "2026-10-01", "--to", "2026-11-30", "--locale", "es",
                      "--out", str(spanish))
    assert done.returncode == 0, done.stderr
    text = pdftotext(spanish)
    assert "Informe de cumplimiento del 1/10/2026 al 30/11/2026" in text
    assert "Llamadas por día" in text and "Por mes" in text and "Por día" in text
    october = next(line for line in text.splitlines() if line.strip().startswith("10/2026 "))
    assert october.split()[1:4] == ["4", "75,0", "%"]
    assert "Compliance" not in text and "Per day" not in text


_FITS = """() => {
  const doc = document.documentElement, wrap = document.querySelector('#days').parentElement;
  const card = document.querySelector('main .card').getBoundingClientRect();
  const table = document.querySelector('#days').getBoundingClientRect();
  return {pageScroll: doc.scrollWidth, pageWidth: doc.clientWidth, wrapScroll: wrap.scrollWidth,
          wrapWidth: wrap.clientWidth, tableRight: table.right, cardRight: card.right,
          columns: document.querySelectorAll('#days thead th[data-key]').length};
}"""


async def fits_at_1280(page, label: str) -> dict:
    """At 1280 px the page does not scroll sideways and neither does the daily table: its
    17 figures' columns end inside the card."""
    found = await page.evaluate(_FITS)
    assert found["columns"] == 17, (label, found)
    assert found["pageScroll"] <= found["pageWidth"], (label, found)
    assert found["wrapScroll"] <= found["wrapWidth"], (label, found)
    assert found["tableRight"] <= found["cardRight"], (label, found)
    return found


async def test_the_web_page_in_chromium_shows_the_figures_and_the_charts(seeded, tmp_path):
    config, _ = seeded
    port = free_port()
    config_path = write_web_config(config, tmp_path, port)
    add_web_user(config_path, ADMIN, "admin", ADMIN_PW)
    add_web_user(config_path, VIEWER, "viewer", VIEWER_PW)
    async with web_server(config_path, port, tmp_path / "web.log") as base, chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        await login_in_browser(page, base, ADMIN, ADMIN_PW)
        async with page.expect_navigation():
            await page.click('nav a[href="/admin/report"]')
        # this month so far by default; then the seeded period through the form
        await page.fill('input[name="from"]', "2026-10-01")
        await page.fill('input[name="to"]', "2026-11-30")
        async with page.expect_navigation():
            await page.click("#report-period button")
        assert "from=2026-10-01" in page.url
        october = await page.locator('#months tr[data-period="2026-10"] td').all_inner_texts()
        november = await page.locator('#months tr[data-period="2026-11"] td').all_inner_texts()
        total = await page.locator('#months tr[data-period="total"] td').all_inner_texts()
        headings = await page.locator("#months thead th[data-key]").evaluate_all("els => els.map(e => e.title)")
        figures = {h: (o, n, t) for h, o, n, t in zip(headings, october, november, total, strict=True)}
        assert figures["Calls"] == ("4", "3", "7")
        assert figures["Protocol SMS within 24 h"] == ("66.7%", "50.0%", "60.0%")
        assert figures["Wait to agent, median"] == ("75 sec", "150 sec", "90 sec")
        assert figures["Answered within 60 s"] == ("33.3%", "50.0%", "40.0%")
        assert figures["Recordings held"] == ("1", "2", "3")
        assert figures["Requests late"] == ("1", "1", "2")
        charts = page.locator("svg.chart")
        assert await charts.count() == 4
        for i in range(4):
            box = await charts.nth(i).bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100, box
        # the bars the browser drew: 5 Oct's calls bar is the full height of its chart
        bar = page.locator("svg.chart").first.locator("rect", has=page.locator("title", has_text="2026-10-05: 4"))
        assert (await bar.bounding_box())["height"] > 100
        await fits_at_1280(page, "en")
        await screenshot(page, "report-compliance")
        # (the browser's own /favicon.ico 404 is a console error too: only CSP refusals count here)
        assert [m for m in console_errors if "Content Security Policy" in m] == []

        # a Spanish reader (the browser asks for es): Spanish words and numbers, and it still fits
        spanish = await (await browser.new_context(viewport={"width": 1280, "height": 800}, locale="es-ES",
                                                   extra_http_headers={"Accept-Language": "es-ES,es;q=0.9"})
                         ).new_page()
        await login_in_browser(spanish, base, ADMIN, ADMIN_PW)
        await spanish.goto(f"{base}/admin/report?from=2026-10-01&to=2026-11-30")
        assert "Informe de cumplimiento del 1/10/2026 al 30/11/2026" in await spanish.inner_text("h1")
        headings = await spanish.locator("#months thead th[data-key]").evaluate_all("els => els.map(e => e.title)")
        october = await spanish.locator('#months tr[data-period="2026-10"] td').all_inner_texts()
        figures = dict(zip(headings, october, strict=True))
        groups = await spanish.locator("#months thead tr.groups th").all_inner_texts()
        assert groups == ["Mes", "Llamadas", "Espera al agente", "Grabaciones", "Solicitudes", "Historiales"]
        assert figures["Llamadas"] == "4" and figures["SMS del protocolo en 24 h"] == "66,7\u00a0%"
        assert await spanish.locator('#days tr[data-period="2026-10-05"] th').inner_text() == "5/10/2026"
        await fits_at_1280(spanish, "es")
        await screenshot(spanish, "report-compliance-es-1280")

        await page.goto(f"{base}/admin/report?from=2026-11-02&to=2026-11-01")
        assert "To 2026-11-01 is before From 2026-11-02" in await page.inner_text("[role=alert]")
        await screenshot(page, "report-bad-period")

        viewer = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
        await login_in_browser(viewer, base, VIEWER, VIEWER_PW)
        assert await viewer.locator('nav a[href="/admin/report"]').count() == 0
        response = await viewer.goto(f"{base}/admin/report?from=2026-10-01&to=2026-11-30")
        assert response.status == 403
        assert "needs the admin role" in await viewer.inner_text("main")
        await screenshot(viewer, "report-viewer-403")

    audit = cli(config_path, "audit", "verify")
    conn = connect_sync(config.storage.database)
    try:
        rows = conn.execute("SELECT actor, action, details FROM audit_log WHERE action IN"
                            " ('report.viewed', 'web.forbidden') ORDER BY id").fetchall()
    finally:
        conn.close()
    assert audit.returncode == 0, audit.stdout + audit.stderr
    viewed = [json.loads(d) for a, act, d in rows if act == "report.viewed" and a == f"web:{ADMIN}"]
    assert {"from": "2026-10-01", "to": "2026-11-30", "format": "html", "locale": "en"} in viewed
    assert {"from": "2026-10-01", "to": "2026-11-30", "format": "html", "locale": "es"} in viewed
    assert [(a, json.loads(d)["path"]) for a, act, d in rows if act == "web.forbidden"] == \
        [(f"web:{VIEWER}", "/admin/report")]


async def test_sandbox_calls_are_counted_by_the_report(harness, app_config, tmp_path):
    config_path = write_web_config(app_config, tmp_path, free_port())
    today = datetime.now(app_config.general.tz).date()
    period = ["--from", (today - timedelta(days=1)).isoformat(), "--to", (today + timedelta(days=1)).isoformat(),
              "--format", "json"]

    def totals() -> dict:
        done = report_cli(config_path, *period)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["total"]

    before = totals()
    for caller in ("11987650101", "11987650102"):
        call = await harness.place(caller, record=False)
        flow = await harness.app.wait_flow(call.prefix, timeout=90)
        row = await harness.wait_call_row(flow, {"completed"}, timeout=30)
        assert row["consent_outcome"] == "finished" and row["protocol_read_finished_at"]
    after = totals()
    assert after["calls"] - before["calls"] == 2
    assert after["announcement_full"] - before["announcement_full"] == 2
    assert after["protocol_given"] - before["protocol_given"] == 2


def test_a_jurisdiction_profile_reaches_the_commands(seeded, tmp_path):
    """``[general] jurisdiction = "es"`` through the real CLI: ``check-config`` names the profile
    and the keys it gave, and the report counts against its figures (Madrid days, 180 s, 15-day
    requests) while ``[compliance] sms_within_hours``, set in the file, wins."""
    config, _ = seeded
    path = tmp_path / "es.toml"
    path.write_text(f'[general]\njurisdiction = "es"\n[storage]\ndatabase = "{config.storage.database}"\n'
                    "[compliance]\nsms_within_hours = 1\n")
    path.chmod(0o600)
    checked = subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(path), "check-config"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "CALLPROOF_ARI_PASSWORD": "a-long-ari-secret-4411",
                                 "CALLPROOF_AMI_PASSWORD": "a-long-ami-secret-9023"})
    assert checked.returncode == 0, checked.stderr
    profile = next(line for line in checked.stdout.splitlines() if line.startswith("profile:"))
    assert "'es'" in profile and "general.timezone" in profile and "rights.request_due_days" in profile
    assert "compliance.sms_within_hours" not in profile  # set in the file

    done = report_cli(path, "--from", "2026-10-01", "--to", "2026-11-30", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["timezone"] == "Europe/Madrid"
    assert data["targets"] == {"wait_thresholds_seconds": [180], "sms_within_hours": 1,
                               "request_due_days": 15, "history_due_days": 15}
    assert data["total"]["calls"] == 8  # Z (30 Sep 23:30 in São Paulo) is 1 Oct in Madrid
    assert data["months"][0]["requests_late"] == 0  # delivered on day 11: within 15
    # within 1 h: Z (60 s), A (60 s), F (300 s) of the 6 calls given a protocol
    assert (data["total"]["protocol_given"], data["total"]["sms_within"]) == (6, 3)
