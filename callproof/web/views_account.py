"""The user's own account page: the language the pages speak to them (any role).

The choice is stored on the account (``web_users.locale``, audited as
``web.user.locale_changed``); "as my browser asks" clears it, and the browser's
``Accept-Language`` decides again (callproof/web/i18n.py)."""

from __future__ import annotations

from aiohttp import web

from callproof.storage.sync import WebAuthRepo

from .auth import actor, logged_in, redirect, requires
from .context import ctx_of
from .i18n import LOCALE_NAMES, LOCALES, negotiate, translations
from .render import gettext_of, render

routes = web.RouteTableDef()


@routes.get("/account")
@requires("viewer")
async def account(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    return await render(request, "account.html", locales=[(code, LOCALE_NAMES[code]) for code in LOCALES],
                        notice=ctx.take_notice(logged_in(request)["id_hash"]), error=None)


@routes.post("/account/locale")
@requires("viewer")
async def set_locale(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    session = logged_in(request)
    chosen = str((await request.post()).get("locale", ""))[:16]
    if chosen and chosen not in LOCALES:
        _ = gettext_of(request)
        return await render(request, "account.html", status=400,
                            locales=[(code, LOCALE_NAMES[code]) for code in LOCALES], notice=None,
                            error=_("%(locale)r is not a language these pages speak.") % {"locale": chosen})
    await ctx.db.run(WebAuthRepo.set_locale, session["username"], chosen or None, actor=actor(request),
                     at=ctx.now())
    # Said in the language just chosen (the browser's when the choice was cleared: the next page's).
    now_speaking = chosen or negotiate(None, request.headers.get("Accept-Language"), ctx.config.web.default_locale)
    _ = translations(now_speaking).gettext
    ctx.leave_notice(session["id_hash"], _("Language saved."))
    return redirect("/account")
