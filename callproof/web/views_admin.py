"""Admin pages: web users, legal holds, the audit log, the compliance report (role ``admin``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import date
from urllib.parse import urlencode

from aiohttp import web

from callproof.storage import AlreadyExistsError, NotFoundError, webauth
from callproof.storage.report import ReportTooLarge
from callproof.storage.sync import AuditRepo, HoldsRepo, WebAuthRepo

from .auth import actor, logged_in, redirect, requires
from .context import ctx_of
from .labels import status_label
from .passwords import WeakPassword, check_password_strength, hash_password
from .refusals import translated
from .render import gettext_of, locale_of, render

routes = web.RouteTableDef()


async def _users_page(request: web.Request, *, status: int = 200, error: str | None = None,
                      notice: str | None = None) -> web.Response:
    ctx = ctx_of(request)
    users = await ctx.db.run(WebAuthRepo.list_users)
    return await render(request, "users.html", status=status, users=users, roles=webauth.ROLES,
                        error=error, notice=notice or _done_notice(request))


def _done_notice(request: web.Request) -> str:
    """What the last add/disable did, said in the reader's language from the redirect's query
    (an account name and a role: nothing personal)."""
    _ = gettext_of(request)
    query = request.query
    added, disabled = query.get("added", "")[:64], query.get("disabled", "")[:64]
    if added:
        role = query.get("role", "")
        return _("User %(username)s added as %(role)s.") % {"username": added, "role": status_label(_, role)}
    if disabled:
        return _("User %(username)s disabled.") % {"username": disabled}
    return ""


@routes.get("/admin/users")
@requires("admin")
async def users(request: web.Request) -> web.StreamResponse:
    return await _users_page(request)


@routes.post("/admin/users")
@requires("admin")
async def add_user(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    form = await request.post()
    _ = gettext_of(request)
    username, role = str(form.get("username", "")).strip(), str(form.get("role", ""))
    password = str(form.get("password", ""))
    try:
        webauth.check_username(username)
        webauth.check_role(role)
        check_password_strength(password)
    except (ValueError, WeakPassword) as exc:
        return await _users_page(request, status=400, error=translated(str(exc), _))
    encoded = await asyncio.to_thread(hash_password, password)
    try:
        await ctx.db.run(WebAuthRepo.create_user, username, encoded, role, actor=actor(request), at=ctx.now())
    except AlreadyExistsError as exc:
        return await _users_page(request, status=409, error=translated(str(exc), _))
    return redirect(f"/admin/users?{urlencode({'added': username, 'role': role})}")


@routes.post(r"/admin/users/{username}/disable")
@requires("admin")
async def disable_user(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    username = request.match_info["username"]
    _ = gettext_of(request)
    if username == logged_in(request)["username"]:
        return await _users_page(request, status=400,
                                 error=_("You cannot disable your own account."))
    try:
        await ctx.db.run(WebAuthRepo.disable_user, webauth.check_username(username), actor=actor(request),
                         at=ctx.now())
    except (ValueError, NotFoundError) as exc:
        return await _users_page(request, status=404, error=translated(str(exc), _))
    return redirect(f"/admin/users?{urlencode({'disabled': username})}")


@routes.get("/admin/holds")
@requires("admin")
async def holds(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    show_all = request.query.get("all") == "1"
    rows = await ctx.db.run(HoldsRepo.list, include_released=show_all)
    return await render(request, "holds.html", holds=rows, show_all=show_all)


@routes.get("/admin/audit")
@requires("admin")
async def audit(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    before = request.query.get("before", "")
    action = request.query.get("action", "").strip()[:64]
    before_id = int(before) if before.isascii() and before.isdigit() and len(before) < 15 else None
    rows = await ctx.db.run(AuditRepo.page, before_id=before_id, action=action or None)
    for row in rows:
        row["details_text"] = _details(row["details"])
    return await render(request, "audit.html", entries=rows, action=action,
                        older=rows[-1]["id"] if rows else None)


def _details(text: str | None) -> str:
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return ", ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else text


_DOWNLOADS = {"csv": "text/csv; charset=utf-8", "json": "application/json", "pdf": "application/pdf"}


def _day(request: web.Request, name: str, default: date, _: Callable[[str], str]) -> date:
    """The ``from``/``to`` query value as a local day; ValueError naming the field, in the
    reader's language."""
    text = request.query.get(name, "").strip()
    if not text:
        return default
    field = _("From") if name == "from" else _("To")
    problem = ValueError(_("%(field)s: not a date YYYY-MM-DD: %(value)s") % {"field": field,
                                                                             "value": repr(text[:40])})
    if len(text) != 10:
        raise problem
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise problem from None


def _period(request: web.Request, today: date, _: Callable[[str], str]) -> tuple[date, date]:
    """The form's period (default: this month so far), refused in the reader's language when
    backwards or longer than a report covers (the CLI's checks: callproof/report/figures.py)."""
    from callproof.report.figures import MAX_DAYS

    first, last = _day(request, "from", today.replace(day=1), _), _day(request, "to", today, _)
    if last < first:
        raise ValueError(_("To %(last)s is before From %(first)s") % {"first": first, "last": last})
    if (days := (last - first).days + 1) > MAX_DAYS:
        raise ValueError(_("From %(first)s to %(last)s spans %(days)s days; a report covers at most %(most)s:"
                           " ask for a shorter period") % {"first": first, "last": last, "days": days,
                                                             "most": MAX_DAYS})
    return first, last


@routes.get("/admin/report")
@requires("admin")
async def compliance_report(request: web.Request) -> web.StreamResponse:
    """The compliance report (callproof/report/); ``?from=&to=`` (local days, default this month
    so far), ``&format=csv|json|pdf`` to download it.  Every report shown or downloaded is
    audited (``report.viewed``), with its period and format."""
    from callproof.report.cli import render as render_report
    from callproof.report.figures import read_report
    from callproof.report.render_html import body

    ctx = ctx_of(request)
    now = ctx.now()
    locale = locale_of(request)  # the page's language: the downloads speak it too
    today = now.astimezone(ctx.config.general.tz).date()
    fmt = request.query.get("format", "")
    fmt = fmt if fmt in _DOWNLOADS else "html"
    _ = gettext_of(request)
    try:
        first, last = _period(request, today, _)
        report = await ctx.db.run(read_report, ctx.config, first, last, now)
    except ValueError as exc:  # a bad day, a backwards or too long period, too many rows
        error = str(exc) if not isinstance(exc, ReportTooLarge) else \
            _("The period holds more rows than one report reads: ask for a shorter period.")
        return await render(request, "report.html", status=400, error=error, body="",
                            first=request.query.get("from", "")[:10], last=request.query.get("to", "")[:10])
    await ctx.db.run(AuditRepo.append, "report.viewed", actor(request), now,
                     details={"from": first.isoformat(), "to": last.isoformat(), "format": fmt,
                              "locale": locale})
    if fmt in _DOWNLOADS:
        data = await asyncio.to_thread(render_report, report, fmt, locale)
        return web.Response(body=data, headers={
            "Content-Type": _DOWNLOADS[fmt],
            "Content-Disposition": f'attachment; filename="compliance-{first}-{last}.{fmt}"'})
    html = await asyncio.to_thread(body, report, locale)  # a year of days is a large table: not on the loop
    return await render(request, "report.html", error=None, body=html, first=first.isoformat(),
                        last=last.isoformat())
