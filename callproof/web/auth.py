"""Who is asking: sessions (cookie -> ``web_sessions``), roles, CSRF, and
the client address used for throttling (``[web] trusted_proxies``).

The cookie holds a random value; the database holds only its sha256, so a
copy of the database cannot be replayed as a login.  Every POST from a
session must carry that session's CSRF token (a form field); the login form,
which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web

from callproof.storage.sync import WebAuthRepo

from .context import WebContext, ctx_of

# Where the request's session is kept (web.RequestKey where this aiohttp has it).
# A found session is cached, and so is None for a request without one.
SESSION_KEY = (web.RequestKey[dict | None]("callproof_session") if hasattr(web, "RequestKey")
               else "callproof_session")
ROLE_LEVELS = {"viewer": 1, "operator": 2, "admin": 3}
PRELOGIN_COOKIE = "callproof_login"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cookie_name(secure: bool) -> str:
    """``__Host-`` makes the browser refuse the cookie unless it is Secure, host-only, path /."""
    return "__Host-callproof_session" if secure else "callproof_session"


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode("ascii", "replace")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def client_remote(request: web.Request) -> str | None:
    """The client's address: the TCP peer, unless the peer is one of ``[web]
    trusted_proxies``; then the right-most address in X-Forwarded-For that is not
    a trusted proxy (what the proxies appended; what the client wrote first is not
    believed).  With no trusted proxy (the default) the header is ignored."""
    peer = request.remote
    proxies = trusted_networks(ctx_of(request).config.web.trusted_proxies)
    if not proxies or not _is_in(peer, proxies):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", []) for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a proxy that wrote garbage: fall back to what we know
        if not _is_in(str(address), proxies):
            return str(address)
    return peer


@functools.cache
def trusted_networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _is_in(address: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def set_cookie(response: web.StreamResponse, ctx: WebContext, name: str, value: str, *,
               max_age: int | None) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="Strict",
                        secure=ctx.config.web.secure_cookies, max_age=max_age)


def clear_cookie(response: web.StreamResponse, ctx: WebContext, name: str) -> None:
    response.del_cookie(name, path="/", secure=ctx.config.web.secure_cookies, httponly=True,
                        samesite="Strict")


def redirect(location: str) -> web.Response:
    """A 303 (after a POST the browser GETs the new page) that can carry cookies."""
    return web.Response(status=303, headers={"Location": location})


async def load_session(request: web.Request) -> dict | None:
    """The live session of this request (with username and role) or None; cached on the request."""
    if SESSION_KEY in request:
        return request[SESSION_KEY]
    ctx = ctx_of(request)
    value = request.cookies.get(cookie_name(ctx.config.web.secure_cookies))
    session = None
    if value and len(value) <= 128:
        session = await ctx.db.run(WebAuthRepo.get_session, token_hash(value), ctx.now())
    request[SESSION_KEY] = session
    return session


async def start_session(request: web.Request, user: dict) -> tuple[str, str]:
    """Create a session for ``user``; returns (cookie value, csrf token)."""
    ctx = ctx_of(request)
    value, csrf = new_token(), new_token()
    now = ctx.now()
    await ctx.db.run(WebAuthRepo.create_session, id_hash=token_hash(value), user_id=user["id"],
                     username=user["username"], csrf_token=csrf, at=now,
                     expires_at=now + timedelta(minutes=ctx.config.web.session_minutes),
                     remote=client_remote(request))
    return value, csrf


def csrf_ok(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected, given)


async def check_csrf(request: web.Request, session: dict) -> None:
    """Raise 403 unless the POSTed form carries this session's CSRF token."""
    form = await request.post()
    if not csrf_ok(session["csrf_token"], form.get("csrf_token")):
        from .render import gettext_of  # render imports this module
        _ = gettext_of(request)
        raise web.HTTPForbidden(text=_("Forbidden: the form's security token is missing or stale."
                                       " Reload the page and try again."))


def session_of(request: web.Request) -> dict | None:
    """The session ``load_session`` found (None before it ran or without one)."""
    return request.get(SESSION_KEY)


def logged_in(request: web.Request) -> dict:
    """The session of a request that ``requires`` let through."""
    session = session_of(request)
    if session is None:
        raise RuntimeError("no session: the handler is not behind requires()")
    return session


def actor(request: web.Request) -> str:
    """How the audit log names the user of this request."""
    return f"web:{logged_in(request)['username']}"


def requires(role: str) -> Callable[[Handler], Handler]:
    """Decorator: a live session whose role is at least ``role``.

    No session: GET goes to the login page (coming back afterwards), anything
    else is 401.  Too low a role: the 403 page, and an audit entry.  POST:
    the CSRF token is checked before the handler runs."""
    level = ROLE_LEVELS[role]

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await load_session(request)
            if session is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/login?next={_quote_next(request.rel_url.path_qs)}")
                from .render import gettext_of  # render imports this module
                _ = gettext_of(request)
                raise web.HTTPUnauthorized(text=_("Unauthorized: log in first."))
            if request.method == "POST":
                await check_csrf(request, session)
            if ROLE_LEVELS.get(session["role"], 0) < level:
                from .render import forbidden
                return await forbidden(request, needed=role)
            return await handler(request)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded
    return wrap


def _quote_next(path_qs: str) -> str:
    from urllib.parse import quote
    return quote(path_qs, safe="")


def safe_next(value: str | None) -> str:
    """Where to go after login: only a local path, never another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value \
            and value.isprintable() and len(value) < 2048:
        return value
    return "/search"
