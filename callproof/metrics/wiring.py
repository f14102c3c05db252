"""One process's metrics, wired: registry, database collector, storage latency, endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from callproof.config import Config
from callproof.config.validation import parse_listen

from .endpoint import serve
from .process import ProcessMetrics
from .stored import StoredFigures


@dataclass
class MetricsService:
    process: ProcessMetrics
    stored: StoredFigures
    runner: web.AppRunner | None = field(default=None)

    @property
    def address(self) -> tuple[str, int] | None:
        """Where /metrics is served (None: not served)."""
        if self.runner is None or not self.runner.addresses:
            return None
        host, port = self.runner.addresses[0][:2]
        return str(host), int(port)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def collectors(config: Config, db: Any, process: str) -> tuple[ProcessMetrics, StoredFigures]:
    """The registry of ``process`` with the database figures in it, and storage latency measured."""
    from callproof.rights.requests import due_soon_until
    from callproof.store import late_after_seconds

    metrics = ProcessMetrics(process)

    def soon_until(now: datetime) -> datetime:
        return due_soon_until(config, now)

    stored = StoredFigures(db, soon_until=soon_until, cache_seconds=config.metrics.cache_seconds,
                           store_backlog=config.recording.store is not None,
                           move_late_seconds=late_after_seconds(config))
    metrics.registry.register(stored)
    db.latency_observer = metrics.observe_storage
    return metrics, stored


async def start_metrics(config: Config, db: Any, process: str, listen: str, key: str) -> MetricsService:
    """The metrics of ``process``; served on ``listen`` (``host:port``; empty: not served).
    ``key`` names the setting in errors (``metrics.listen``)."""
    metrics, stored = collectors(config, db, process)
    service = MetricsService(metrics, stored)
    where = parse_listen(key, listen)
    if where is not None:
        service.runner = await serve(metrics.registry, where[0], where[1], [stored.refresh])
    return service
