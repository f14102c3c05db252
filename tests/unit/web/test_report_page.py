"""/admin/report through aiohttp's test client over the seeded two months: admins only (others
get the 403 page, audited), every report shown or downloaded audited, the page strict under
the CSP (no script, no inline style or handler), bad days refused naming the field."""

from __future__ import annotations

import re

import pytest

from tests.report_seed import seed_two_months
from tests.unit.web.test_app import login, make_site

PERIOD = "/admin/report?from=2026-10-01&to=2026-11-30"


@pytest.fixture
async def site(tmp_path):
    s = await make_site(tmp_path)
    seed_two_months(s.conn)
    yield s
    await s.client.close()
    s.pool.close()
    s.conn.close()


def cells(html: str, period: str) -> list[str]:
    row = re.search(rf'<tr[^>]*data-period="{period}"[^>]*>(.*?)</tr>', html, re.S)
    assert row, f"no row {period}"
    return re.findall(r"<td>(.*?)</td>", row.group(1))


async def test_an_admin_sees_the_figures_and_the_view_is_audited(site):
    await login(site.client, "ada")
    resp = await site.client.get(PERIOD)
    html = await resp.text()
    assert resp.status == 200, html
    # the fixture's own call is today's: outside the seeded period
    assert cells(html, "2026-10")[:3] == ["4", "75.0%", "75.0%"]
    assert cells(html, "total")[0] == "7"
    assert html.count("<svg") == 4 and "Calls per day" in html
    assert "<script" not in html and "style=" not in html and not re.search(r"\son[a-z]+=", html)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert 'href="/admin/report?from=2026-10-01&amp;to=2026-11-30&amp;format=pdf"' in html
    assert site.audit("report.viewed") == [{"actor": "web:ada", "protocol": None, "subject": None, "details": {
        "from": "2026-10-01", "to": "2026-11-30", "format": "html", "locale": "en"}}]


@pytest.mark.parametrize(("fmt", "content_type", "magic"), [
    ("pdf", "application/pdf", b"%PDF-"), ("csv", "text/csv", b"period,kind,calls,"),
    ("json", "application/json", b"{"),
])
async def test_downloads_are_attachments_and_audited_with_their_format(site, fmt, content_type, magic):
    await login(site.client, "ada")
    resp = await site.client.get(f"{PERIOD}&format={fmt}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(content_type)
    assert resp.headers["Content-Disposition"] == f'attachment; filename="compliance-2026-10-01-2026-11-30.{fmt}"'
    assert (await resp.read()).startswith(magic)
    assert [e["details"]["format"] for e in site.audit("report.viewed")] == [fmt]


@pytest.mark.parametrize("user", ["vera", "otto"])
async def test_viewers_and_operators_get_403_and_the_refusal_is_audited(site, user):
    await login(site.client, user)
    resp = await site.client.get(PERIOD)
    assert resp.status == 403 and "needs the admin role" in await resp.text()
    assert (await site.client.get(f"{PERIOD}&format=csv")).status == 403
    refused = site.audit("web.forbidden")
    assert [(r["actor"], r["details"]["path"]) for r in refused] == [(f"web:{user}", "/admin/report")] * 2
    assert site.audit("report.viewed") == []


async def test_without_a_session_the_report_goes_to_the_login_page(site):
    resp = await site.client.get(PERIOD, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-10-xx&to=2026-11-30", "From: not a date YYYY-MM-DD: &#39;2026-10-xx&#39;"),
    ("from=2026-10-01&to=30/11/2026", "To: not a date YYYY-MM-DD: &#39;30/11/2026&#39;"),
    ("from=2026-11-02&to=2026-11-01", "To 2026-11-01 is before From 2026-11-02"),
    ("from=2024-01-01&to=2026-11-30", "From 2024-01-01 to 2026-11-30 spans 1065 days"),
])
async def test_a_bad_period_is_a_400_naming_the_field_and_is_not_a_report(site, query, message):
    await login(site.client, "ada")
    resp = await site.client.get(f"/admin/report?{query}")
    html = await resp.text()
    assert resp.status == 400
    assert message in html
    assert 'data-period="total"' not in html
    assert site.audit("report.viewed") == []


async def test_the_nav_links_the_report_for_admins_only(site):
    await login(site.client, "ada")
    assert 'href="/admin/report"' in await (await site.client.get("/search")).text()
    await site.client.post("/logout", data={})
    site.client.session.cookie_jar.clear()
    await login(site.client, "vera")
    assert 'href="/admin/report"' not in await (await site.client.get("/search")).text()


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-10-xx&to=2026-11-30", "Desde: no es una fecha AAAA-MM-DD: &#39;2026-10-xx&#39;"),
    ("from=2026-11-02&to=2026-11-01", "Hasta 2026-11-01 es anterior a Desde 2026-11-02"),
    ("from=2024-01-01&to=2026-11-30", "Del 2024-01-01 al 2026-11-30 hay 1065 días"),
])
async def test_a_bad_period_is_refused_in_the_readers_language(site, query, message):
    await login(site.client, "ada")
    resp = await site.client.get(f"/admin/report?{query}", headers={"Accept-Language": "es-ES,es;q=0.9"})
    assert resp.status == 400
    assert message in await resp.text()


async def test_the_page_and_its_downloads_speak_the_readers_language(site):
    """The browser asks for Portuguese: the report's words and numbers are Brazil's, on the page
    and in the CSV; the CSV's keys and the JSON stay as they are; the audit names the locale."""
    await login(site.client, "ada")
    headers = {"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.5"}
    html = await (await site.client.get(PERIOD, headers=headers)).text()
    assert "Relatório de conformidade de 01/10/2026 a 30/11/2026" in html and "Chamadas por dia" in html
    assert cells(html, "2026-10")[:3] == ["4", "75,0%", "75,0%"]
    assert "Calls per day" not in html and "Per month" not in html
    csv_text = await (await site.client.get(f"{PERIOD}&format=csv", headers=headers)).text()
    assert csv_text.startswith("period,kind,calls,announcement_pct,")
    assert csv_text.splitlines()[1].startswith('2026-10,month,4,"75,0%",')
    data = await (await site.client.get(f"{PERIOD}&format=json", headers=headers)).json()
    assert data["total"]["calls"] == 7 and data["total"]["sms_pct"] == 60.0
    assert [e["details"]["locale"] for e in site.audit("report.viewed")] == ["pt_BR"] * 3
