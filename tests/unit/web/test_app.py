"""The ops web application through aiohttp's test client: login and sessions,
CSRF refusals, roles, the audio stream (Range: 206 / 416), path traversal,
brute-force throttling, security headers, the request API and the public
download route.  A real SQLite database and a real WAV file; no browser."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydub.generators import Sine

from callproof.config import load_config
from callproof.storage import NewCall, allocate_sync, connect_sync, webauth
from callproof.storage import calls as calls_store
from callproof.storage import recordings as recordings_store
from callproof.web.app import build_app, runner_options
from callproof.web.context import CTX_KEY
from callproof.web.dbpool import DbPool
from callproof.web.passwords import hash_password
from tests.call_rows import advance_sync

from .pages import visible

PASSWORD = "a long enough passphrase 42"
API_TOKEN = "unit-test-api-token-0123456789abcdefghij"
CALLER = "+5511987654321"
NOW = datetime.now(UTC)


def write_config(tmp_path: Path, target: str | None = None, **web) -> Path:
    """``target``: a PostgreSQL URL (tests/conftest.py) for ``[storage] url``; else the SQLite file."""
    web = {"login_max_failures": 3, "login_window_seconds": 600, "public_rate_per_minute": 10000, **web}
    lines = [
        "[storage]", f'database = "{tmp_path / "web.db"}"',
        *([f'url = "{target}"'] if target and "://" in target else []),
        "[recording]", f'root = "{tmp_path / "recordings"}"',
        "[rights]", 'identity_key = "unit-test-identity-key-0123456789abcdef"',
        'link_secret = "unit-test-link-secret-0123456789abcdefgh"', f'export_dir = "{tmp_path / "exports"}"',
        "[web]", *(f"{k} = {json.dumps(v)}" for k, v in web.items()),
    ]
    path = tmp_path / "callproof.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def seed_call(conn, root: Path, *, channel: str = "ch-1", caller: str = CALLER,
              seconds: int = 1) -> dict:
    """A call with its protocol and a finalised WAV recording under ``root``."""
    call_id = calls_store.create_sync(conn, NewCall(channel, None, None, caller[3:], caller, None, None,
                                                    "pt_BR", NOW), NOW)
    protocol = allocate_sync(conn, year=NOW.year, allocated_at=NOW, call_id=call_id).protocol
    advance_sync(conn, call_id, "completed", consent_outcome="finished", ended_at=NOW)
    folder = root / f"{NOW:%Y/%m/%d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{protocol}_{caller[1:]}_{NOW:%Y%m%d-%H%M%S}.wav"
    Sine(440).to_audio_segment(duration=1000 * seconds).set_frame_rate(8000).set_channels(1) \
        .set_sample_width(2).export(path, format="wav")
    rec_id = recordings_store.create_sync(conn, call_id, protocol, str(path), caller, NOW)
    recordings_store.finalise_sync(conn, rec_id, size_bytes=path.stat().st_size, duration_ms=1000 * seconds,
                                   sha256=hashlib.sha256(path.read_bytes()).hexdigest(), finalised_at=NOW)
    return {"call_id": call_id, "protocol": protocol, "recording_id": rec_id, "path": path}


def add_user(conn, name: str, role: str, password: str = PASSWORD) -> None:
    # A cheap scrypt cost keeps the tests fast; verification reads the cost from the hash.
    webauth.create_user_sync(conn, name, hash_password(password, n=2 ** 10), role, actor="test", at=NOW)


class Site:
    """One app on a test server, with a seeded database."""

    def __init__(self, tmp_path: Path, config, client: TestClient, conn, call: dict):
        self.tmp_path, self.config, self.client, self.conn, self.call = tmp_path, config, client, conn, call

    def audit(self, action: str) -> list[dict]:
        rows = self.conn.execute("SELECT actor, protocol, subject, details FROM audit_log WHERE action = ?"
                                 " ORDER BY id", (action,)).fetchall()
        return [{"actor": a, "protocol": p, "subject": s, "details": json.loads(d) if d else None}
                for a, p, s, d in rows]


async def make_site(tmp_path: Path, target: str | None = None, **web) -> Site:
    config = load_config(write_config(tmp_path, target, **web), env={}, require_asterisk_apis=False)
    conn = connect_sync(config.storage.target)
    call = seed_call(conn, config.recording.root)
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        add_user(conn, name, role)
    pool = DbPool(config.storage.target, size=2)
    clock = Clock()
    app = build_app(config, db=pool, clock=clock)
    server = TestServer(app)
    await server.start_server(**runner_options())  # our access log, as `callproof web` has it
    client = TestClient(server)
    await client.start_server()
    site = Site(tmp_path, config, client, conn, call)
    site.pool = pool
    site.clock_advance = clock.advance
    site.now = clock
    site.app_ctx = app[CTX_KEY]
    return site


class Clock:
    """The application's clock: the real time, plus what a test moved it on."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


