"""What every handler needs, stored once on the aiohttp application."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..config import Config
from .dbpool import DbPool
from .ratelimit import RefusalTally, SourceLimiter

MAX_NOTICES = 1000


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebContext:
    config: Config
    db: DbPool
    clock: Callable[[], datetime] = system_clock
    # the private keyring ([encryption] enabled): encrypted recordings, exports and history
    # documents are decrypted, streaming, to be served; None: encryption off
    keyring: Any = None
    limiter: SourceLimiter = field(init=False)
    refusals: RefusalTally = field(default_factory=RefusalTally)
    # The queue's one-time notice after an action, by session (never in a URL: it may name
    # the customer's number).  In memory: a restart loses a notice, nothing else.
    notices: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.limiter = SourceLimiter(self.config.web.public_rate_per_minute)

    def now(self) -> datetime:
        return self.clock()

    def identities(self) -> list[Any] | None:
        return self.keyring.identities() if self.keyring is not None else None

    def leave_notice(self, session_key: str, text: str) -> None:
        self.notices.pop(session_key, None)
        self.notices[session_key] = text
        while len(self.notices) > MAX_NOTICES:
            self.notices.popitem(last=False)

    def take_notice(self, session_key: str) -> str:
        return self.notices.pop(session_key, "")


CTX_KEY = web.AppKey("callproof_web", WebContext)


def ctx_of(request: web.Request) -> WebContext:
    return request.app[CTX_KEY]
