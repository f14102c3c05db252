"""Search, the call page and the recording's audio stream (viewer and up)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import NoReturn

from aiohttp import web

from callproof.callflow.queue_wait import agent_wait
from callproof.storage.sync import AuditRepo, PagesRepo, RecordingsRepo
from callproof.store.location import Elsewhere, locate

from ..encryption.errors import AgeError
from . import rights_api
from .auth import actor, requires
from .context import ctx_of
from .filesend import open_plaintext, parse_range, send, unsatisfiable
from .labels import status_label
from .recfiles import UnsafeFile, file_inside, is_protocol
from .render import gettext_of, not_found, render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SEARCH_FIELDS = ("protocol", "phone", "cpf", "customer_code", "from", "to")


@routes.get("/")
@requires("viewer")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/search")


@routes.get("/search")
@requires("viewer")
async def search_form(request: web.Request) -> web.StreamResponse:
    """The empty form.  A query string is never searched: a CPF or a number in a
    URL ends up in access logs and browser history."""
    return await render(request, "search.html", form=dict.fromkeys(SEARCH_FIELDS, ""), results=None,
                        error=None)


@routes.post("/search")
@requires("viewer")
async def search(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    posted = await request.post()
    form = {k: str(posted.get(k, "")).strip()[:64] for k in SEARCH_FIELDS}
    results, error = None, None
    _ = gettext_of(request)
    if any(form[k] for k in ("protocol", "phone", "cpf", "customer_code")):
        try:
            results = await ctx.db.run(rights_api.lookup, ctx.config, actor=actor(request), form=form,
                                        now=ctx.now())
        except rights_api.InputError as exc:
            error = exc.in_language(_)
    elif form["from"] or form["to"]:
        error = _("Give a protocol, a phone number or a CPF (the dates narrow a phone or CPF search).")
    else:
        error = _("Give a protocol, a phone number, a CPF or a customer code.")
    return await render(request, "search.html", form=form, results=results, error=error,
                        status=400 if error else 200)


@routes.get(r"/calls/{protocol:[0-9]{17}}")
@requires("viewer")
async def call_page(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    protocol = request.match_info["protocol"]
    _ = gettext_of(request)
    page = await ctx.db.run(PagesRepo.call_page, protocol, actor=actor(request), now=ctx.now())
    if page is None:
        return await not_found(request, _("No call has protocol %(protocol)s.")
                               % {"protocol": protocol})
    now = ctx.now()
    requests = [{**req.row, "exports": req.exports, "deliveries": req.deliveries,
                 **rights_api.deadline_of(req.row, ctx.config, now)} for req in page.requests]
    audit = [{**entry, "details_text": _details_text(entry["details"])} for entry in page.audit]
    return await render(request, "call.html", protocol=protocol, call=page.call, recordings=page.recordings,
                        sms=page.sms, requests=requests, holds=page.holds, audit=audit,
                        wait=agent_wait(page.call))


def _details_text(details: str | None) -> str:
    if not details:
        return ""
    try:
        data = json.loads(details)
    except ValueError:
        return details
    return ", ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else details


async def _serve_recording(request: web.Request, *, download: bool) -> web.StreamResponse:
    ctx = ctx_of(request)
    protocol = request.match_info["protocol"]
    if not is_protocol(protocol):  # the route already says so; belt and braces
        raise web.HTTPNotFound()
    row = await ctx.db.run(RecordingsRepo.latest_for_protocol, protocol)
    if row is None or row["state"] != "finalised":
        state = row["state"] if row else "none"
        _ = gettext_of(request)
        raise web.HTTPNotFound(text=_("No playable recording for protocol %(protocol)s (state: %(state)s).")
                               % {"protocol": protocol, "state": status_label(_, state) if row else _("none")})
    encrypted = row.get("encryption") == "encrypted"
    try:  # this node's root, or the shared store once the recording's node moved it there
        where, stored = locate(row, ctx.config)
    except Elsewhere as exc:
        raise web.HTTPNotFound(text=f"The recording of protocol {protocol} is not reachable here: {exc}.") from None
    try:
        path = await asyncio.to_thread(file_inside, where, stored)
    except FileNotFoundError:
        raise web.HTTPNotFound(text=_not_on_disk(request, protocol)) from None
    except UnsafeFile:
        # Not the path in the log line: a recording's file name carries the caller's number.
        await _refuse(request, row, protocol, "path outside the recordings root")
    try:  # the plaintext view: through the private keyring when the file is encrypted
        opened = await asyncio.to_thread(open_plaintext, path, ctx.identities())
    except (AgeError, ValueError) as exc:
        await _refuse(request, row, protocol, f"cannot be decrypted here: {exc}")
    except OSError:
        raise web.HTTPNotFound(text=_not_on_disk(request, protocol)) from None
    if encrypted != opened.encrypted:  # the row and the file disagree: someone changed one
        opened.close()
        await _refuse(request, row, protocol, "the file is not what its row says (encrypted or not)")
    head = await asyncio.to_thread(opened.head, 12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        await asyncio.to_thread(opened.close)
        await _refuse(request, row, protocol, "not a WAV file")
    wanted = parse_range(request, opened.size)
    if wanted is None:
        await asyncio.to_thread(opened.close)
        return unsatisfiable(opened.size)
    await ctx.db.run(AuditRepo.append, "recording.downloaded" if download else "recording.streamed",
                     actor(request), ctx.now(), protocol=protocol, subject=f"recording:{row['id']}",
                     details={"via": "web", "range": request.headers.get("Range"), "encrypted": encrypted})
    disposition = "attachment" if download else "inline"
    # The type is what the file is (checked above), never what its name says.
    return await send(request, opened, wanted, headers={
        "Content-Type": "audio/wav",
        "Content-Disposition": f'{disposition}; filename="{protocol}.wav"',
        "Cache-Control": "no-store",
    })


async def _refuse(request: web.Request, row: dict, protocol: str, why: str) -> NoReturn:
    ctx = ctx_of(request)
    log.error("refusing to serve recording %s of %s: %s", row["id"], protocol, why)
    await ctx.db.run(AuditRepo.append, "recording.refused", actor(request), ctx.now(), protocol=protocol,
                     subject=f"recording:{row['id']}", details={"why": why})
    _ = gettext_of(request)
    raise web.HTTPNotFound(text=_("The recording of protocol %(protocol)s cannot be served.") % {"protocol": protocol})


def _not_on_disk(request: web.Request, protocol: str) -> str:
    _ = gettext_of(request)
    return _("The recording of protocol %(protocol)s is not on disk.") % {"protocol": protocol}


@routes.get(r"/calls/{protocol:[0-9]{17}}/audio")
@requires("viewer")
async def call_audio(request: web.Request) -> web.StreamResponse:
    """The recording for the page's <audio> player; Range requests get 206 / 416 (filesend.py)."""
    return await _serve_recording(request, download=False)


@routes.get(r"/calls/{protocol:[0-9]{17}}/download")
@requires("operator")
async def call_download(request: web.Request) -> web.StreamResponse:
    """The original recording as a file (operators; the customer gets an export link)."""
    return await _serve_recording(request, download=True)
