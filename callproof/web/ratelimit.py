"""What anyone may ask without logging in, and what it leaves behind.

* :class:`SourceLimiter`: a token bucket per client address (an IPv6 client
  by its /64), one each for ``/d/``, ``POST /login`` and the API: ``[web]
  public_rate_per_minute`` requests a minute, as a burst of that size; then
  429 with ``Retry-After``.  In memory, at most ``MAX_SOURCES`` addresses (the
  longest idle are forgotten first).
* :class:`RefusalTally`: refusals that need no secret to provoke (a malformed
  or forged link, a rate-limited or throttled request, a wrong API token) are
  counted in memory, not written one row each; every ``SUMMARY_SECONDS``
  (and when the server stops) one ``web.refusals`` audit entry carries the
  counts, the number of addresses and the busiest few.  A crash loses at most
  one interval of counts.  Refusals of a link with a valid signature are still
  audited one by one (``download.refused``): provoking those takes a real link.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from callproof.storage.sync import AuditRepo

if TYPE_CHECKING:
    from aiohttp import web

    from .context import WebContext

log = logging.getLogger(__name__)

MAX_SOURCES = 10_000
SUMMARY_SECONDS = 300
TOP_SOURCES = 5


def source_key(remote: str | None) -> str:
    """The bucket of an address: itself for IPv4, its /64 for IPv6 (one host has many)."""
    if remote is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


@dataclass
class SourceLimiter:
    per_minute: int
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def check(self, remote: str | None, what: str) -> int:
        """0 when the request may go on (one token taken), else seconds to wait.
        ``what`` (``download``, ``login``, ``api``): each has its own bucket per address."""
        key, now = f"{what} {source_key(remote)}", self.clock()
        rate = self.per_minute / 60.0
        tokens, then = self._buckets.pop(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * rate)
        wait = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = max(1, math.ceil((1 - tokens) / rate))
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > MAX_SOURCES:
            self._buckets.popitem(last=False)
        return wait


@dataclass
class RefusalTally:
    interval_seconds: int = SUMMARY_SECONDS
    counts: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    since: datetime | None = None

    def add(self, what: str, remote: str | None, at: datetime) -> None:
        """One refusal of kind ``what`` (e.g. ``download.malformed``) from ``remote``."""
        if self.since is None:
            self.since = at
        self.counts[what] += 1
        key = source_key(remote)
        if key in self.sources or len(self.sources) < MAX_SOURCES:
            self.sources[key] += 1

    async def flush(self, ctx: WebContext) -> bool:
        """Write what was counted as one ``web.refusals`` entry; False if nothing was."""
        if not self.counts or self.since is None:
            return False
        counts, sources, since = dict(sorted(self.counts.items())), self.sources, self.since
        self.counts, self.sources, self.since = Counter(), Counter(), None
        details = {"since": since.isoformat(), "counts": counts, "sources": len(sources),
                   "top_sources": dict(sources.most_common(TOP_SOURCES))}
        try:
            await ctx.db.run(AuditRepo.append, "web.refusals", "web:anonymous", ctx.now(), details=details)
        except Exception:  # the counts are lost, the server goes on
            log.exception("web.refusals: could not write the refusal counts")
            return False
        return True


async def summaries(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the periodic ``web.refusals`` entry, and a last one on stop."""
    from .context import CTX_KEY

    ctx = app[CTX_KEY]

    async def every_interval() -> None:
        while True:
            await asyncio.sleep(ctx.refusals.interval_seconds)
            await ctx.refusals.flush(ctx)

    task = asyncio.create_task(every_interval())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await ctx.refusals.flush(ctx)
