"""The ``ivr_request_calls`` table: one row per call into the recording-request IVR.

Written step by step by ``ari_app/ivr_request.py`` (as ``calls`` is by the
inbound flow), so a hang-up at any point leaves a record of how far the caller
got.  What the caller typed is kept only once it was accepted (17 digits, the
protocol of an existing call); the request itself lives in
``recording_requests`` and is linked by ``request_id``.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._sqlutil import fetch_all, fetch_one, inserted_id
from .errors import NotFoundError
from .timefmt import to_db_time, to_db_time_or_none

if TYPE_CHECKING:
    from .db import Database

__all__ = [
    "STATUSES",
    "IvrRequestCalls",
    "create_sync",
    "get_by_channel_sync",
    "get_sync",
    "request_summary_sync",
    "unfinished_sync",
    "update_sync",
]

STATUSES = frozenset({
    "consent_playing", "abandoned_in_consent", "collecting", "abandoned_in_entry",
    "not_found", "filed", "completed", "failed",
})
PROBLEMS = frozenset({"no_digits", "wrong_length", "unknown_protocol"})

TIME_COLUMNS = frozenset({"consent_started_at", "consent_finished_at", "ended_at"})
UPDATABLE_COLUMNS = TIME_COLUMNS | {
    "status", "consent_prompt", "consent_sha256", "consent_outcome", "attempts", "last_problem",
    "call_protocol", "request_id", "request_read_count", "hangup_cause", "error",
}
_PROTOCOL = re.compile(r"[0-9]{17}")


def create_sync(conn: sqlite3.Connection, *, channel_id: str, caller_number: str | None, language: str,
                started_at: str | datetime, updated_at: str | datetime) -> int:
    """Insert the row of a new IVR call (status ``consent_playing``); returns its id."""
    cur = conn.execute(
        "INSERT INTO ivr_request_calls (channel_id, caller_number, language, started_at, status, updated_at)"
        " VALUES (?, ?, ?, ?, 'consent_playing', ?)",
        (channel_id, caller_number, language, to_db_time(started_at), to_db_time(updated_at)))
    return inserted_id(cur)


def update_sync(conn: sqlite3.Connection, ivr_id: int, changes: dict[str, Any],
                updated_at: str | datetime) -> None:
    """Set whitelisted columns.  ``call_protocol`` must be 17 ASCII digits: nothing
    else the caller typed may reach the database."""
    if not changes:
        raise ValueError("ivr_request_calls.update: no columns given")
    bad = sorted(set(changes) - UPDATABLE_COLUMNS)
    if bad:
        raise ValueError(f"ivr_request_calls.update: column(s) not updatable: {', '.join(bad)}")
    if "status" in changes and changes["status"] not in STATUSES:
        raise ValueError(f"ivr_request_calls.update: unknown status {changes['status']!r}")
    if changes.get("last_problem") is not None and changes["last_problem"] not in PROBLEMS:
        raise ValueError(f"ivr_request_calls.update: unknown problem {changes['last_problem']!r}")
    protocol = changes.get("call_protocol")
    if protocol is not None and not (isinstance(protocol, str) and _PROTOCOL.fullmatch(protocol)):
        raise ValueError("ivr_request_calls.update: call_protocol must be 17 ASCII digits")
    values = {k: to_db_time_or_none(v) if k in TIME_COLUMNS else v for k, v in changes.items()}
    names = sorted(values)  # from the whitelist only: safe to interpolate
    assignments = ", ".join(f"{name} = ?" for name in names)
    cur = conn.execute(f"UPDATE ivr_request_calls SET {assignments}, updated_at = ? WHERE id = ?",
                       (*(values[n] for n in names), to_db_time(updated_at), ivr_id))
    if cur.rowcount == 0:
        raise NotFoundError(f"IVR call {ivr_id} does not exist")


def get_sync(conn: sqlite3.Connection, ivr_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM ivr_request_calls WHERE id = ?", (ivr_id,)))


def get_by_channel_sync(conn: sqlite3.Connection, channel_id: str) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM ivr_request_calls WHERE channel_id = ?", (channel_id,)))


def unfinished_sync(conn: sqlite3.Connection) -> list[dict]:
    return fetch_all(conn.execute(
        "SELECT * FROM ivr_request_calls WHERE ended_at IS NULL ORDER BY started_at, id"))


def request_summary_sync(conn: sqlite3.Connection, request_id: int) -> dict | None:
    """The filed request's own protocol and state (to tell the caller again after a resume)."""
    return fetch_one(conn.execute(
        "SELECT id, request_protocol, state FROM recording_requests WHERE id = ?", (request_id,)))


class IvrRequestCalls:
    """Async repository over :class:`storage.Database` (one thread hop per call)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, *, channel_id: str, caller_number: str | None, language: str,
                     started_at: str | datetime) -> int:
        return await self._db.run_in_connection(
            create_sync, channel_id=channel_id, caller_number=caller_number, language=language,
            started_at=started_at, updated_at=self._db.now())

    async def update(self, ivr_id: int, **changes: Any) -> None:
        await self._db.run_in_connection(update_sync, ivr_id, changes, self._db.now())

    async def get(self, ivr_id: int) -> dict | None:
        return await self._db.run_in_connection(get_sync, ivr_id)

    async def get_by_channel(self, channel_id: str) -> dict | None:
        return await self._db.run_in_connection(get_by_channel_sync, channel_id)

    async def unfinished(self) -> list[dict]:
        return await self._db.run_in_connection(unfinished_sync)

    async def request_summary(self, request_id: int) -> dict | None:
        return await self._db.run_in_connection(request_summary_sync, request_id)
