"""``GET /d/{token}``: the customer's download link (no login).

The token is checked by ``resolve_token_sync`` (signature, expiry, revocation,
download count; both outcomes audited there).  A refusal answers with a
short plain message and nothing about why beyond "invalid" or "no longer
valid": the audit log has the detail, the public does not.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .auth import client_remote
from .context import ctx_of
from .recfiles import UnsafeFile, file_inside

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_TOKEN_CHARS = 256
GONE_REASONS = frozenset({"expired", "revoked", "exhausted", "gone"})  # 410: ask for a new link
CONTENT_TYPES = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", charset="utf-8")


@routes.get("/d/{token}")
async def download(request: web.Request) -> web.StreamResponse:
    from ..rights.links import LinkError, resolve_token_sync

    ctx = ctx_of(request)
    token = request.match_info["token"]
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return _plain(403, "This download link is not valid.")
    try:
        link, export = await ctx.db.run(resolve_token_sync, ctx.config, token, now=ctx.now(),
                                        remote=client_remote(request))
    except LinkError as exc:
        if exc.reason in GONE_REASONS:
            return _plain(410, "This download link is no longer valid. Ask for a new one.")
        return _plain(403, "This download link is not valid.")
    try:
        path = await asyncio.to_thread(file_inside, ctx.config.rights.export_dir, export.path)
    except (UnsafeFile, FileNotFoundError) as exc:
        log.error("download link %s: export %s cannot be served: %s", link.id, export.id, exc)
        return _plain(410, "This recording is no longer available. Ask for a new link.")
    fmt = export.format
    name = f"{link.call_protocol or 'recording'}.{fmt}"
    return web.FileResponse(path, headers={
        "Content-Type": CONTENT_TYPES.get(fmt, "application/octet-stream"),
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
    })
