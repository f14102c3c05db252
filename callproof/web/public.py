"""``GET /d/{token}``: the customer's download link (no login).

Each client address has a rate limit (ratelimit.py).  A token that is not a
download token, or whose signature does not match, is refused without touching
the database: it is only counted (``web.refusals``).  A token with a valid
signature is checked by ``resolve_token_sync`` (expiry, revocation, download
count, the file's sha256; its refusals audited one by one).

Only a GET that sends the file's last byte counts as a download: a whole-file
GET, or a range that reaches the end (a resumed download counts once, when it
finishes).  HEAD and ranges short of the end (link scanners, prefetchers, a
player probing the file) are served without counting.  Conditional headers are
ignored: every GET gets the bytes it asked for, so none can skip the count.

A refusal answers with a short plain message and nothing about why beyond
"invalid" or "no longer valid": the audit log has the detail, the public does not.
The message is in the customer's language (customer.py): the call's, as the e-mail that
carried the link, once the token's signature holds; before that (a forged or malformed
token, an address over its rate limit) the browser's ``Accept-Language``.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..encryption.errors import AgeError
from ..rights.links import LinkError, parse_token, resolve_token_sync, token_digest
from .auth import client_remote
from .context import ctx_of
from .customer import html_lang, link_language, link_text
from .filesend import open_plaintext, send
from .filesend import parse_range as _range
from .recfiles import UnsafeFile, file_inside

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_TOKEN_CHARS = 256
GONE_REASONS = frozenset({"expired", "revoked", "exhausted", "gone"})  # 410: ask for a new link
CONTENT_TYPES = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", charset="utf-8",
                        headers=headers)


def _refuse(request: web.Request, status: int, key: str, call_language: str | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """A refusal in the customer's language, saying which (``Content-Language``)."""
    language = link_language(ctx_of(request).config, call_language, request.headers.get("Accept-Language"))
    response = _plain(status, link_text(language, key), headers)
    response.headers["Content-Language"] = html_lang(language)
    response.headers["Vary"] = "Accept-Language"
    return response


@routes.get("/d/{token}")  # HEAD too (aiohttp adds it to a GET route)
async def download(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    token = request.match_info["token"]
    remote = client_remote(request)
    wait = ctx.limiter.check(remote, "download")
    if wait:
        ctx.refusals.add("download.rate_limited", remote, ctx.now())
        return _refuse(request, 429, "rate_limited", headers={"Retry-After": str(wait)})
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        ctx.refusals.add("download.malformed", remote, ctx.now())
        return _refuse(request, 403, "invalid")
    try:
        parse_token(ctx.config.rights.link_secret, token)
    except LinkError as exc:  # anyone can make these: counted, not written one by one
        ctx.refusals.add(f"download.{exc.reason}", remote, ctx.now())
        return _refuse(request, 403, "invalid")

    export_path, language = await ctx.db.run(_export_path_of, ctx.config, token, ctx.now())
    size = None
    if export_path is not None:  # the plaintext's size: an export is encrypted at rest
        size = await asyncio.to_thread(_plaintext_size, export_path, ctx.identities())
    wanted = _range(request, size) if size is not None else (0, 0)
    counts = request.method == "GET" and wanted is not None and size is not None and wanted[1] == size
    try:
        link, export = await ctx.db.run(resolve_token_sync, ctx.config, token, now=ctx.now(),
                                        remote=remote, count=counts)
    except LinkError as exc:
        if exc.reason in GONE_REASONS:
            return _refuse(request, 410, "gone", language)
        return _refuse(request, 403, "invalid", language)
    try:
        path = await asyncio.to_thread(file_inside, ctx.config.rights.export_dir, export.path)
        opened = await asyncio.to_thread(open_plaintext, path, ctx.identities())
    except (UnsafeFile, OSError, AgeError, ValueError) as exc:
        log.error("download link %s: export %s cannot be served (%s)", link.id, export.id, type(exc).__name__)
        return _refuse(request, 410, "unavailable", language)
    wanted = _range(request, opened.size)
    if wanted is None:
        await asyncio.to_thread(opened.close)
        return _refuse(request, 416, "range", language, {"Content-Range": f"bytes */{opened.size}"})
    name = f"{link.call_protocol or 'recording'}.{export.format}"
    return await send(request, opened, wanted, headers={
        "Content-Type": CONTENT_TYPES.get(export.format, "application/octet-stream"),
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
    })


def _plaintext_size(path: str, identities) -> int | None:
    """The size of the export's plaintext (decrypting its header and last chunk); None when
    it cannot be opened (the resolution then refuses and audits why)."""
    try:
        opened = open_plaintext(path, identities)
    except (OSError, AgeError, ValueError):
        return None
    opened.close()
    return opened.size


def _export_path_of(db, config, token: str, now) -> tuple[str | None, str | None]:
    """The export file a signed token points at (to know its size before counting), and the
    language of its call (the customer's, for what the link answers)."""
    from callproof.storage import SyncDatabase
    link_id, _expiry = parse_token(config.rights.link_secret, token)
    db = SyncDatabase.wrap(db)
    link = db.links.get(link_id)
    export = db.exports.get(link.export_id) if link else None
    call = db.calls.get_by_protocol(link.call_protocol) if link else None
    return (export.path if export is not None else None), (call or {}).get("language")


__all__ = ["download", "token_digest"]
