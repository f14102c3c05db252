"""HTML pages from the Jinja2 templates in ``callproof/web/templates``.

Autoescaping is on for every template: caller names, numbers and refusal
reasons are caller- or operator-controlled text.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from callproof.storage.sync import AuditRepo

from .auth import logged_in, session_of
from .context import ctx_of


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("callproof.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["grouped"] = group_protocol
    return env


def group_protocol(protocol: str | None) -> str:
    """``20260000000000001`` -> ``2026 0000 0000 00001`` (the 4-4-4-5 groups read on the phone)."""
    if not protocol or len(protocol) != 17:
        return protocol or ""
    return f"{protocol[:4]} {protocol[4:8]} {protocol[8:12]} {protocol[12:]}"


def local_time(request: web.Request, value: str | datetime | None) -> str:
    """A stored UTC time in the deployment's time zone, e.g. ``22/11/2026 18:30:04 -03``."""
    if not value:
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    tz = ctx_of(request).config.general.tz
    return dt.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S %Z")


async def render(request: web.Request, template: str, *, status: int = 200,
                 headers: dict[str, str] | None = None, **values: Any) -> web.Response:
    session = session_of(request)
    base = {
        "user": session,
        "csrf_token": session["csrf_token"] if session else "",
        "company": ctx_of(request).config.general.company_name,
        "path": request.path,
        "t": lambda v: local_time(request, v),
        "role_at_least": lambda role: _role_at_least(session, role),
    }
    html = environment().get_template(template).render(**base, **values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers=headers)


def _role_at_least(session: dict | None, role: str) -> bool:
    from .auth import ROLE_LEVELS
    return session is not None and ROLE_LEVELS.get(session["role"], 0) >= ROLE_LEVELS[role]


async def forbidden(request: web.Request, *, needed: str) -> web.Response:
    """The 403 page for a logged-in user whose role is too low; the attempt is audited."""
    ctx = ctx_of(request)
    session = logged_in(request)
    protocol = request.match_info.get("protocol")
    await ctx.db.run(AuditRepo.append, "web.forbidden", f"web:{session['username']}", ctx.now(),
                     protocol=protocol, details={"method": request.method, "path": request.path,
                                                 "role": session["role"], "needed": needed})
    return await render(request, "error.html", status=403, title="Not allowed",
                        message=f"This needs the {needed} role; you are {session['role']}. "
                                "Ask an administrator if you need it.")


async def not_found(request: web.Request, message: str = "There is nothing at this address.") -> web.Response:
    return await render(request, "error.html", status=404, title="Not found", message=message)
