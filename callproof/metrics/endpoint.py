"""``GET /metrics`` over HTTP (aiohttp, already the web page's server), in the event loop.

The database figures are refreshed (awaited, on storage's own thread) before the registry
is rendered, so a scrape never blocks the loop on SQLite; rendering the text is a few
hundred small lines of CPU.  Anything else than ``GET /metrics`` is 404.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from callproof.logs import event

log = logging.getLogger("callproof.metrics")

#: The text format generate_latest() writes, understood by every Prometheus 2 and 3 server.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_app(registry: CollectorRegistry, refreshers: Sequence[Callable[[], Awaitable[None]]] = ()) \
        -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        for refresh in refreshers:
            try:
                await refresh()
            except Exception as exc:  # storage down: the in-process figures still come, the rest is stale
                event(log, "metrics.refresh_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def serve(registry: CollectorRegistry, host: str, port: int,
                refreshers: Sequence[Callable[[], Awaitable[None]]] = ()) -> web.AppRunner:
    """Start serving; returns the runner (``runner.addresses[0]``: where; ``cleanup()``: stop)."""
    runner = web.AppRunner(metrics_app(registry, refreshers), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    where = runner.addresses[0]
    event(log, "metrics.listening", host=where[0], port=where[1])
    return runner
