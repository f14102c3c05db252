"""What every handler needs, stored once on the aiohttp application."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from ..config import Config
from .dbpool import DbPool


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebContext:
    config: Config
    db: DbPool
    clock: Callable[[], datetime] = system_clock

    def now(self) -> datetime:
        return self.clock()


CTX_KEY = web.AppKey("callproof_web", WebContext)


def ctx_of(request: web.Request) -> WebContext:
    return request.app[CTX_KEY]
