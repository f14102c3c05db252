"""The security review's web findings, each as the attack the reviewer made by
hand, with what the attacker (and the owner) now sees and what the rows say.

3 concurrent wrong logins, 4 unauthenticated audit writes, 5 personal data in
URLs and logs, 7 tokens in logs and in ``sms_outbox.body``, 8 HEAD / Range
using up a link, 9 locking someone else's account, 10 ``X-Forwarded-For``
from anyone, 13 a non-audio file served inline as HTML, and the ``Server``
header.  docs/security.md ("Web page and API") lists them."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from datetime import timedelta

import pytest

from callproof.rights.links import make_token
from callproof.web import public, views_auth
from callproof.web.app import ACCESS_LOG_NAME

from .pages import visible
from .test_app import PASSWORD, csrf, hidden, login, make_site, site  # noqa: F401  (fixture)

CPF = "529.982.247-25"  # a valid CPF (check digits), the reviewer's test value
PROXY = {"trusted_proxies": ["127.0.0.1"]}


@pytest.fixture(autouse=True)
def _no_throttle_pause(monkeypatch):
    monkeypatch.setattr(views_auth, "THROTTLED_DELAY_SECONDS", 0)


async def _close(site) -> None:
    await site.client.close()
    site.pool.close()
    site.conn.close()


async def _login_from(site, username: str, password: str, remote: str | None = None):
    page = await site.client.get("/login")
    token = hidden(await page.text(), "login_token")
    headers = {"X-Forwarded-For": remote} if remote else {}
    return await site.client.post("/login", data={"username": username, "password": password,
                                                  "login_token": token}, headers=headers,
                                  allow_redirects=False)


async def _access_lines(caplog, until: str) -> list[str]:
    """The access log's lines once one containing ``until`` is there (aiohttp writes
    the line after the answer went out, so it may come just after the client read it)."""
    for _ in range(500):
        lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG_NAME]
        if any(until in line for line in lines):
            return lines
        await asyncio.sleep(0.01)
    raise AssertionError(f"no access log line with {until!r}")


def _count(site, sql: str, *params) -> int:
    return site.conn.execute(sql, params).fetchone()[0]


# -- 3: concurrent wrong logins --------------------------------------------------------

async def test_3_concurrent_wrong_logins_are_held_to_the_limit(tmp_path):
    site = await make_site(tmp_path, login_max_failures=3)
    try:
        page = await site.client.get("/login")
        token = hidden(await page.text(), "login_token")

        async def attempt():
            resp = await site.client.post("/login", data={"username": "vera", "password": "wrong guess " * 2,
                                                          "login_token": token}, allow_redirects=False)
            return resp.status

        statuses = await asyncio.gather(*(attempt() for _ in range(40)))
        # Exactly the limit was checked against the password; the rest were refused unchecked.
        assert statuses.count(401) == 3 and statuses.count(429) == 37, statuses
        assert _count(site, "SELECT count(*) FROM audit_log WHERE action = 'web.login.failed'") == 3
    finally:
        await _close(site)


# -- 9: locking someone else's account ------------------------------------------------

async def test_9_an_attacker_cannot_lock_the_owner_out(tmp_path):
    site = await make_site(tmp_path, login_max_failures=3, **PROXY)
    try:
        for _ in range(6):
            resp = await _login_from(site, "vera", "attacker guess 12345", "203.0.113.9")
            assert resp.status in (401, 429)
        assert resp.status == 429  # the attacker's own address is throttled ...
        owner = await _login_from(site, "vera", PASSWORD, "198.51.100.7")
        assert owner.status == 303  # ... the owner, elsewhere, logs in with the right password
        site.client.session.cookie_jar.clear()
        # Even the attacker's address gets a waiting time, not a lock for ever: it grows per failure.
        waits = []
        site.clock_advance(3600)  # a new window
        for _ in range(3):
            first = await _login_from(site, "vera", "attacker guess 12345", "203.0.113.9")
            assert first.status == 401
        for _ in range(6):
            resp = await _login_from(site, "vera", "attacker guess 12345", "203.0.113.9")
            if resp.status == 429:
                waits.append(int(resp.headers["Retry-After"]))
            site.clock_advance(int(resp.headers.get("Retry-After", "0")))
        assert waits and waits == sorted(waits) and waits[-1] > waits[0], waits
    finally:
        await _close(site)


async def test_9_the_same_source_spraying_usernames_is_throttled(tmp_path):
    site = await make_site(tmp_path, login_max_failures=3, **PROXY)
    try:
        for name in ("a1", "b2", "c3", "d4", "e5", "f6", "g7", "h8", "i9"):
            await _login_from(site, name, "guess guess guess", "203.0.113.9")
        sprayed = await _login_from(site, "otto", "guess guess guess", "203.0.113.9")
        assert sprayed.status == 429
        other = await _login_from(site, "otto", PASSWORD, "198.51.100.7")
        assert other.status == 303
    finally:
        await _close(site)


# -- 10: X-Forwarded-For ---------------------------------------------------------------

async def test_10_forwarded_for_is_ignored_without_trusted_proxies(tmp_path):
    site = await make_site(tmp_path, login_max_failures=3)
    try:
        for i in range(3):
            await _login_from(site, "x", "y" * 12, f"203.0.113.{i}")  # a new "address" each time
        remotes = {r for (r,) in site.conn.execute("SELECT remote FROM web_login_failures")}
        assert remotes == {"127.0.0.1"}
        assert (await _login_from(site, "x", "y" * 12, "203.0.113.77")).status == 429  # no bypass
    finally:
        await _close(site)


async def test_10_forwarded_for_from_a_trusted_proxy_gives_the_client(tmp_path):
    site = await make_site(tmp_path, trusted_proxies=["127.0.0.0/8", "10.1.2.3"])
    try:
        # The right-most address not a trusted proxy; what the client put first is not believed.
        await _login_from(site, "x", "y" * 12, "1.2.3.4, 203.0.113.5, 10.1.2.3")
        [(remote,)] = site.conn.execute("SELECT remote FROM web_login_failures").fetchall()
        assert remote == "203.0.113.5"
    finally:
        await _close(site)


# -- 4: unauthenticated audit writes ---------------------------------------------------

async def test_4_bad_tokens_are_counted_not_written_one_row_each(tmp_path):
    site = await make_site(tmp_path, public_rate_per_minute=30)
    try:
        site.app_ctx.limiter.clock = lambda: 0.0  # no refill while the test runs
        before = _count(site, "SELECT count(*) FROM audit_log")
        statuses = [(await site.client.get(f"/d/{'A' * 23}.{i:043d}")).status for i in range(500)]
        assert statuses[:30] == [403] * 30  # a burst, then 429 for this address
        assert statuses[30:] == [429] * 470
        assert _count(site, "SELECT count(*) FROM audit_log") == before  # nothing per request
        await site.app_ctx.refusals.flush(site.app_ctx)
        rows = site.audit("web.refusals")
        assert len(rows) == 1
        counts = rows[0]["details"]["counts"]
        assert counts == {"download.bad_signature": 30, "download.rate_limited": 470}
        assert rows[0]["details"]["sources"] == 1
        # Another address is not affected by that one.
        other = await site.client.get(f"/d/{'A' * 23}.{'B' * 43}", headers={"X-Forwarded-For": "198.51.100.7"})
        assert other.status == 429  # no trusted proxy: the header changes nothing
    finally:
        await _close(site)


# -- 5: personal data in URLs and logs -------------------------------------------------

async def test_5_search_is_a_post_and_no_personal_data_reaches_a_url_or_a_log(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOG_NAME)
    site = await make_site(tmp_path)
    try:
        await login(site.client, "otto")
        token = await csrf(site.client)
        page = await (await site.client.get("/search")).text()
        assert re.search(r'<form method="post" action="/search"', page)
        got = await site.client.get(f"/search?cpf={CPF}&phone=11987654321")
        assert "call found" not in await got.text()  # a GET query is not searched
        found = await site.client.post("/search", data={"phone": "(11) 98765-4321", "csrf_token": token})
        assert found.status == 200 and "1 call found" in visible(await found.text())
        cpf = await site.client.post("/search", data={"cpf": CPF, "customer_code": "C-778899", "csrf_token": token})
        assert cpf.status in (200, 400)
        # The queue's notice after an action carries no phone number in its URL.
        filed = await site.client.post("/requests", data={"protocol": site.call["protocol"],
                                                          "phone": "11987654321", "csrf_token": token})
        assert filed.status == 201
        request_id = _count(site, "SELECT max(id) FROM recording_requests")
        await site.client.post(f"/requests/{request_id}/export", data={"csrf_token": token, "format": "wav"})
        done = await site.client.post(f"/requests/{request_id}/deliver", data={"csrf_token": token, "via": "sms"},
                                      allow_redirects=False)
        assert done.status == 303 and "98765" not in done.headers["Location"]
        queue = await site.client.get(done.headers["Location"])
        assert "link sent by sms to +5511987654321" in await queue.text()  # shown once, from the server
        lines = await _access_lines(caplog, " /requests ")
        assert len(lines) >= 8
        for line in lines:
            for secret in ("52998224725", "529.982", "98765", "C-778899", "cpf="):
                assert secret not in line, line
    finally:
        await _close(site)


# -- 7: tokens in the access log and in sms_outbox.body ---------------------------------

async def _delivered_link(site) -> tuple[str, int]:
    """A request filed, exported and delivered by SMS; (the link's path, outbox id)."""
    await login(site.client, "otto")
    token = await csrf(site.client)
    await site.client.post("/requests", data={"protocol": site.call["protocol"], "phone": "11987654321",
                                              "csrf_token": token})
    request_id = _count(site, "SELECT max(id) FROM recording_requests")
    await site.client.post(f"/requests/{request_id}/export", data={"csrf_token": token, "format": "wav"})
    await site.client.post(f"/requests/{request_id}/deliver", data={"csrf_token": token, "via": "sms"})
    outbox_id, body = site.conn.execute("SELECT id, body FROM sms_outbox WHERE body LIKE '%/d/%'").fetchone()
    return re.search(r"/d/\S+", body).group(0), outbox_id


async def test_7_tokens_never_reach_the_access_log_and_the_sent_sms_body_is_redacted(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOG_NAME)
    site = await make_site(tmp_path)
    try:
        path, outbox_id = await _delivered_link(site)
        token = path.removeprefix("/d/")
        assert (await site.client.get(path)).status == 200
        lines = await _access_lines(caplog, "/d/")
        assert not [line for line in lines if token in line or token[:20] in line]
        # The sender marks it sent: the body keeps its text, not the token.
        site.conn.execute("UPDATE sms_outbox SET state = 'sent' WHERE id = ?", (outbox_id,))
        [(body,)] = site.conn.execute("SELECT body FROM sms_outbox WHERE id = ?", (outbox_id,))
        assert token not in body and "/d/[redacted]" in body
        # Other SMS (a call's protocol) are untouched when sent.
        [(other_id, other_body)] = site.conn.execute(
            "SELECT id, body FROM sms_outbox WHERE id <> ? LIMIT 1", (outbox_id,)).fetchall() or [(None, None)]
        if other_id is not None:
            site.conn.execute("UPDATE sms_outbox SET state = 'sent' WHERE id = ?", (other_id,))
            assert site.conn.execute("SELECT body FROM sms_outbox WHERE id = ?", (other_id,)).fetchone()[0] \
                == other_body
        # ... and the link still works: the token was the customer's, not the row's.
        assert (await site.client.get(path)).status == 200
    finally:
        await _close(site)


# -- 8: HEAD and Range using up a link -------------------------------------------------

async def test_8_head_and_partial_requests_do_not_use_up_a_link(tmp_path):
    site = await make_site(tmp_path)
    try:
        path, _ = await _delivered_link(site)
        size = None
        for _ in range(10):
            head = await site.client.head(path)
            assert head.status == 200 and await head.read() == b""
            size = int(head.headers["Content-Length"])
            one = await site.client.get(path, headers={"Range": "bytes=0-0"})
            assert one.status == 206 and len(await one.read()) == 1
            middle = await site.client.get(path, headers={"Range": "bytes=100-199"})
            assert middle.status == 206 and len(await middle.read()) == 100
            cond = await site.client.get(path, headers={"Range": "bytes=0-9", "If-None-Match": '"x"'})
            assert cond.status == 206
        assert _count(site, "SELECT download_count FROM download_links") == 0
        budget = site.config.rights.link_max_downloads
        for _ in range(budget):
            whole = await site.client.get(path)
            assert whole.status == 200 and len(await whole.read()) == size
        assert _count(site, "SELECT download_count FROM download_links") == budget
        assert (await site.client.get(path)).status == 410
        assert (await site.client.head(path)).status == 410
    finally:
        await _close(site)


async def test_8_a_range_reaching_the_end_counts_once(tmp_path):
    site = await make_site(tmp_path)
    try:
        path, _ = await _delivered_link(site)
        size = int((await site.client.head(path)).headers["Content-Length"])
        first = await site.client.get(path, headers={"Range": f"bytes=0-{size // 2 - 1}"})
        rest = await site.client.get(path, headers={"Range": f"bytes={size // 2}-"})
        assert first.status == rest.status == 206
        assert len(await first.read()) + len(await rest.read()) == size
        assert _count(site, "SELECT download_count FROM download_links") == 1
        beyond = await site.client.get(path, headers={"Range": f"bytes={size + 5}-"})
        assert beyond.status == 416
        assert _count(site, "SELECT download_count FROM download_links") == 1
    finally:
        await _close(site)


async def test_8_a_link_with_a_valid_signature_still_audits_each_refusal(tmp_path):
    site = await make_site(tmp_path)
    try:
        path, _ = await _delivered_link(site)
        site.conn.execute("UPDATE download_links SET revoked_at = expires_at")
        assert (await site.client.get(path)).status == 410
        [refusal] = site.audit("download.refused")
        assert refusal["details"]["reason"] == "revoked"
        forged = make_token("another secret entirely, 0123456789abcdef", 1, site.now() + timedelta(hours=1))
        assert (await site.client.get(f"/d/{forged}")).status == 403
        assert len(site.audit("download.refused")) == 1  # a forgery is only counted
    finally:
        await _close(site)


# -- 13: content type --------------------------------------------------------------------

async def test_13_a_recording_row_pointing_at_html_is_not_served(tmp_path):
    site = await make_site(tmp_path)
    try:
        planted = site.call["path"].with_suffix(".html")
        planted.write_text("<script>fetch('/admin/users')</script>")
        site.conn.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(planted), site.call["recording_id"]))
        await login(site.client, "vera")
        resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
        body = await resp.read()
        assert resp.status == 404 and b"<script>" not in body
        assert not resp.headers["Content-Type"].startswith("text/html")
        [refused] = site.audit("recording.refused")
        assert refused["details"]["why"] == "not a WAV file"
    finally:
        await _close(site)


async def test_13_audio_is_served_as_audio_with_a_closed_policy(site):
    await login(site.client, "vera")
    resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("inline; filename=")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp


# -- the Server header -------------------------------------------------------------------

async def test_server_header_names_no_versions(site):
    for resp in (await site.client.get("/login"), await site.client.get("/nowhere"),
                 await site.client.get("/d/x")):
        assert resp.headers["Server"] == "callproof"
    # A request the HTTP parser refuses is answered by aiohttp itself: same header.
    host, port = site.client.server.host, site.client.server.port

    def raw() -> bytes:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
            return s.recv(4096)

    answer = await asyncio.to_thread(raw)
    assert re.match(rb"HTTP/1\.[01] 400 ", answer)
    assert b"\r\nServer: callproof\r\n" in answer
    assert b"aiohttp" not in answer and b"Python" not in answer


def test_public_route_keeps_one_token_shape_limit():
    assert public.MAX_TOKEN_CHARS >= 67