#: The tests whose pages read and write storage in ways of their own (sessions, throttling,
#: search, the call page, requests, exports and links, the queue) run on both engines.
#: (``engine`` is SQLite otherwise: tests/unit/web/conftest.py)
both_engines = pytest.mark.parametrize("engine", ["sqlite", "postgresql"])


@pytest.fixture
async def site(tmp_path, engine, request):
    cluster = request.getfixturevalue("pg_cluster") if engine == "postgresql" else None
    url = cluster.new_database() if cluster is not None else None
    s = await make_site(tmp_path, url)
    yield s
    await s.client.close()
    s.pool.close()
    s.conn.close()
    if cluster is not None:
        cluster.drop(url)


@pytest.fixture
async def api_site(tmp_path):
    s = await make_site(tmp_path, api_token=API_TOKEN)
    yield s
    await s.client.close()
    s.pool.close()
    s.conn.close()


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden field {name} in the page"
    return m.group(1)


async def login(client: TestClient, username: str, password: str = PASSWORD, *, expect: int = 303):
    page = await client.get("/login")
    token = hidden(await page.text(), "login_token")
    resp = await client.post("/login", data={"username": username, "password": password,
                                             "login_token": token, "next": "/search"},
                             allow_redirects=False)
    assert resp.status == expect, await resp.text()
    return resp


async def csrf(client: TestClient) -> str:
    page = await client.get("/search")
    assert page.status == 200
    return hidden(await page.text(), "csrf_token")


# -- login, sessions ---------------------------------------------------------------

