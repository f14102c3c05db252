"""``POST /api/requests``: file a recording request over HTTP (another system's intake).

Authorization: ``Bearer <[web] api_token>``; with no token configured the
route answers 404 (the API is off).  The body is JSON
``{"protocol": "...", "phone": "...", "cpf": "...", "customer_code": "...",
"deliver_to": "sms:+55..." | "email:..."}``; only ``protocol`` is required.
201 with the request's own protocol and due time; 200 when the same
requester already had that request open; 400 naming the bad field.

An error's body is ``{"code": ..., "message": ..., "error": ..., "field": ...}``: ``code`` a
stable machine name (the same in every language, :data:`MESSAGES`), ``message`` for a person
in the ``Accept-Language`` of the call (en, pt_BR or es, else ``[web] default_locale``: the
API has no account), ``error`` the English text it always had.

The call's phone number alone is not identity (caller ID is spoofable): with it, a
request is ``received`` only when its link would go to that number.  Asking for
another address makes it ``needs_identity_check`` and sends a one-time code by SMS to
the call's number (``"identity": "code_sent"``); ``POST
/api/requests/<request protocol>/code`` with ``{"code": "123456"}`` returns it
(docs/requests.md, callproof/rights/codes.py).
"""

from __future__ import annotations

import hmac
import json

from aiohttp import web

from callproof.config import Config

from . import rights_api
from .auth import client_remote
from .context import ctx_of
from .i18n import N_
from .recfiles import is_protocol
from .refusals import translated
from .render import gettext_of

routes = web.RouteTableDef()

FIELDS = ("protocol", "phone", "cpf", "customer_code", "deliver_to")
MAX_BODY = 16 * 1024


#: each error's code and its message (``%(name)s`` filled from the error's values)
MESSAGES = {
    "api_off": N_("The request API is off ([web] api_token is not set)."),
    "unauthorised": N_("The bearer token is missing or wrong."),
    "rate_limited": N_("Too many requests: try again later."),
    "body_too_large": N_("The body is larger than %(limit)s bytes."),
    "not_json_object": N_("The body must be a JSON object."),
    "unknown_field": N_("Unknown field %(field)s (known: %(known)s)."),
    "not_a_string": N_("The field %(field)s must be a string."),
    "bad_protocol": N_("A protocol is 17 digits (a 4-digit year and a 13-digit sequence)."),
    "bad_field": N_("The field %(field)s is not valid: %(problem)s"),
    "not_found": N_("No call has that protocol."),
    "refused": N_("The request was refused: %(problem)s"),
    "bad_code_body": N_('The body must be {"code": "<the 6 digits>"}.'),
    "no_request": N_("There is no request with that protocol."),
}
#: what each outcome of a one-time code says to a person (its ``outcome`` is the code)
OUTCOMES = {
    "verified": N_("The code is right: the request is accepted."),
    "wrong": N_("The code is wrong."),
    "expired": N_("The code has expired: ask for a new one."),
    "spent": N_("The code was already used, or wrong too many times: ask for a new one."),
    "no_code": N_("No code was sent for this request."),
    "not_waiting": N_("This request is not waiting for a code."),
}


