"""The ops web page in the reader's language and the request queue's layout, in a real
headless Chromium against a real ``callproof web`` process.

The database is seeded through storage (a call, and requests in each state that shows
different actions), accounts are made with ``callproof web-user add``. A browser that asks
for pt-BR sees Portuguese labels and São Paulo times as dd/mm/yyyy; the operator switches
the account to Spanish and sees Spanish whatever the browser asks. At 1280x800 and at a
phone's 390 px, every input, select and button of every request card lies inside its card
(measured with getBoundingClientRect), and the page does not scroll sideways. Screenshots
go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callproof.storage import NewCall, allocate_sync, connect_sync
from callproof.storage import calls as calls_store
from callproof.storage.requests import NewRequest, create_request_sync
from tests.call_rows import advance_sync

from .web_fixtures import (
    IDENTITY_KEY,
    LINK_SECRET,
    add_web_user,
    chromium,
    free_port,
    screenshot,
    web_server,
    write_toml,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OPERATOR, OPERATOR_PW = "paula.ops", "operadora passphrase 4417"
TIMEZONE = "America/Sao_Paulo"
PT_BROWSER = "pt-BR,pt;q=0.9,en-US;q=0.6,en;q=0.5"

# Every control of each card inside the card's box (0.5 px for sub-pixel rounding), the
# cards inside the queue's section, and no sideways scroll of the page.
MEASURE = """() => {
  const inside = (r, box) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5
                          && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
  const section = document.querySelector('#queue').closest('section').getBoundingClientRect();
  const cards = [...document.querySelectorAll('#queue .request-card')];
  const out = [];
  let controls = 0;
  for (const card of cards) {
    const box = card.getBoundingClientRect();
    if (!inside(box, section)) out.push({card: card.id, what: 'card', box: [box.left, box.right]});
    for (const el of card.querySelectorAll('input:not([type=hidden]), select, button')) {
      controls++;
      const r = el.getBoundingClientRect();
      if (r.width === 0 || !inside(r, box))
        out.push({card: card.id, what: el.outerHTML.slice(0, 60), r: [r.left, r.right, r.top, r.bottom],
                  box: [box.left, box.right, box.top, box.bottom]});
    }
  }
  const doc = document.documentElement;
  return {cards: cards.length, controls, outside: out, scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth};
}"""


def _write_config(run_dir: Path, port: int) -> Path:
    tables = {
        "general": {"timezone": TIMEZONE},
        "storage": {"database": str(run_dir / "calls.db")},
        "recording": {"root": str(run_dir / "recordings")},
        "rights": {"identity_key": IDENTITY_KEY, "link_secret": LINK_SECRET, "export_dir": str(run_dir / "exports"),
                   "public_base_url": f"http://127.0.0.1:{port}/"},
        "web": {"host": "127.0.0.1", "port": port, "default_locale": "en"},
        "logging": {"level": "INFO", "format": "text"},
    }
    return write_toml(run_dir / "web.toml", tables)


def _seed(database: Path) -> dict:
    """A completed call and three open requests on it: one waiting for an identity check,
    one received, one exported (the three sets of actions the queue shows)."""
    conn = connect_sync(database)
    try:
        now = datetime.now(UTC)
        call_id = calls_store.create_sync(conn, NewCall("ch-i18n-1", None, None, "11987654321", "+5511987654321",
                                                        None, None, "pt_BR", now), now)
        protocol = allocate_sync(conn, year=now.year, allocated_at=now, call_id=call_id).protocol
        advance_sync(conn, call_id, "completed", consent_outcome="finished", ended_at=now)
        ids = {}
        for n, (state, days) in enumerate((("needs_identity_check", 9), ("received", 2), ("received", -1))):
            row, _created = create_request_sync(
                conn, NewRequest(protocol, state, "web", now - timedelta(days=1), now + timedelta(days=days),
                                 "web:seed", requester_number=f"+55119876500{n:02d}",
                                 deliver_to=f"sms:+55119876500{n:02d}"),
                year=now.year, audit_action="request.filed")
            ids[n] = row["id"]
        conn.execute("UPDATE recording_requests SET state = 'exported' WHERE id = ?", (ids[2],))
        opened = conn.execute("SELECT opened_at FROM recording_requests WHERE id = ?", (ids[0],)).fetchone()[0]
        return {"protocol": protocol, "request_ids": ids, "opened_at": opened}
    finally:
        conn.close()


async def _measure(page, label: str) -> dict:
    found = await page.evaluate(MEASURE)
    assert found["cards"] == 3 and found["controls"] >= 10, found
    assert found["outside"] == [], (label, found["outside"])
    assert found["scrollWidth"] <= found["clientWidth"], (label, found)
    return found


async def test_pages_in_portuguese_then_spanish_and_the_queue_fits_its_cards(tmp_path):
    port = free_port()
    config_path = _write_config(tmp_path, port)
    (tmp_path / "recordings").mkdir()
    seeded = _seed(tmp_path / "calls.db")
    add_web_user(config_path, OPERATOR, "operator", OPERATOR_PW)

    async with web_server(config_path, port, tmp_path / "web.log") as base, chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="pt-BR",
                                            extra_http_headers={"Accept-Language": PT_BROWSER})
        page = await context.new_page()

        # -- the browser asks for pt-BR: the login page is Portuguese before anyone logs in
        await page.goto(f"{base}/login")
        assert await page.get_attribute("html", "lang") == "pt-BR"
        assert await page.inner_text("h1") == "Entrar"
        assert "Senha" in await page.inner_text("#login-form")
        await screenshot(page, "i18n-01-login-pt_BR")
        await page.fill("#username", OPERATOR)
        await page.fill("#password", OPERATOR_PW)
        async with page.expect_navigation():
            await page.click("#login")

        # -- the queue in Portuguese, times in São Paulo as dd/mm/yyyy, the instant kept exactly
        await page.goto(f"{base}/requests")
        assert await page.inner_text("h1") == "Solicitações em aberto"
        nav = await page.inner_text("header nav")
        assert "Buscar" in nav and "Solicitações" in nav and "Registrar solicitação" in nav
        first = page.locator(f"#request-{seeded['request_ids'][0]}")
        assert "aguarda confirmação de identidade" in await first.inner_text()
        assert await first.locator("button.verify").inner_text() == "Confirmar identidade"
        received = first.locator("dd time").first
        shown = await received.inner_text()
        local = datetime.fromisoformat(seeded["opened_at"]).astimezone(ZoneInfo(TIMEZONE))
        assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d -03", shown), shown
        assert shown.startswith(local.strftime("%d/%m/%Y %H:%M:%S"))
        instant = await received.get_attribute("datetime")
        assert datetime.fromisoformat(instant) == datetime.fromisoformat(seeded["opened_at"])
        overdue = page.locator(f"#request-{seeded['request_ids'][2]}")
        assert await overdue.get_attribute("data-deadline") == "overdue" and "atrasada" in await overdue.inner_text()

        # -- the layout at 1280x800 (the width it broke at), in the longest language first
        await _measure(page, "pt_BR 1280")
        await screenshot(page, "i18n-02-queue-1280-pt_BR")

        # -- the operator chooses Spanish on the account page
        async with page.expect_navigation():
            await page.click("#account-link")
        assert "Idioma destas páginas" in await page.inner_text("#locale-form")
        await page.select_option("#locale", "es")
        async with page.expect_navigation():
            await page.click("#save-locale")
        assert await page.inner_text("#notice") == "Idioma guardado."
        assert await page.get_attribute("html", "lang") == "es"
        await screenshot(page, "i18n-03-account-es")

        # -- Spanish everywhere now, though the browser still asks for Portuguese
        await page.goto(f"{base}/requests")
        assert await page.get_attribute("html", "lang") == "es"
        assert await page.inner_text("h1") == "Solicitudes abiertas"
        assert await first.locator("button.verify").inner_text() == "Verificar identidad"
        assert "pendiente de verificar identidad" in await first.inner_text()
        assert "vencida" in await overdue.inner_text()
        await _measure(page, "es 1280")
        await screenshot(page, "i18n-04-queue-1280-es")

        # -- and at a phone's width
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.reload()
        await _measure(page, "es 390")
        await screenshot(page, "i18n-05-queue-390-es")

        # -- a fresh browser asking for Spanish from Mexico, before login: es too
        other = await browser.new_context(viewport={"width": 1280, "height": 800},
                                          extra_http_headers={"Accept-Language": "es-MX,es;q=0.8,en;q=0.3"})
        login = await other.new_page()
        await login.goto(f"{base}/login")
        assert await login.get_attribute("html", "lang") == "es" and await login.inner_text("h1") == "Iniciar sesión"
        await other.close()
        await context.close()

    # the choice is the account's, in the database, and audited
    conn = connect_sync(tmp_path / "calls.db")
    try:
        assert conn.execute("SELECT locale FROM web_users WHERE username = ?", (OPERATOR,)).fetchone()[0] == "es"
        [(actor, details)] = conn.execute(
            "SELECT actor, details FROM audit_log WHERE action = 'web.user.locale_changed'").fetchall()
        assert actor == f"web:{OPERATOR}" and json.loads(details) == {"from": None, "to": "es"}
    finally:
        conn.close()
