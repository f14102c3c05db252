"""The aiohttp application behind ``callproof web`` and how it is served."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web, web_response

from callproof.storage import open_pool

from ..config import Config
from . import api, public, views_account, views_admin, views_auth, views_calls, views_requests
from .accesslog import ACCESS_LOG_NAME, AccessLogger
from .context import CTX_KEY, WebContext, system_clock
from .dbpool import DbPool
from .ratelimit import summaries

__all__ = ["ACCESS_LOG_NAME", "build_app", "runner_options", "serve"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
CONTENT_SECURITY_POLICY = ("default-src 'self'; base-uri 'none'; object-src 'none'; "
                           "frame-ancestors 'none'; form-action 'self'")
# Files (audio, exports) are never documents: nothing in them may run or load anything.
FILE_SECURITY_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
MAX_BODY_BYTES = 64 * 1024
# What the Server header says: no product versions to look up exploits for.
SERVER_NAME = "callproof"
# aiohttp answers a request its parser refuses itself, before any application hook,
# with its own Server value; this is the module global it reads.
web_response.SERVER_SOFTWARE = SERVER_NAME


def runner_options() -> dict:
    """How the server (and the tests' server) is run: our access log line."""
    return {"access_log_class": AccessLogger, "access_log": logging.getLogger(ACCESS_LOG_NAME)}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, errors included: no framing, no sniffing, no referrer
    (a /d/ link must not leak onwards), and no caching of anything but the
    stylesheet -- pages and audio carry personal data."""
    headers = response.headers
    headers["Server"] = SERVER_NAME
    is_page = headers.get("Content-Type", "").startswith("text/html")
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY if is_page else FILE_SECURITY_POLICY)
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
    if request.app[CTX_KEY].config.web.secure_cookies:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


def load_keyring(config: Config) -> Any:
    """The private keyring the web process decrypts with; None when encryption is off.
    KeyringError, naming what is missing, when it is on and the keys cannot be read: the web
    side does not start without them (it could serve nothing encrypted)."""
    if not config.encryption.enabled:
        return None
    from ..encryption.keyring import PrivateKeyring
    return PrivateKeyring.load(config)


def build_app(config: Config, *, db: DbPool | None = None,
              clock: Callable[[], datetime] = system_clock, keyring: Any = None) -> web.Application:
    """The application; ``db`` defaults to a pool on ``[storage] database`` (closed on cleanup);
    ``keyring`` to the private keyring of ``[encryption]`` (KeyringError when it is on and missing)."""
    keyring = keyring if keyring is not None else load_keyring(config)
    pool = db or open_pool(config)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[CTX_KEY] = WebContext(config=config, db=pool, clock=clock, keyring=keyring)
    for module in (views_auth, views_calls, views_requests, views_admin, views_account, public, api):
        app.router.add_routes(module.routes)
    app.router.add_static("/static", STATIC_DIR, follow_symlinks=False, show_index=False)
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(summaries)
    if db is None:
        async def close_pool(_app: web.Application) -> None:
            pool.close()
        app.on_cleanup.append(close_pool)
    return app


async def serve(config: Config, host: str, port: int, *, ready: Callable[[str], None] | None = None,
                keyring: Any = None) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests and close."""
    app = build_app(config, keyring=keyring)
    runner = web.AppRunner(app, **runner_options())
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        where = site.name
        log.info("callproof web listening on %s", where)
        if ready is not None:
            ready(where)
        await stop.wait()
        log.info("callproof web stopping")
    finally:
        await runner.cleanup()
