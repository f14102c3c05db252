"""The ops web page end to end, in a real headless Chromium.

A real call goes through the sandbox Asterisk (so there is a real
MixMonitor recording), ``callproof web`` runs as a subprocess on the same
database, accounts are made with ``callproof web-user add``, and a browser
does what an operator does: log in, find the call by protocol, play its
audio, file a request, export it, deliver it by SMS, log out.  A viewer is
refused the operator's pages, and repeated wrong passwords are throttled.
Screenshots of the main pages go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from urllib.request import ProxyHandler, build_opener

import pytest

from callproof.rights.links import make_token

from .web_fixtures import (
    LINK_SECRET,
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

OPERATOR, VIEWER = "olga.ops", "victor.view"
OPERATOR_PW, VIEWER_PW = "operator passphrase 7731", "viewer passphrase 5518"
CALLER = "11987654399"


async def _db(harness, sql: str, *params):
    return await harness.app.db.run_in_connection(lambda c: c.execute(sql, params).fetchall())


async def test_operator_and_viewer_in_chromium(harness, app_config, tmp_path):
    # A real call, so there is a real recording to find and play.
    call = await harness.place(CALLER, record=False)
    flow = await harness.app.wait_flow(call.prefix, timeout=90)
    row = await harness.wait_call_row(flow, {"completed"}, timeout=30)
    protocol = row["protocol"]
    recording = await harness.wait_recording_final(row["id"])
    assert recording["state"] == "finalised"

    port = free_port()
    config_path = write_web_config(app_config, tmp_path, port, login_max_failures=3)
    for name, role, password in ((OPERATOR, "operator", OPERATOR_PW), (VIEWER, "viewer", VIEWER_PW)):
        add_web_user(config_path, name, role, password)
    listed = cli(config_path, "web-user", "list", "--json")
    assert {(u["username"], u["role"]) for u in json.loads(listed.stdout)} >= {
        (OPERATOR, "operator"), (VIEWER, "viewer")}

    async with web_server(config_path, port, tmp_path / "web.log") as base, chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

        # -- the operator logs in
        await page.goto(f"{base}/search")
        assert "/login" in page.url  # not logged in: sent to the login page
        await screenshot(page, "01-login")
        await page.fill("#username", OPERATOR)
        await page.fill("#password", OPERATOR_PW)
        async with page.expect_navigation():
            await page.click("#login")
        assert page.url.endswith("/search")
        assert OPERATOR in await page.inner_text("header")

        # -- finds the call by protocol
        await page.fill("#q-protocol", protocol)
        async with page.expect_navigation():
            await page.click("#search")
        results = page.locator("#results tbody tr")
        assert await results.count() == 1
        assert "completed" in await results.first.inner_text()
        await screenshot(page, "02-search-results")

        # -- opens the call page and plays the recording
        async with page.expect_navigation():
            await page.click(f'#results a[href="/calls/{protocol}"]')
        assert await page.inner_text("#recording-state") == "finalised"
        assert "+55" + CALLER in await page.inner_text("main")
        played = await page.evaluate("""async () => {
            const audio = document.querySelector('#player');
            audio.muted = true;
            await audio.play();
            await new Promise((resolve, reject) => {
                const check = () => audio.currentTime > 0.3 ? resolve() : null;
                audio.addEventListener('timeupdate', check);
                audio.addEventListener('ended', resolve);
                audio.addEventListener('error', () => reject(new Error('audio error ' + audio.error.code)));
                check();
            });
            audio.pause();
            return {readyState: audio.readyState, duration: audio.duration,
                    currentTime: audio.currentTime, error: audio.error && audio.error.code};
        }""")
        assert played["error"] is None and played["readyState"] >= 2
        assert played["duration"] == pytest.approx(recording["duration_ms"] / 1000, abs=0.5)
        assert played["currentTime"] > 0.3
        await page.reload()  # the audit trail now shows the view and the stream
        trail = await page.inner_text("#audit-trail")
        assert "call.viewed" in trail and "recording.streamed" in trail and "recording.finalised" in trail
        await screenshot(page, "03-call-page")
        streamed = await _db(harness, "SELECT actor, details FROM audit_log WHERE action = 'recording.streamed'"
                                      " AND protocol = ?", protocol)
        ranges = [json.loads(d)["range"] for a, d in streamed if a == f"web:{OPERATOR}"]
        assert any(r and r.startswith("bytes=") for r in ranges), ranges  # the server saw Range requests

        # -- files a request for the customer (who called from the call's number)
        async with page.expect_navigation():
            await page.click("#file-request")
        assert await page.input_value("#r-protocol") == protocol
        await page.fill("#r-phone", CALLER)
        await page.fill("#r-deliver-to", "sms:" + CALLER)
        async with page.expect_navigation():
            await page.click("#submit-request")
        request_protocol = (await page.inner_text("#request-protocol")).replace(" ", "")
        assert re.fullmatch(r"\d{17}", request_protocol) and request_protocol != protocol
        assert await page.inner_text("#request-state") == "received"
        [(request_id,)] = await _db(harness, "SELECT id FROM recording_requests WHERE request_protocol = ?",
                                    request_protocol)

        # -- the queue: days remaining, then export and deliver by SMS
        await page.goto(f"{base}/requests")
        req_row = page.locator(f"#request-{request_id}")
        assert "received" in await req_row.inner_text()
        days = await req_row.locator(".days").inner_text()
        assert days.strip() == str(app_config.rights.request_due_days), days  # filed today
        await screenshot(page, "04-request-queue")
        async with page.expect_navigation():
            await req_row.locator("button.export").click()
        assert "exported as mp3" in await page.inner_text("#notice")
        await page.locator(f"#request-{request_id} select[name=via]").select_option("sms")
        async with page.expect_navigation():
            await page.locator(f"#request-{request_id} button.deliver").click()
        assert "link sent by sms to +55" + CALLER in await page.inner_text("#notice")
        await page.goto(f"{base}/calls/{protocol}")  # the call page now tells the request's story
        story = await page.inner_text("#call-requests")
        assert "delivered" in story and "mp3" in story and "sms → +55" + CALLER in story
        await screenshot(page, "05-call-page-delivered")
        [(state,)] = await _db(harness, "SELECT state FROM recording_requests WHERE id = ?", request_id)
        assert state == "delivered"
        # The session's sender sends the SMS; once sent, its stored body no longer holds the token.
        sent = await harness.wait_sms_state(request_protocol, {"logged"})
        assert "/d/[redacted]" in sent["body"], sent["body"]
        # The customer's SMS carried the link: the same token, made from the link's row and the secret.
        [(link_id, expires_at)] = await _db(harness, "SELECT id, expires_at FROM download_links"
                                                     " ORDER BY id DESC LIMIT 1")
        token = make_token(LINK_SECRET, link_id, datetime.fromisoformat(expires_at))
        assert token not in sent["body"]
        link = f"{base}/d/{token}"

        # -- the customer's link works without a login (the mp3, audited) ...
        direct = build_opener(ProxyHandler({}))  # loopback, never through a proxy from the environment
        data = await asyncio.to_thread(lambda: direct.open(link, timeout=30).read())
        assert data[:3] == b"ID3" or data[:2] == b"\xff\xfb"
        downloads = await _db(harness, "SELECT actor FROM audit_log WHERE action = 'recording.downloaded'"
                                       " AND protocol = ?", protocol)
        assert downloads
        # ... and a tampered one gets a plain refusal.
        tampered_link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        tampered = await page.goto(tampered_link)
        assert tampered.status == 403 and "not valid" in await page.inner_text("body")
        # A forged link has no call to take a language from: it answers in the browser's (Basque here).
        basque = await browser.new_context(locale="eu-ES")
        customer = await basque.new_page()
        refused_eu = await customer.goto(tampered_link)
        assert refused_eu.status == 403 and refused_eu.headers["content-language"] == "eu"
        assert (await customer.inner_text("body")).strip() == "Deskarga-esteka hau ez da baliozkoa."
        await basque.close()

        # -- logs out
        await page.goto(f"{base}/search")
        async with page.expect_navigation():
            await page.click("#logout")
        assert "/login" in page.url
        await page.goto(f"{base}/requests")
        assert "/login" in page.url  # the session is over

        # -- a viewer can look but is refused the operator's work
        await login_in_browser(page, base, VIEWER, VIEWER_PW)
        assert page.url.endswith("/search")
        refused = await page.goto(f"{base}/requests/new?protocol={protocol}")
        assert refused.status == 403 and "needs the operator role" in await page.inner_text("#message")
        await screenshot(page, "06-viewer-refused")
        await page.goto(f"{base}/requests")
        assert await page.locator("button.export, button.deliver").count() == 0
        denied = await _db(harness, "SELECT actor FROM audit_log WHERE action = 'web.forbidden'")
        assert (f"web:{VIEWER}",) in denied
        async with page.expect_navigation():
            await page.click("#logout")

        # -- wrong passwords, several times: throttled
        statuses = []
        for _ in range(4):
            await page.goto(f"{base}/login")
            await page.fill("#username", OPERATOR)
            await page.fill("#password", "not the right passphrase")
            async with page.expect_navigation() as nav:
                await page.click("#login")
            statuses.append((await nav.value).status)
        assert statuses == [401, 401, 401, 429]
        assert "Too many failed logins" in await page.inner_text(".error")
        await screenshot(page, "07-login-throttled")
        failed = await _db(harness, "SELECT count(*) FROM audit_log WHERE action = 'web.login.failed'")
        assert failed[0][0] >= 3
        csp = [m for m in console_errors if "Content Security Policy" in m]
        assert not csp, csp  # the pages need nothing the policy blocks
        await context.close()
    # The throttled attempt was counted, and written when the server stopped (web.refusals).
    summaries = await _db(harness, "SELECT details FROM audit_log WHERE action = 'web.refusals'")
    assert any(json.loads(d).get("counts", {}).get("login.throttled.account") for (d,) in summaries), summaries
