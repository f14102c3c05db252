"""The request queue and the request actions (file, verify identity, refuse,
export, deliver).  Viewing the queue needs ``viewer``; every action needs
``operator`` and the session's CSRF token (checked by ``requires``)."""

from __future__ import annotations

from aiohttp import web

from callproof.storage.sync import RequestsRepo

from . import rights_api
from .auth import actor, logged_in, redirect, requires
from .context import ctx_of
from .i18n import N_
from .labels import status_label
from .recfiles import is_protocol
from .render import formats_of, gettext_of, not_found, render

routes = web.RouteTableDef()

FORM_FIELDS = ("protocol", "phone", "cpf", "customer_code", "deliver_to", "verified_note")


@routes.get("/requests")
@requires("viewer")
async def queue(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    now = ctx.now()
    rows = await ctx.db.run(rights_api.open_requests)
    for row in rows:
        row.update(rights_api.deadline_of(row, ctx.config, now))
    counts = {s: sum(1 for r in rows if r["deadline"] == s) for s in ("overdue", "due_soon", "on_time")}
    return await render(request, "queue.html", requests=rows, counts=counts,
                        notice=ctx.take_notice(logged_in(request)["id_hash"]),
                        formats=rights_api.EXPORT_FORMATS, default_format=ctx.config.rights.export_format)


@routes.get("/requests/new")
@requires("operator")
async def new_request_form(request: web.Request) -> web.StreamResponse:
    protocol = request.query.get("protocol", "")
    form = dict.fromkeys(FORM_FIELDS, "")
    form["protocol"] = protocol if is_protocol(protocol) else ""
    return await render(request, "request_new.html", form=form, error=None, filed=None)


@routes.post("/requests")
@requires("operator")
async def file_request(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    posted = await request.post()
    form = {k: str(posted.get(k, "")).strip()[:200] for k in FORM_FIELDS}
    verified = posted.get("identity_verified") == "yes"
    try:
        filed = await ctx.db.run(
            rights_api.file_request, ctx.config, call_protocol=form["protocol"], channel="web",
            actor=actor(request), now=ctx.now(), requester_number=form["phone"] or None,
            cpf=form["cpf"] or None, customer_code=form["customer_code"] or None,
            deliver_to=form["deliver_to"] or None,
            identity_verified_by=(f"{actor(request)}: {form['verified_note'] or 'verified by the agent'}"
                                  if verified else None))
    except rights_api.InputError as exc:
        return await render(request, "request_new.html", status=400, form=form,
                            error=exc.in_language(gettext_of(request)), filed=None)
    return await render(request, "request_new.html", status=201 if filed.created else 200,
                        form=form, error=None, filed=filed)


def _request_id(request: web.Request) -> int:
    text = request.match_info["request_id"]
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise web.HTTPNotFound()
    return int(text)


def outcome_text(request: web.Request, outcome: rights_api.Outcome) -> str:
    """An action's outcome in the reader's language: numbers in its format, states by name."""
    _ = gettext_of(request)
    fmt = formats_of(request)
    values = dict(outcome.values)
    for key in outcome.numbers:
        values[key] = fmt.number_text(values[key])
    for key in outcome.states:
        values[key] = status_label(_, values[key])
    return _(outcome.message) % values if values else _(outcome.message)


async def _act(request: web.Request, what: str, fn, **kwargs) -> web.StreamResponse:
    """Run one request action; back to the queue with a notice (or the error).
    ``what``: the action's name, marked for the catalogue (N_)."""
    ctx = ctx_of(request)
    _ = gettext_of(request)
    request_id = _request_id(request)
    row = await ctx.db.run(RequestsRepo.with_call, request_id)
    if row is None:
        return await not_found(request, _("No recording request %(id)s.") % {"id": request_id})
    name = row["request_protocol"] or request_id
    try:
        outcome = await ctx.db.run(fn, ctx.config, request_id, actor=actor(request), now=ctx.now(), **kwargs)
    except rights_api.InputError as exc:
        return await render(request, "error.html", status=409, title=_("Could not %(what)s") % {"what": _(what)},
                            message=_("Request %(request)s: %(error)s") % {"request": name,
                                                                           "error": exc.in_language(_)})
    # Shown once on the queue, kept by the server: it may name the customer's number,
    # which must not be in a URL (access logs, browser history).
    ctx.leave_notice(logged_in(request)["id_hash"],
                     _("Request %(request)s: %(outcome)s") % {"request": name,
                                                              "outcome": outcome_text(request, outcome)})
    return redirect("/requests")


@routes.post(r"/requests/{request_id:[0-9]+}/verify")
@requires("operator")
async def verify(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return await _act(request, N_("verify identity"), rights_api.verify_identity,
                      note=str(form.get("note", ""))[:500] or None)


@routes.post(r"/requests/{request_id:[0-9]+}/refuse")
@requires("operator")
async def refuse(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return await _act(request, N_("refuse"), rights_api.refuse_request, reason=str(form.get("reason", ""))[:500])


@routes.post(r"/requests/{request_id:[0-9]+}/export")
@requires("operator")
async def export(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return await _act(request, N_("export"), rights_api.export_request, fmt=str(form.get("format", ""))[:8] or None)


@routes.post(r"/requests/{request_id:[0-9]+}/deliver")
@requires("operator")
async def deliver(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return await _act(request, N_("deliver"), rights_api.deliver_request,
                      via=str(form.get("via", ""))[:8], to=str(form.get("to", "")).strip()[:200] or None)
