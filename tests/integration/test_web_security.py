"""The security review's web findings against the real ``callproof web`` process
(a subprocess on loopback, its own log file) and a real headless Chromium.

The database is seeded the way the unit tests seed it (a finalised WAV
recording, accounts); what is checked is what an attacker and a customer see
over real HTTP, what the rows say, and what the server's log file holds.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from callproof.config import load_config
from callproof.rights.delivery import deliver_request_sync
from callproof.rights.export import export_request_sync
from callproof.rights.requests import file_request_sync
from callproof.storage import connect_sync
from tests.unit.web.test_app import API_TOKEN, CALLER, NOW, PASSWORD, add_user, seed_call, write_config

from .web_fixtures import chromium, free_port, web_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CPF = "529.982.247-25"


def _server_config(tmp_path: Path, port: int, **web) -> Path:
    path = write_config(tmp_path, host="127.0.0.1", port=port, login_max_failures=3, **web)
    with path.open("a") as fh:
        fh.write('[logging]\nlevel = "INFO"\nformat = "text"\n[general]\ntimezone = "America/Sao_Paulo"\n')
    text = path.read_text().replace("[rights]\n", f'[rights]\npublic_base_url = "http://127.0.0.1:{port}/"\n')
    path.write_text(text)
    path.chmod(0o600)
    return path


def _seed(config_path: Path) -> tuple[dict, str]:
    """A call with its recording, three accounts, and a delivered link; (call, link path)."""
    config = load_config(config_path, env={}, require_asterisk_apis=False)
    conn = connect_sync(config.storage.database)
    try:
        call = seed_call(conn, config.recording.root)
        for name, role in (("vera", "viewer"), ("otto", "operator")):
            add_user(conn, name, role)
        filed = file_request_sync(conn, config, call_protocol=call["protocol"], channel="cli", actor="test",
                                  now=NOW, requester_number=CALLER)
        request_id = conn.execute("SELECT id FROM recording_requests WHERE request_protocol = ?",
                                  (filed.request_protocol,)).fetchone()[0]
        export_request_sync(conn, config, request_id, actor="test", now=NOW, fmt="wav")
        deliver_request_sync(conn, config, request_id, via="sms", actor="test", now=NOW)
        [(body,)] = conn.execute("SELECT body FROM sms_outbox WHERE body LIKE '%/d/%'").fetchall()
    finally:
        conn.close()
    return call, re.search(r"/d/\S+", body).group(0)


def _rows(config_path: Path, sql: str, *params) -> list[tuple]:
    config = load_config(config_path, env={}, require_asterisk_apis=False)
    conn = sqlite3.connect(config.storage.database)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1 too


async def _login_token(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/login") as page:
        return re.search(r'name="login_token" value="([^"]*)"', await page.text()).group(1)


async def _post_login(session, base, token, username, password, forwarded=None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with session.post(f"{base}/login", data={"username": username, "password": password,
                                                   "login_token": token},
                            headers=headers, allow_redirects=False) as resp:
        return resp.status


async def test_attacks_on_the_real_server(tmp_path):
    port = free_port()
    config_path = _server_config(tmp_path, port, public_rate_per_minute=20, api_token=API_TOKEN)
    _call, link = _seed(config_path)
    log_path = tmp_path / "web.log"
    audit_before = _rows(config_path, "SELECT count(*) FROM audit_log")[0][0]
    async with web_server(config_path, port, log_path) as base:
        async with _session() as session:
            # 3: 40 concurrent wrong passwords: exactly the limit is checked.
            token = await _login_token(session, base)
            statuses = await asyncio.gather(*(_post_login(session, base, token, "vera", "wrong guess 1234")
                                              for _ in range(40)))
            assert statuses.count(401) == 3 and statuses.count(429) == 37, statuses
            # 10: X-Forwarded-For from a process on this host changes nothing (no trusted proxy).
            token = await _login_token(session, base)
            assert await _post_login(session, base, token, "vera", PASSWORD, "198.51.100.7") == 429

        # 8: HEAD and 1-byte ranges do not use the link up; whole downloads do.
        async with _session() as customer:
            for _ in range(4):
                async with customer.head(f"{base}{link}") as head:
                    assert head.status == 200
                async with customer.get(f"{base}{link}", headers={"Range": "bytes=0-0"}) as one:
                    assert one.status == 206 and len(await one.read()) == 1
            assert _rows(config_path, "SELECT download_count FROM download_links") == [(0,)]
            budget = load_config(config_path, env={}, require_asterisk_apis=False).rights.link_max_downloads
            for _ in range(budget):
                async with customer.get(f"{base}{link}") as whole:
                    assert whole.status == 200 and (await whole.read())[:4] == b"RIFF"
                    assert whole.headers["Server"] == "callproof"
            async with customer.get(f"{base}{link}") as used_up:
                assert used_up.status == 410

        # 4: a flood of forged links from one address: 429 after the burst, no row per request.
        async with _session() as attacker:
            flood = []
            for i in range(300):
                async with attacker.get(f"{base}/d/{'A' * 23}.{i:043d}") as resp:
                    flood.append(resp.status)
        assert set(flood) == {403, 429} and flood.count(429) >= 280, flood

        # Guessing the API token on the one-time code route: 429 after the burst, like the request route.
        async with _session() as guesser:
            guesses = []
            for i in range(30):
                async with guesser.post(f"{base}/api/requests/20260000000000001/code", json={"code": "123456"},
                                        headers={"Authorization": f"Bearer guess-{i:036d}"}) as resp:
                    guesses.append(resp.status)
        # (the bucket refills one token every 3 s: a slow machine may let one more through)
        assert guesses[:20] == [401] * 20 and set(guesses) == {401, 429} and guesses.count(429) >= 5, guesses

        # The Server header of a request aiohttp's parser refuses.
        def raw() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
                return s.recv(4096)
        answer = await asyncio.to_thread(raw)
        assert b"aiohttp" not in answer and b"Python/" not in answer

    # What the rows say once it stopped: three failures, no row per forged link, one summary.
    actions = [a for (a,) in _rows(config_path, "SELECT action FROM audit_log WHERE id > ?", audit_before)]
    assert actions.count("web.login.failed") == 3
    assert actions.count("download.refused") == 1  # the used-up real link; none per forged one
    assert actions.count("web.refusals") == 1
    [(details,)] = _rows(config_path, "SELECT details FROM audit_log WHERE action = 'web.refusals'")
    counts = json.loads(details)["counts"]
    assert counts["download.bad_signature"] + counts["download.rate_limited"] == 300
    assert counts["login.throttled.account"] + counts.get("login.rate_limited", 0) == 38
    assert counts["api.unauthorised"] + counts["api.rate_limited"] == 30 and counts["api.rate_limited"] >= 5
    # 7: the server's log holds no token.
    log = log_path.read_text()
    assert "/d/[token]" in log and link.removeprefix("/d/") not in log


async def test_owner_is_not_locked_out_behind_a_trusted_proxy(tmp_path):
    port = free_port()
    config_path = _server_config(tmp_path, port, trusted_proxies=["127.0.0.1"])
    _seed(config_path)
    async with web_server(config_path, port, tmp_path / "web.log") as base:
        async with _session() as attacker:
            got = [await _post_login(attacker, base, await _login_token(attacker, base), "vera",
                                     "attacker guess 99", "203.0.113.9") for _ in range(6)]
            assert got == [401, 401, 401, 429, 429, 429]
        async with _session() as owner:
            token = await _login_token(owner, base)
            assert await _post_login(owner, base, token, "vera", PASSWORD, "198.51.100.7") == 303
    remotes = {r for (r,) in _rows(config_path, "SELECT remote FROM web_login_failures")}
    assert remotes == {"203.0.113.9"}  # the proxy's client, not the proxy


async def test_search_in_chromium_leaves_no_personal_data_in_urls_or_the_log(tmp_path):
    port = free_port()
    config_path = _server_config(tmp_path, port)
    call, _link = _seed(config_path)
    planted = call["path"].with_suffix(".html")
    planted.write_text("<script>document.title = 'ran'</script>")
    log_path = tmp_path / "web.log"
    async with web_server(config_path, port, log_path) as base, chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{base}/login")
        await page.fill("#username", "vera")
        await page.fill("#password", PASSWORD)
        async with page.expect_navigation():
            await page.click("#login")
        await page.fill("#q-phone", "(11) 98765-4321")
        async with page.expect_navigation():
            await page.click("#search")
        assert await page.locator("#results tbody tr").count() == 1
        assert page.url == f"{base}/search"  # nothing of the query in the address (history)
        await page.goto(f"{base}/search")
        await page.fill("#q-cpf", CPF)
        async with page.expect_navigation():
            await page.click("#search")
        assert page.url == f"{base}/search"
        history = await page.evaluate("() => [location.href, document.referrer]")
        assert all("98765" not in h and "529" not in h for h in history)

        # 13: a recording row pointing at an HTML file inside the root is not served.
        conn = sqlite3.connect(load_config(config_path, env={}, require_asterisk_apis=False).storage.database)
        conn.execute("UPDATE recordings SET path = ?", (str(planted),))
        conn.commit()
        conn.close()
        response = await page.goto(f"{base}/calls/{call['protocol']}/audio")
        assert response.status == 404 and not response.headers["content-type"].startswith("text/html")
        assert await page.title() != "ran"
    log = log_path.read_text()
    for secret in ("98765", "52998224725", "529.982", "cpf=", "phone="):
        assert secret not in log
    refused = _rows(config_path, "SELECT details FROM audit_log WHERE action = 'recording.refused'")
    assert [json.loads(d)["why"] for (d,) in refused] == ["not a WAV file"]
