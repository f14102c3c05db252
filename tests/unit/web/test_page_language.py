"""The page in the reader's language, through the real application: the browser's
Accept-Language, the account's choice (stored and audited), the configured default, and
the messages handlers write (errors, notices, the 403 page) translated too."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callproof.config import ConfigError, load_config
from callproof.storage.requests import NewRequest, create_request_sync

from .pages import visible
from .test_app import NOW, PASSWORD, csrf, hidden, make_site, site, write_config  # noqa: F401  (fixture)

PT = {"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.5"}
ES = {"Accept-Language": "es-ES,es;q=0.9"}


async def _login(client, username: str, headers: dict[str, str], password: str = PASSWORD):
    page = await client.get("/login", headers=headers)
    token = hidden(await page.text(), "login_token")
    return await client.post("/login", data={"username": username, "password": password, "login_token": token,
                                             "next": "/requests"}, headers=headers, allow_redirects=False)


def _lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', html)
    assert found is not None
    return found.group(1)


def _add_request(site, days: int = 5) -> int:
    row, _created = create_request_sync(site.conn, NewRequest(site.call["protocol"], "received", "cli", NOW,
                                                              datetime.now(UTC) + timedelta(days=days), "test",
                                                              requester_number="+5511987650001"),
                                        year=NOW.year, audit_action="request.filed")
    return row["id"]


async def test_the_browsers_language_decides_before_login_with_its_q_values(site):
    page = await site.client.get("/login", headers={"Accept-Language": "fr, es;q=0.4, en;q=0.3"})
    html = await page.text()
    assert _lang(html) == "es" and page.headers["Content-Language"] == "es"
    assert "Iniciar sesión" in html and "Contraseña" in html and "Password" not in html
    assert "Accept-Language" in page.headers["Vary"]
    english = await (await site.client.get("/login", headers={"Accept-Language": "de"})).text()
    assert _lang(english) == "en" and "Password" in english  # nothing shipped: the default (en)


async def test_a_portuguese_operator_sees_portuguese_labels_and_brazilian_dates(site):
    _add_request(site)
    wrong = await _login(site.client, "otto", PT, password="not the password at all")
    assert wrong.status == 401 and "Usuário ou senha incorretos." in await wrong.text()
    assert (await _login(site.client, "otto", PT)).status == 303
    queue = await site.client.get("/requests", headers=PT)
    html = await queue.text()
    assert _lang(html) == "pt-BR"
    shown = visible(html)
    for label in ("Solicitações em aberto", "Recebida", "Prazo", "Dias restantes", "Exportar", "Recusar",
                  "recebida", "Sair", "Buscar"):
        assert label in shown, label
    # the received time, in São Paulo's zone (the default [general] timezone) as dd/mm/yyyy,
    # with the stored instant kept exactly in the datetime attribute
    opened = site.conn.execute("SELECT opened_at FROM recording_requests").fetchone()[0]
    local = datetime.fromisoformat(opened).astimezone(ZoneInfo(site.config.general.timezone))
    stamp = re.search(r'<time datetime="([^"]+)">(\d\d/\d\d/\d{4}) (\d\d:\d\d:\d\d) ', html)
    assert stamp is not None
    assert datetime.fromisoformat(stamp.group(1)) == datetime.fromisoformat(opened)
    assert stamp.group(2) == local.strftime("%d/%m/%Y") and stamp.group(3) == local.strftime("%H:%M:%S")


async def test_the_account_choice_is_stored_audited_and_wins_over_the_browser(site):
    await _login(site.client, "vera", PT)
    token = await csrf(site.client)
    account = await site.client.get("/account", headers=PT)
    assert "Idioma destas páginas" in await account.text()
    saved = await site.client.post("/account/locale", data={"locale": "es", "csrf_token": token}, headers=PT,
                                   allow_redirects=False)
    assert saved.status == 303 and saved.headers["Location"] == "/account"
    assert site.conn.execute("SELECT locale FROM web_users WHERE username = 'vera'").fetchone()[0] == "es"
    [entry] = site.audit("web.user.locale_changed")
    assert entry["actor"] == "web:vera" and entry["subject"] == "web_user:vera"
    assert entry["details"] == {"from": None, "to": "es"}
    after = await (await site.client.get("/account", headers=PT)).text()
    assert _lang(after) == "es" and "Idioma guardado." in after  # the notice, in the new language
    queue = visible(await (await site.client.get("/requests", headers=PT)).text())
    assert "Solicitudes abiertas" in queue and "Cerrar sesión" in queue
    # the same choice again changes nothing and writes no second entry
    await site.client.post("/account/locale", data={"locale": "es", "csrf_token": token}, headers=PT)
    assert len(site.audit("web.user.locale_changed")) == 1
    # "as my browser asks" clears it: Accept-Language decides again
    await site.client.post("/account/locale", data={"locale": "", "csrf_token": token}, headers=PT)
    assert site.conn.execute("SELECT locale FROM web_users WHERE username = 'vera'").fetchone()[0] is None
    assert site.audit("web.user.locale_changed")[-1]["details"] == {"from": "es", "to": None}
    assert _lang(await (await site.client.get("/requests", headers=PT)).text()) == "pt-BR"


async def test_a_locale_not_shipped_is_refused_and_nothing_changes(site):
    await _login(site.client, "vera", ES)
    token = await csrf(site.client)
    refused = await site.client.post("/account/locale", data={"locale": "fr_FR", "csrf_token": token}, headers=ES)
    assert refused.status == 400 and "'fr_FR' no es un idioma de estas páginas." in visible(await refused.text())
    assert site.conn.execute("SELECT locale FROM web_users WHERE username = 'vera'").fetchone()[0] is None
    assert site.audit("web.user.locale_changed") == []
    no_token = await site.client.post("/account/locale", data={"locale": "es"}, headers=ES)
    assert no_token.status == 403  # the session's CSRF token, like every other form


async def test_handler_messages_are_translated_too(site):
    request_id = _add_request(site)
    await _login(site.client, "vera", ES)
    refused = await site.client.get("/requests/new", headers=ES)
    text = visible(await refused.text())
    assert refused.status == 403 and "Hace falta el rol operador; el suyo es consulta." in text
    site.client.session.cookie_jar.clear()
    await _login(site.client, "otto", PT)
    token = await csrf(site.client)
    done = await site.client.post(f"/requests/{request_id}/refuse",
                                  data={"reason": "sem gravação", "csrf_token": token}, headers=PT)
    notice = re.search(r'<p class="notice" id="notice" role="status">(.*?)</p>', await done.text())
    assert notice is not None and notice.group(1).endswith(": recusada")
    empty = await site.client.post(f"/requests/{request_id}/refuse", data={"reason": " ", "csrf_token": token},
                                   headers=PT)
    assert empty.status == 409 and "Não foi possível recusar" in await empty.text()
    search = await site.client.post("/search", data={"csrf_token": token}, headers=PT)
    assert "Informe um protocolo, um telefone, um CPF ou um código do cliente." in await search.text()


async def test_the_configured_default_applies_when_the_browser_names_nothing_shipped(tmp_path):
    s = await make_site(tmp_path, default_locale="pt_BR")
    try:
        page = await s.client.get("/login", headers={"Accept-Language": "ja, zh;q=0.8"})
        assert _lang(await page.text()) == "pt-BR"
    finally:
        await s.client.close()
        s.pool.close()
        s.conn.close()


@pytest.mark.parametrize("value", ["fr", "pt-BR", "", "EN"])
def test_an_unknown_default_locale_fails_at_start_up_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, default_locale=value), env={}, require_asterisk_apis=False)
    assert "web.default_locale" in str(err.value)


async def test_the_call_page_names_stored_values_in_the_readers_language_and_keeps_them(site):
    await _login(site.client, "vera", PT)
    html = await (await site.client.get(f"/calls/{site.call['protocol']}", headers=PT)).text()
    shown = visible(html)
    assert "Prova do aviso de gravação" in shown and "Trilha de auditoria" in shown
    assert '<span class="state state-completed" data-status="completed">concluída</span>' in html
    assert '<span class="state state-finalised" id="recording-state" data-state="finalised">finalizada</span>' in html
    assert '<data value="1.0">1,0 s</data>' in html  # the 1 s recording, in Brazilian format
    assert "reproduzido por completo" in shown  # consent outcome 'finished'