def _error(request: web.Request, status: int, code: str, english: str, field: str | None = None,
           values: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> web.Response:
    _ = gettext_of(request)
    body = {"code": code, "message": _(MESSAGES[code]) % (values or {}), "error": english}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _refused(request: web.Request) -> web.StreamResponse | None:
    """The one check of every API route: 404 when the API is off; without the bearer token,
    401, counted (not logged one line each), and 429 to an address that keeps guessing."""
    ctx = ctx_of(request)
    token = ctx.config.web.api_token
    if not token:
        return _error(request, 404, "api_off", "The request API is off ([web] api_token is not set).")
    if _authorised(request, token):
        return None
    remote = client_remote(request)
    wait = ctx.limiter.check(remote, "api")
    ctx.refusals.add("api.rate_limited" if wait else "api.unauthorised", remote, ctx.now())
    if wait:
        return _error(request, 429, "rate_limited", "too many requests", headers={"Retry-After": str(wait)})
    return _error(request, 401, "unauthorised", "missing or wrong bearer token",
                  headers={"WWW-Authenticate": 'Bearer realm="callproof"'})


def _validate(config: Config, body: dict) -> tuple[str, str, str, dict[str, str]] | None:
    """(field, code, the English problem, the message's values) for the first bad field, or None."""
    from ..numbers import normalise_caller
    from ..rights.identity import normalise_cpf, normalise_customer_code
    from ..rights.requests import normalise_deliver_to

    for key in body:
        if key not in FIELDS:
            return key, "unknown_field", f"unknown field {key!r} (known: {', '.join(FIELDS)})", \
                {"field": repr(key), "known": ", ".join(FIELDS)}
    for key, value in body.items():
        if value is not None and not isinstance(value, str):
            return key, "not_a_string", f"{key} must be a string", {"field": key}
    if not is_protocol(body.get("protocol") or ""):
        return "protocol", "bad_protocol", "protocol must be 17 digits (4-digit year + 13-digit sequence)", {}
    checks = {
        "phone": lambda v: normalise_caller(v, config.general.phone_region).e164 or _bad("not a valid phone number"),
        "cpf": normalise_cpf,
        "customer_code": normalise_customer_code,
        "deliver_to": lambda v: normalise_deliver_to(v, config.general.phone_region),
    }
    for key, check in checks.items():
        if body.get(key):
            try:
                check(body[key])
            except ValueError as exc:  # the module's English, translated where the message is made
                return key, "bad_field", f"{key}: {exc}", {"field": key, "problem": str(exc)}
    return None


def _limit() -> dict[str, str]:
    return {"limit": str(MAX_BODY)}


def _bad(problem: str):
    raise ValueError(problem)


@routes.post("/api/requests")
async def create_request(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    refused = _refused(request)
    if refused is not None:
        return refused
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(request, 413, "body_too_large", f"body larger than {MAX_BODY} bytes", values=_limit())
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return _error(request, 413, "body_too_large", f"body larger than {MAX_BODY} bytes", values=_limit())
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(request, 400, "not_json_object", "the body must be a JSON object", "body")
    if not isinstance(body, dict):
        return _error(request, 400, "not_json_object", "the body must be a JSON object", "body")
    problem = _validate(ctx.config, body)
    if problem:
        field, code, english, values = problem
        if "problem" in values:
            values["problem"] = translated(values["problem"], gettext_of(request))
        return _error(request, 400, code, english, field, values)
    try:
        filed = await ctx.db.run(
            rights_api.file_request, ctx.config, call_protocol=body["protocol"], channel="http",
            actor="api", now=ctx.now(), requester_number=body.get("phone") or None,
            cpf=body.get("cpf") or None, customer_code=body.get("customer_code") or None,
            deliver_to=body.get("deliver_to") or None)
    except rights_api.InputError as exc:
        if exc.not_found:
            return _error(request, 404, "not_found", str(exc), "protocol")
        return _error(request, 400, "refused", str(exc),
                      values={"problem": exc.in_language(gettext_of(request))})
    return web.json_response({
        "request_protocol": filed.request_protocol, "call_protocol": filed.call_protocol,
        "state": filed.state, "received_at": filed.received_at, "due_at": filed.due_at,
        "created": filed.created,
        "identity": "code_sent" if filed.code_sent else (
            "needs_agent" if filed.state == "needs_identity_check" else "accepted"),
    }, status=201 if filed.created else 200)


@routes.post(r"/api/requests/{request_protocol:[0-9]{17}}/code")
async def confirm_code(request: web.Request) -> web.StreamResponse:
    """The one-time code the requester got by SMS on the call's number."""
    ctx = ctx_of(request)
    refused = _refused(request)
    if refused is not None:
        return refused
    raw = await request.content.read(MAX_BODY + 1)
    try:
        body = json.loads(raw) if len(raw) <= MAX_BODY else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str) or set(body) != {"code"}:
        return _error(request, 400, "bad_code_body", 'the body must be {"code": "<the 6 digits>"}', "code")
    try:
        check = await ctx.db.run(rights_api.confirm_code, ctx.config, request.match_info["request_protocol"],
                                 body["code"], actor="api", now=ctx.now())
    except rights_api.InputError as exc:
        if exc.not_found:
            return _error(request, 404, "no_request", str(exc), "code")
        return _error(request, 400, "refused", str(exc), "code",
                      values={"problem": exc.in_language(gettext_of(request))})
    status = {"verified": 200, "wrong": 400, "expired": 410, "spent": 410, "no_code": 409,
              "not_waiting": 409}[check.outcome]
    return web.json_response({"outcome": check.outcome, "message": gettext_of(request)(OUTCOMES[check.outcome]),
                              "state": check.state, "tries_left": check.tries_left}, status=status)