@both_engines
async def test_login_sets_a_strict_httponly_cookie_and_stores_only_its_hash(site):
    resp = await login(site.client, "vera")
    assert resp.headers["Location"] == "/search"
    cookie = resp.cookies["callproof_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    value = cookie.value
    rows = site.conn.execute("SELECT id_hash, expires_at FROM web_sessions").fetchall()
    assert rows == [(hashlib.sha256(value.encode()).hexdigest(), rows[0][1])]
    assert value not in json.dumps(site.conn.execute("SELECT * FROM web_sessions").fetchall())
    page = await site.client.get("/search")
    assert page.status == 200 and "vera" in await page.text()
    assert site.audit("web.login")[0]["actor"] == "web:vera"


async def test_secure_cookies_use_the_host_prefix(tmp_path):
    s = await make_site(tmp_path, secure_cookies=True)
    try:
        page = await s.client.get("/login")
        token = hidden(await page.text(), "login_token")
        prelogin = page.cookies["callproof_login"]
        assert prelogin["secure"] and prelogin.value == token
        # The test client speaks plain HTTP, so it would not send a Secure cookie back by itself.
        resp = await s.client.post("/login", data={"username": "vera", "password": PASSWORD,
                                                   "login_token": token}, allow_redirects=False,
                                   headers={"Cookie": f"callproof_login={token}"})
        assert resp.status == 303
        cookie = resp.cookies["__Host-callproof_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await s.client.close()
        s.pool.close()
        s.conn.close()


async def test_wrong_password_and_unknown_user_get_the_same_answer(site):
    wrong = await login(site.client, "vera", "not the password at all", expect=401)
    unknown = await login(site.client, "nobody", PASSWORD, expect=401)
    assert "Wrong username or password" in await wrong.text()
    assert "Wrong username or password" in await unknown.text()
    assert [a["details"]["remote"] for a in site.audit("web.login.failed")] == ["127.0.0.1"] * 2


async def test_disabled_user_cannot_log_in_and_loses_its_session(site):
    await login(site.client, "vera")
    webauth.disable_user_sync(site.conn, "vera", actor="test", at=datetime.now(UTC))
    page = await site.client.get("/search", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"].startswith("/login")
    await login(site.client, "vera", expect=401)


async def test_without_a_session_pages_redirect_to_login_and_posts_are_401(site):
    resp = await site.client.get(f"/calls/{site.call['protocol']}", allow_redirects=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert location.startswith("/login?next=")
    assert unquote(location.split("=", 1)[1]) == f"/calls/{site.call['protocol']}"
    assert (await site.client.get(f"/calls/{site.call['protocol']}/audio", allow_redirects=False)).status == 303
    assert (await site.client.post("/requests", data={"protocol": site.call["protocol"]})).status == 401


async def test_login_goes_back_only_to_a_local_page(site):
    page = await site.client.get("/login?next=//evil.example/x")
    token = hidden(await page.text(), "login_token")
    resp = await site.client.post("/login", data={"username": "vera", "password": PASSWORD,
                                                  "login_token": token, "next": "//evil.example/x"},
                                  allow_redirects=False)
    assert resp.headers["Location"] == "/search"


@both_engines
async def test_logout_ends_the_session_in_the_database(site):
    resp = await login(site.client, "vera")
    value = resp.cookies["callproof_session"].value
    token = await csrf(site.client)
    out = await site.client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    ended = site.conn.execute("SELECT ended_at FROM web_sessions WHERE id_hash = ?",
                              (hashlib.sha256(value.encode()).hexdigest(),)).fetchone()[0]
    assert ended is not None
    # Even replaying the old cookie by hand no longer works.
    site.client.session.cookie_jar.update_cookies({"callproof_session": value})
    assert (await site.client.get("/search", allow_redirects=False)).status == 303
    assert site.audit("web.logout")[0]["actor"] == "web:vera"


# -- CSRF --------------------------------------------------------------------------

async def test_posts_without_the_sessions_csrf_token_are_refused(site):
    await login(site.client, "otto")
    protocol = site.call["protocol"]
    for data in ({"protocol": protocol}, {"protocol": protocol, "csrf_token": "forged"}):
        resp = await site.client.post("/requests", data=data)
        assert resp.status == 403 and "security token" in await resp.text()
    assert (await site.client.post("/logout", data={})).status == 403
    assert site.conn.execute("SELECT count(*) FROM recording_requests").fetchone()[0] == 0


async def test_login_form_needs_its_double_submit_token(site):
    resp = await site.client.post("/login", data={"username": "vera", "password": PASSWORD},
                                  allow_redirects=False)
    assert resp.status == 403
    assert site.conn.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0


# -- roles -------------------------------------------------------------------------

async def test_viewer_is_refused_operator_actions_with_a_403_page(site):
    await login(site.client, "vera")
    token = await csrf(site.client)
    page = await site.client.get("/requests/new")
    assert page.status == 403 and "needs the operator role" in await page.text()
    post = await site.client.post("/requests", data={"protocol": site.call["protocol"], "csrf_token": token})
    assert post.status == 403
    assert (await site.client.get(f"/calls/{site.call['protocol']}/download")).status == 403
    assert (await site.client.get("/admin/users")).status == 403
    refused = site.audit("web.forbidden")
    assert [r["details"]["path"] for r in refused] == ["/requests/new", "/requests",
                                                       f"/calls/{site.call['protocol']}/download", "/admin/users"]
    assert all(r["actor"] == "web:vera" for r in refused)
    # ... and the queue and the call page stay open to a viewer, without action buttons.
    queue = await site.client.get("/requests")
    assert queue.status == 200 and 'class="export"' not in await queue.text()


@both_engines
async def test_operator_files_a_request_but_is_not_admin(site):
    await login(site.client, "otto")
    token = await csrf(site.client)
    resp = await site.client.post("/requests", data={"protocol": site.call["protocol"], "phone": "11987654321",
                                                     "deliver_to": "sms:11987654321", "csrf_token": token})
    html = await resp.text()
    assert resp.status == 201, html
    request_protocol = site.conn.execute("SELECT request_protocol FROM recording_requests").fetchone()[0]
    assert request_protocol[:4] in html and "received" in html
    assert site.audit("request.filed")[0]["actor"] == "web:otto" if site.audit("request.filed") else True
    queue = await (await site.client.get("/requests")).text()
    assert site.call["protocol"] in queue and 'class="export"' in queue
    assert (await site.client.get("/admin/users")).status == 403


@both_engines
async def test_admin_sees_users_holds_and_audit(site):
    await login(site.client, "ada")
    users = await site.client.get("/admin/users")
    text = await users.text()
    assert users.status == 200 and all(n in text for n in ("vera", "otto", "ada"))
    assert "password_hash" not in text and "scrypt$" not in text
    assert (await site.client.get("/admin/holds")).status == 200
    audit = await site.client.get("/admin/audit")
    assert audit.status == 200 and "web.login" in await audit.text()


@both_engines
async def test_admin_adds_a_user_only_with_a_strong_password(site):
    await login(site.client, "ada")
    token = await csrf(site.client)
    weak = await site.client.post("/admin/users", data={"username": "nina", "role": "viewer",
                                                        "password": "password", "csrf_token": token})
    assert weak.status == 400 and "refused" in await weak.text()
    ok = await site.client.post("/admin/users", data={"username": "nina", "role": "viewer",
                                                      "password": PASSWORD + "!", "csrf_token": token},
                                allow_redirects=False)
    assert ok.status == 303
    assert webauth.get_user_sync(site.conn, "nina")["role"] == "viewer"
    assert site.audit("web.user.created")[-1]["actor"] == "web:ada"


# -- the call page and the audio stream ------------------------------------------

@both_engines
async def test_search_by_protocol_lists_the_call_and_is_audited(site):
    await login(site.client, "vera")
    protocol = site.call["protocol"]
    token = await csrf(site.client)
    resp = await site.client.post("/search", data={"protocol": protocol, "csrf_token": token})
    html = await resp.text()
    assert resp.status == 200 and f'href="/calls/{protocol}"' in html and "1 call found" in visible(html)
    lookup = site.audit("lookup")
    assert lookup[-1]["actor"] == "web:vera" and lookup[-1]["details"]["protocols"] == [protocol]
    bad = await site.client.post("/search", data={"protocol": "123", "csrf_token": token})
    assert bad.status == 400 and "17 digits" in await bad.text()


@both_engines
async def test_call_page_shows_the_evidence_and_records_the_view(site):
    await login(site.client, "vera")
    protocol = site.call["protocol"]
    resp = await site.client.get(f"/calls/{protocol}")
    html = await resp.text()
    assert resp.status == 200
    assert f'src="/calls/{protocol}/audio"' in html and "finalised" in html and "+5511987654321" in html
    assert "recording.finalised" in html or "call.viewed" in html or "Audit trail" in html
    assert resp.headers["Cache-Control"] == "no-store"
    viewed = site.audit("call.viewed")
    assert viewed == [{"actor": "web:vera", "protocol": protocol, "subject": None, "details": {"via": "web"}}]
    missing = await site.client.get("/calls/20260000000099999")
    assert missing.status == 404


@both_engines
async def test_audio_range_requests_get_exact_bytes_and_416_when_unsatisfiable(site):
    await login(site.client, "vera")
    protocol = site.call["protocol"]
    data = site.call["path"].read_bytes()
    size = len(data)
    part = await site.client.get(f"/calls/{protocol}/audio", headers={"Range": "bytes=100-1099"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{size}"
    assert await part.read() == data[100:1100]
    tail = await site.client.get(f"/calls/{protocol}/audio", headers={"Range": "bytes=-44"})
    assert tail.status == 206 and await tail.read() == data[-44:]
    whole = await site.client.get(f"/calls/{protocol}/audio")
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["Content-Type"] in ("audio/x-wav", "audio/wav")
    assert whole.headers["Cache-Control"] == "no-store"
    beyond = await site.client.get(f"/calls/{protocol}/audio", headers={"Range": f"bytes={size + 10}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    malformed = await site.client.get(f"/calls/{protocol}/audio", headers={"Range": "bytes=9-3"})
    assert malformed.status == 416
    streamed = site.audit("recording.streamed")
    assert {s["details"]["range"] for s in streamed} >= {"bytes=100-1099", "bytes=-44", None}
    assert all(s["actor"] == "web:vera" and s["protocol"] == protocol for s in streamed)


async def test_operator_downloads_the_original_as_an_attachment(site):
    await login(site.client, "otto")
    protocol = site.call["protocol"]
    resp = await site.client.get(f"/calls/{protocol}/download")
    assert resp.status == 200 and await resp.read() == site.call["path"].read_bytes()
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{protocol}.wav"'
    assert site.audit("recording.downloaded")[-1]["actor"] == "web:otto"


# -- traversal -------------------------------------------------------------------

TRAVERSALS = [
    "/calls/../../../etc/passwd/audio",
    "/calls/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio",
    "/calls/%2E%2E/audio",
    "/calls/..%2F..%2F..%2Fetc%2Fpasswd",
    "/calls/%2Fetc%2Fpasswd/audio",
    "/%2F%2Fetc%2Fpasswd",
    "/calls//etc/passwd/audio",
    "/calls/2026000000000001%00/audio",
    "/calls/20260000000000001%00/audio",
    "/calls/2026000000000000١/audio",  # an Arabic-Indic digit: not [0-9]
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/d/..%2f..%2fetc%2fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_traversal_attempts_are_refused(site, path):
    await login(site.client, "ada")
    resp = await site.client.get(path, allow_redirects=False)
    body = await resp.read()
    assert resp.status in (400, 403, 404), (path, resp.status)
    assert b"root:" not in body


async def test_a_recording_row_pointing_outside_the_root_is_not_served(site, tmp_path):
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF-not-for-you")
    site.conn.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(outside), site.call["recording_id"]))
    await login(site.client, "vera")
    resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
    assert resp.status == 404 and b"not-for-you" not in await resp.read()
    # A path that climbs out with '..' is the same thing.
    climbing = str(site.config.recording.root / ".." / "secret.wav")
    site.conn.execute("UPDATE recordings SET path = ? WHERE id = ?", (climbing, site.call["recording_id"]))
    resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
    assert resp.status == 404 and b"not-for-you" not in await resp.read()
    assert len(site.audit("recording.refused")) == 2


async def test_a_symlink_inside_the_root_pointing_out_is_not_followed(site, tmp_path):
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"RIFF-outside-bytes")
    path = site.call["path"]
    path.unlink()
    os.symlink(outside, path)
    await login(site.client, "vera")
    resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
    assert resp.status == 404 and b"outside-bytes" not in await resp.read()


# -- brute force -----------------------------------------------------------------

@both_engines
async def test_repeated_failures_for_a_user_are_throttled_with_429(site):
    for _ in range(3):
        await login(site.client, "vera", "wrong password number x", expect=401)
    throttled = await login(site.client, "vera", PASSWORD, expect=429)  # even the right password, from here
    assert 1 <= int(throttled.headers["Retry-After"]) <= 30  # a wait that grows, not a lock
    assert "Too many failed logins" in await throttled.text()
    assert site.audit("web.login.throttled") == []  # counted (web.refusals), not written each
    assert site.conn.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0


async def test_failures_from_one_remote_across_usernames_are_throttled(site):
    for name in ("a1", "b2", "c3", "d4", "e5", "f6", "g7", "h8", "i9"):  # 3 x the per-account limit
        await login(site.client, name, "guess guess guess", expect=401)
    await login(site.client, "otto", PASSWORD, expect=429)


async def test_remote_behind_the_local_proxy_is_the_forwarded_address(tmp_path):
    site = await make_site(tmp_path, trusted_proxies=["127.0.0.1"])
    for _ in range(9):
        page = await site.client.get("/login")
        token = hidden(await page.text(), "login_token")
        await site.client.post("/login", data={"username": "x", "password": "y" * 12, "login_token": token},
                               headers={"X-Forwarded-For": "203.0.113.9"})
    remotes = {a["details"]["remote"] for a in site.audit("web.login.failed")}
    assert remotes == {"203.0.113.9"}
    # Another client (another forwarded address) is not locked out by that one.
    page = await site.client.get("/login")
    token = hidden(await page.text(), "login_token")
    ok = await site.client.post("/login", data={"username": "otto", "password": PASSWORD, "login_token": token},
                                headers={"X-Forwarded-For": "198.51.100.7"}, allow_redirects=False)
    assert ok.status == 303
    await site.client.close()
    site.pool.close()
    site.conn.close()


# -- headers ---------------------------------------------------------------------

async def test_security_headers_on_pages_and_errors(site):
    for path in ("/login", "/nowhere"):
        resp = await site.client.get(path)
        h = resp.headers
        # pages: our own files only; anything else (aiohttp's plain 404): nothing at all
        assert "default-src 'self'" in h["Content-Security-Policy"] or path != "/login"
        assert "default-src" in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer" and h["Cache-Control"] == "no-store"
    css = await site.client.get("/static/style.css")
    assert css.status == 200 and "no-store" not in css.headers.get("Cache-Control", "")


# -- API -------------------------------------------------------------------------

async def test_api_is_off_without_a_token(site):
    resp = await site.client.post("/api/requests", json={"protocol": site.call["protocol"]},
                                  headers={"Authorization": "Bearer anything-at-all"})
    assert resp.status == 404


async def test_api_files_a_request_with_the_bearer_token(api_site):
    protocol = api_site.call["protocol"]
    url, auth = "/api/requests", {"Authorization": f"Bearer {API_TOKEN}"}
    assert (await api_site.client.post(url, json={"protocol": protocol})).status == 401
    wrong = await api_site.client.post(url, json={"protocol": protocol},
                                       headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    for body, field in (({"protocol": "123"}, "protocol"), ({}, "protocol"),
                        ({"protocol": protocol, "phone": "12"}, "phone"),
                        ({"protocol": protocol, "cpf": "111.111.111-12"}, "cpf"),
                        ({"protocol": protocol, "deliver_to": "fax:123"}, "deliver_to"),
                        ({"protocol": protocol, "colour": "red"}, "colour"),
                        ({"protocol": 20260000000000001}, "protocol")):
        bad = await api_site.client.post(url, json=body, headers=auth)
        assert bad.status == 400, body
        assert (await bad.json())["field"] == field
    not_json = await api_site.client.post(url, data=b"{nope", headers=auth)
    assert not_json.status == 400 and (await not_json.json())["field"] == "body"
    unknown = await api_site.client.post(url, json={"protocol": "20260000000099999"}, headers=auth)
    assert unknown.status == 404 and (await unknown.json())["field"] == "protocol"

    ok = await api_site.client.post(url, json={"protocol": protocol, "phone": "(11) 98765-4321",
                                               "deliver_to": "sms:+5511987654321"}, headers=auth)
    assert ok.status == 201
    body = await ok.json()
    assert re.fullmatch(r"\d{17}", body["request_protocol"]) and body["state"] == "received"
    assert body["due_at"] > body["received_at"]
    row = api_site.conn.execute("SELECT channel, created_by FROM recording_requests").fetchone()
    assert row == ("http", "api")
    again = await api_site.client.post(url, json={"protocol": protocol, "phone": "11987654321"}, headers=auth)
    assert again.status == 200 and (await again.json())["request_protocol"] == body["request_protocol"]


async def test_every_api_route_counts_wrong_tokens_and_answers_429_to_a_guesser(tmp_path):
    """The code route shares the request route's check: a wrong token is counted, and an
    address that keeps guessing is answered 429 there too (it used to get 401 for ever)."""
    s = await make_site(tmp_path, api_token=API_TOKEN, public_rate_per_minute=3)
    try:
        wrong = {"Authorization": "Bearer " + "x" * 40}
        code_url = "/api/requests/20260000000000001/code"
        statuses = [(await s.client.post(code_url, json={"code": "123456"}, headers=wrong)).status
                    for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        limited = await s.client.post("/api/requests", json={"protocol": s.call["protocol"]}, headers=wrong)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1  # one bucket for the API
        await s.app_ctx.refusals.flush(s.app_ctx)
        [summary] = s.audit("web.refusals")
        assert summary["details"]["counts"] == {"api.unauthorised": 3, "api.rate_limited": 2}
    finally:
        await s.client.close()
        s.pool.close()
        s.conn.close()


# -- public download -------------------------------------------------------------

async def test_public_download_refuses_bad_tokens_plainly(site):
    for token in ("nonsense", "A" * 23 + "." + "B" * 43, "x" * 300):
        resp = await site.client.get(f"/d/{token}", headers={"Accept-Language": "en-GB"})
        text = await resp.text()
        assert resp.status == 403 and text == "This download link is not valid.\n"
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert site.audit("download.refused") == []  # forgeries are counted, not written one by one
    await site.app_ctx.refusals.flush(site.app_ctx)
    [summary] = site.audit("web.refusals")
    assert sum(summary["details"]["counts"].values()) == 3


# -- request actions through the pages -------------------------------------------

def _request_row(site: Site) -> dict:
    cur = site.conn.execute("SELECT * FROM recording_requests ORDER BY id DESC LIMIT 1")
    return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))


async def _post_action(site: Site, token: str, request_id: int, action: str, **form) -> tuple[int, str]:
    resp = await site.client.post(f"/requests/{request_id}/{action}", data={"csrf_token": token, **form})
    return resp.status, await resp.text()


@both_engines
async def test_operator_verifies_exports_delivers_and_the_customer_downloads(site):
    await login(site.client, "otto")
    token = await csrf(site.client)
    # Someone else's number: the request waits for an identity check.
    filed = await site.client.post("/requests", data={"protocol": site.call["protocol"], "phone": "11912345678",
                                                      "deliver_to": "sms:11912345678", "csrf_token": token})
    assert filed.status == 201 and "needs_identity_check" in await filed.text()
    req = _request_row(site)
    status, html = await _post_action(site, token, req["id"], "export")
    assert status == 409 and "identity" in html  # the export module refuses, the page says why
    status, html = await _post_action(site, token, req["id"], "verify", note="address and birth date")
    assert status == 200 and "identity verified" in html and _request_row(site)["state"] == "received"
    status, html = await _post_action(site, token, req["id"], "deliver", via="sms")
    assert status == 409 and "export it first" in html
    status, html = await _post_action(site, token, req["id"], "export", format="wav")
    assert status == 200 and "exported as wav" in html and _request_row(site)["state"] == "exported"
    status, html = await _post_action(site, token, req["id"], "deliver", via="fax")
    assert status == 409 and "via" in html
    status, html = await _post_action(site, token, req["id"], "deliver", via="sms")
    assert status == 200 and "link sent by sms to +5511912345678" in html
    assert _request_row(site)["state"] == "delivered"
    actors = {a for (a,) in site.conn.execute(
        "SELECT actor FROM audit_log WHERE subject = ? OR action = 'recording.exported'", (f"request:{req['id']}",))}
    assert actors == {"web:otto"}

    [(body,)] = site.conn.execute("SELECT body FROM sms_outbox WHERE protocol = ?", (req["request_protocol"],))
    path = re.search(r"/d/\S+", body).group(0)
    download = await site.client.get(path)
    assert download.status == 200 and (await download.read())[:4] == b"RIFF"
    assert download.headers["Content-Type"] == "audio/wav"
    assert download.headers["Content-Disposition"] == f'attachment; filename="{site.call["protocol"]}.wav"'
    assert download.headers["Referrer-Policy"] == "no-referrer"
    for _ in range(site.config.rights.link_max_downloads - 1):
        assert (await site.client.get(path)).status == 200
    used_up = await site.client.get(path)
    assert used_up.status == 410
    used_up_text = await used_up.text()  # the call's language (pt_BR), as the SMS that carried the link
    assert used_up_text.startswith("Este link de download não é mais válido") and "Peça um novo." in used_up_text
    assert used_up.headers["Content-Language"] == "pt-BR"


@both_engines
async def test_refusing_needs_a_reason_and_closes_the_request(site):
    await login(site.client, "otto")
    token = await csrf(site.client)
    await site.client.post("/requests", data={"protocol": site.call["protocol"], "phone": "11987654321",
                                              "csrf_token": token})
    req = _request_row(site)
    status, html = await _post_action(site, token, req["id"], "refuse", reason="  ")
    assert status == 409 and "reason" in html
    status, html = await _post_action(site, token, req["id"], "refuse", reason="customer withdrew")
    assert status == 200 and "refused" in html
    row = _request_row(site)
    assert row["state"] == "refused" and row["refused_reason"] == "customer withdrew" and row["closed_at"]
    assert (await _post_action(site, token, 999999, "refuse", reason="x"))[0] == 404


async def test_filing_errors_name_the_problem(site):
    await login(site.client, "otto")
    token = await csrf(site.client)
    for data, words in (({"protocol": "12"}, "17 digits"), ({"protocol": "20260000000099999"}, "no call"),
                        ({"protocol": site.call["protocol"], "deliver_to": "pigeon:1"}, "deliver-to")):
        resp = await site.client.post("/requests", data={**data, "csrf_token": token})
        assert resp.status == 400 and words in await resp.text(), data
    assert site.conn.execute("SELECT count(*) FROM recording_requests").fetchone()[0] == 0


@both_engines
async def test_queue_highlights_overdue_and_due_soon(site):
    from callproof.storage.requests import NewRequest, create_request_sync

    def add(days: int) -> None:
        create_request_sync(site.conn, NewRequest(site.call["protocol"], "received", "cli", NOW,
                                                  datetime.now(UTC) + timedelta(days=days), "test",
                                                  requester_number=f"+551198765{days + 10:04d}"),
                            year=NOW.year, audit_action="request.filed")

    for days in (-2, 1, 8):
        add(days)
    await login(site.client, "vera")
    html = await (await site.client.get("/requests")).text()
    rows = re.findall(r'<article class="request-card deadline-(\w+)" id="request-\d+"', html)
    assert rows == ["overdue", "due_soon", "on_time"]  # soonest due first
    shown = visible(html)
    assert "1 overdue" in shown and "1 due soon" in shown and "1 on time" in shown


@both_engines
async def test_logging_in_again_ends_the_browsers_previous_session(site):
    first = (await login(site.client, "vera")).cookies["callproof_session"].value
    page = await site.client.get("/login")  # a logged-in user is sent on; post the form anyway
    assert page.status == 200  # followed the redirect to /search
    login_page = await site.client.get("/login?next=/x", allow_redirects=False)
    assert login_page.status == 303
    site.client.session.cookie_jar.clear()
    site.client.session.cookie_jar.update_cookies({"callproof_session": first})
    form = await site.client.post("/login", data={"username": "otto", "password": PASSWORD,
                                                  "login_token": "t"}, cookies={"callproof_login": "t"},
                                  allow_redirects=False)
    assert form.status == 303
    live = site.conn.execute("SELECT u.username FROM web_sessions s JOIN web_users u ON u.id = s.user_id"
                             " WHERE s.ended_at IS NULL").fetchall()
    assert live == [("otto",)]
    assert site.audit("web.logout")[-1]["actor"] == "web:vera"


@both_engines
async def test_call_page_shows_the_wait_for_an_agent(site):
    await login(site.client, "vera")
    protocol = site.call["protocol"]
    site.conn.execute("UPDATE calls SET handed_off_at = '2026-03-02T12:00:00.000000Z', queue_name = 'support',"
                      " queue_joined_at = '2026-03-02T12:00:01.000000Z',"
                      " agent_answered_at = '2026-03-02T12:00:42.500000Z' WHERE id = ?", (site.call["call_id"],))
    html = await (await site.client.get(f"/calls/{protocol}")).text()
    wait = re.search(r'<dd id="time-to-agent">(.*?)</dd>', html)
    assert wait is not None
    assert "to support; agent answered after 42.5 sec" in visible(wait.group(1))
    assert '<data value="42.5">' in wait.group(1)  # the exact figure stays in the page


@both_engines
async def test_call_page_says_which_language_and_how_it_was_chosen(site):
    site.conn.execute("UPDATE calls SET language = 'eu', language_source = 'menu', language_menu = 'chosen'"
                      " WHERE id = ?", (site.call["call_id"],))
    await login(site.client, "vera")
    html = await (await site.client.get(f"/calls/{site.call['protocol']}")).text()
    assert "eu (chosen by the caller's key in the language menu)" in html
    site.conn.execute("UPDATE calls SET language = 'ca', language_source = 'did', language_menu = 'caller_left'"
                      " WHERE id = ?", (site.call["call_id"],))
    html = await (await site.client.get(f"/calls/{site.call['protocol']}")).text()
    assert "ca (chosen by the dialled number); language menu: the caller hung up during it" in html
