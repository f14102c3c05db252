"""HTML pages from the Jinja2 templates in ``callproof/web/templates``.

Autoescaping is on for every template: caller names, numbers and refusal
reasons are caller- or operator-controlled text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jinja2
from aiohttp import web

from callproof.storage.sync import AuditRepo

from .auth import logged_in, session_of
from .context import ctx_of
from .i18n import html_lang, negotiate, translations
from .labels import status_label
from .localefmt import LocaleFormat


@functools.cache
def environment(locale: str = "en") -> jinja2.Environment:
    """The templates in ``locale``: one environment per language, each with its catalogue
    installed (``{% trans %}`` and ``_()``; newstyle gettext, so a translated string is
    autoescaped and its %(name)s placeholders filled like any other)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("callproof.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["grouped"] = group_protocol
    env.globals["status"] = functools.partial(status_label, translations(locale).gettext)
    return env


def group_protocol(protocol: str | None) -> str:
    """``20260000000000001`` -> ``2026 0000 0000 00001`` (the 4-4-4-5 groups read on the phone)."""
    if not protocol or len(protocol) != 17:
        return protocol or ""
    return f"{protocol[:4]} {protocol[4:8]} {protocol[8:12]} {protocol[12:]}"


def locale_of(request: web.Request) -> str:
    """This request's language (i18n.negotiate): the account's, the browser's, the default."""
    session = session_of(request)
    return negotiate(session.get("locale") if session else None, request.headers.get("Accept-Language"),
                     ctx_of(request).config.web.default_locale)


def gettext_of(request: web.Request) -> Callable[[str], str]:
    """``_`` for the strings a handler writes: ``_ = gettext_of(request)``, then ``_("...")``."""
    return translations(locale_of(request)).gettext


def formats_of(request: web.Request) -> LocaleFormat:
    return LocaleFormat(locale_of(request), ctx_of(request).config.general.tz)


async def render(request: web.Request, template: str, *, status: int = 200,
                 headers: dict[str, str] | None = None, **values: Any) -> web.Response:
    session = session_of(request)
    locale = locale_of(request)
    fmt = LocaleFormat(locale, ctx_of(request).config.general.tz)
    base = {
        "user": session,
        "csrf_token": session["csrf_token"] if session else "",
        "company": ctx_of(request).config.general.company_name,
        "path": request.path,
        "lang": html_lang(locale),
        # every time, count, duration and percentage on a page goes through these
        "t": fmt.moment,
        "num": fmt.number,
        "pct": fmt.percent,
        "secs": fmt.seconds,
        "days": fmt.days,
        "role_at_least": lambda role: _role_at_least(session, role),
    }
    html = environment(locale).get_template(template).render(**base, **values)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers=headers)
    response.headers["Content-Language"] = html_lang(locale)
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


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
    _ = gettext_of(request)
    return await render(request, "error.html", status=403, title=_("Not allowed"),
                        message=_("This needs the %(needed)s role; you are %(role)s. "
                                  "Ask an administrator if you need it.")
                        % {"needed": status_label(_, needed), "role": status_label(_, session["role"])})


async def not_found(request: web.Request, message: str | None = None) -> web.Response:
    _ = gettext_of(request)
    return await render(request, "error.html", status=404, title=_("Not found"),
                        message=message or _("There is nothing at this address."))
