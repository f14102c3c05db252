"""Test helper: bring a call row to a status the way a call would get there, one allowed
change at a time (the state machine in storage/call_status.py refuses shortcuts)."""

from __future__ import annotations

import sqlite3
from collections import deque
from datetime import UTC, datetime
from typing import Any

from callproof.storage import Database
from callproof.storage import calls as calls_store
from callproof.storage.call_status import TRANSITIONS, CallStatus


def path_to(current: str, wanted: str) -> list[CallStatus]:
    """The shortest chain of allowed changes from ``current`` to ``wanted`` (without ``current``)."""
    start, goal = CallStatus(current), CallStatus(wanted)
    if start is goal:
        return [goal]
    seen, queue = {start: [start]}, deque([start])
    while queue:
        status = queue.popleft()
        for nxt in sorted(TRANSITIONS[status]):
            if nxt not in seen:
                seen[nxt] = [*seen[status], nxt]
                if nxt is goal:
                    return seen[nxt][1:]
                queue.append(nxt)
    raise ValueError(f"no allowed path from {current!r} to {wanted!r}")


def advance_sync(conn: sqlite3.Connection, call_id: int, status: str, **changes: Any) -> None:
    """Walk the call to ``status``; ``changes`` are written with the last step."""
    (current,) = conn.execute("SELECT status FROM calls WHERE id = ?", (call_id,)).fetchone()
    steps = path_to(current, status)
    now = datetime.now(UTC)
    for step in steps[:-1]:
        calls_store.update_sync(conn, call_id, {"status": step.value}, now)
    calls_store.update_sync(conn, call_id, {"status": steps[-1].value, **changes}, now)


async def advance(db: Database, call_id: int, status: str, **changes: Any) -> None:
    await db.run_in_connection(advance_sync, call_id, status, **changes)
