"""What happened to a call after its hand-off: the queue it waited in, and whether an agent
answered or the caller gave up (``calls.queue_*``, ``calls.agent_answered_at``; migration 0013).

Asterisk's queue events name the caller's channel by its uniqueid (the channel our flow ran
on: ``calls.uniqueid``).  Each column is written once, by the first event that sets it, so
two processes watching one Asterisk write the same row once and agree on it; the one whose
write changed the row is told so (:attr:`QueueMark.changed`) and is the one that counts it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .timefmt import to_db_time

if TYPE_CHECKING:
    from .db import Database

#: The queue events we record, by what they mean for the call.
JOINED, ANSWERED, ABANDONED = "joined", "answered", "abandoned"
_COLUMN = {JOINED: "queue_joined_at", ANSWERED: "agent_answered_at", ABANDONED: "queue_abandoned_at"}


@dataclass(frozen=True, slots=True)
class QueueMark:
    """The outcome of one queue event: the call it matched (None: none did), whether this
    write changed the row, and the call's hand-off time (for the wait to the agent)."""

    call_id: int | None
    changed: bool
    handed_off_at: str | None = None


def mark_queue_event_sync(conn: sqlite3.Connection, uniqueid: str, what: str, at: str | datetime,
                          queue: str | None = None) -> QueueMark:
    """Record ``what`` (joined / answered / abandoned) for the call whose channel is ``uniqueid``.

    Answered and abandoned exclude each other: the first one recorded stays.  The newest call
    on that uniqueid is the one (a uniqueid is unique per Asterisk, but the row is what we have)."""
    column = _COLUMN.get(what)
    if column is None:
        raise ValueError(f"queue event must be one of {', '.join(_COLUMN)}, not {what!r}")
    if not uniqueid:
        return QueueMark(None, False)
    row = conn.execute("SELECT id, handed_off_at FROM calls WHERE uniqueid = ? ORDER BY id DESC LIMIT 1",
                       (uniqueid,)).fetchone()
    if row is None:
        return QueueMark(None, False)
    call_id, handed_off_at = row
    guard = f"{column} IS NULL"
    if what in (ANSWERED, ABANDONED):
        guard = "agent_answered_at IS NULL AND queue_abandoned_at IS NULL"
    at_db = to_db_time(at)
    changed = conn.execute(
        f"UPDATE calls SET {column} = ?, queue_name = coalesce(queue_name, ?), updated_at = ?"
        f" WHERE id = ? AND {guard}", (at_db, queue, at_db, call_id)).rowcount > 0
    return QueueMark(call_id, changed, handed_off_at)


class QueueWait:
    """Async repository (``db.queue_wait``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def mark(self, uniqueid: str, what: str, at: str | datetime, queue: str | None = None) -> QueueMark:
        return await self._db.run_in_connection(mark_queue_event_sync, uniqueid, what, at, queue)
