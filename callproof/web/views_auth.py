"""Login and logout, with brute-force throttling.

Every login attempt first takes a token of the client address's rate limit
(ratelimit.py), then reserves its failure row (storage/webauth.py): an account
from one client address gets ``[web] login_max_failures`` tries within
``login_window_seconds``, then waits ``BACKOFF_SECONDS``, doubled per further
failure; one address gets ``PER_ADDRESS_FACTOR`` times that over all accounts.
The owner at another address is never refused for what an attacker did.
Failures are audited one by one (``web.login.failed``); throttled attempts are
only counted (``web.refusals``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from callproof.storage.sync import WebAuthRepo

from .auth import (
    PRELOGIN_COOKIE,
    clear_cookie,
    client_remote,
    cookie_name,
    csrf_ok,
    load_session,
    logged_in,
    new_token,
    redirect,
    requires,
    safe_next,
    set_cookie,
    start_session,
    token_hash,
)
from .context import ctx_of
from .passwords import MAX_PASSWORD_LENGTH, verify_or_waste_time
from .render import gettext_of, render

routes = web.RouteTableDef()

# How long a throttled attempt waits before its 429: a script hammering the form
# gets one answer a second per connection instead of as fast as it can send.
THROTTLED_DELAY_SECONDS = 1.0
# Past the limit, an account+address waits this long after its last failure, doubled for
# each further failure, up to [web] login_window_seconds.
BACKOFF_SECONDS = 30
# One address may fail this many times the per-account limit over all accounts (spraying).
PER_ADDRESS_FACTOR = 3


async def _login_page(request: web.Request, *, status: int = 200, error: str | None = None,
                      username: str = "", headers: dict[str, str] | None = None) -> web.Response:
    token = new_token()
    response = await render(request, "login.html", status=status, error=error, username=username,
                            login_token=token, next=safe_next(request.query.get("next")), headers=headers)
    set_cookie(response, ctx_of(request), PRELOGIN_COOKIE, token, max_age=3600)
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    if await load_session(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return await _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    _ = gettext_of(request)
    remote = client_remote(request)
    wait = ctx.limiter.check(remote, "login")
    if wait:
        ctx.refusals.add("login.rate_limited", remote, ctx.now())
        return await _login_page(request, status=429, headers={"Retry-After": str(wait)},
                                 error=_("Too many requests. Wait %(seconds)s seconds and try again.")
                                 % {"seconds": wait})
    form = await request.post()
    if not csrf_ok(request.cookies.get(PRELOGIN_COOKIE), form.get("login_token")):
        return await _login_page(request, status=403,
                                 error=_("The login form expired or cookies are off; "
                                                           "please try again."))
    username = str(form.get("username", "")).strip()[:64]
    password = str(form.get("password", ""))[:MAX_PASSWORD_LENGTH + 1]
    now = ctx.now()
    web_config = ctx.config.web
    # Reserved before the password is checked, in one transaction: concurrent attempts cannot
    # all pass the count (storage/webauth.py).
    attempt = await ctx.db.run(
        WebAuthRepo.begin_login, username, remote, at=now, window_seconds=web_config.login_window_seconds,
        max_failures=web_config.login_max_failures,
        max_per_remote=web_config.login_max_failures * PER_ADDRESS_FACTOR, backoff_seconds=BACKOFF_SECONDS)
    if attempt.attempt_id is None:
        ctx.refusals.add(f"login.throttled.{attempt.why}", remote, now)
        await asyncio.sleep(THROTTLED_DELAY_SECONDS)  # a client retrying in a loop is slowed too
        return await _login_page(
            request, status=429, username=username, headers={"Retry-After": str(attempt.retry_after)},
            error=_("Too many failed logins. Wait %(seconds)s seconds and try again.")
            % {"seconds": attempt.retry_after})

    user = await ctx.db.run(WebAuthRepo.get_user, username) if username else None
    usable = user is not None and user["disabled_at"] is None
    stored = user["password_hash"] if user is not None and usable else None
    ok = await asyncio.to_thread(verify_or_waste_time, password, stored)
    if not ok:
        await ctx.db.run(WebAuthRepo.login_failed, attempt.attempt_id, username, remote, at=now,
                         prune_before=now - timedelta(seconds=web_config.login_window_seconds))
        return await _login_page(request, status=401, username=username,
                                 error=_("Wrong username or password."))
    assert user is not None  # without an account nothing verifies

    previous = await load_session(request)
    if previous is not None:  # logging in again replaces the session this browser had
        await ctx.db.run(WebAuthRepo.end_session, previous["id_hash"], username=previous["username"], at=now)
    await ctx.db.run(WebAuthRepo.login_succeeded, attempt.attempt_id, username, remote)
    value, _csrf = await start_session(request, user)
    response = redirect(safe_next(str(form.get("next", ""))))
    set_cookie(response, ctx, cookie_name(ctx.config.web.secure_cookies), value,
               max_age=ctx.config.web.session_minutes * 60)
    clear_cookie(response, ctx, PRELOGIN_COOKIE)
    return response


@routes.post("/logout")
@requires("viewer")
async def logout(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    name = cookie_name(ctx.config.web.secure_cookies)
    await ctx.db.run(WebAuthRepo.end_session, token_hash(request.cookies[name]),
                     username=logged_in(request)["username"], at=ctx.now())
    response = redirect("/login")
    clear_cookie(response, ctx, name)
    return response
