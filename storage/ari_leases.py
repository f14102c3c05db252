"""Which ``callproof run`` instance drives which in-flight ARI call (``ari_leases``,
``ari_takeovers``, ``calls.ari_app``; migration 0017).

Each instance registers its own ARI application and holds a lease on it, renewed by its
heartbeat.  A lease that was not renewed in time means the instance is dead (or stalled
for longer than the lease, see docs/scale-out.md): one survivor takes the lease over with a
conditional UPDATE (it names the generation and the expiry it saw, so of two survivors
racing for it exactly one changes the row), moves the dead application's channels into its
own, and releases the lease, which the dead instance takes back when it starts again.

Only plain SQL that PostgreSQL runs as well: a single-row ``UPDATE ... WHERE`` is the
claim (SQLite serialises writers; PostgreSQL re-checks the WHERE on the row it locked).
Times are ISO UTC strings of the instances' clocks (kept in step by NTP across nodes: the
lease is several seconds, a skew of milliseconds does not matter).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ._sqlutil import fetch_all, fetch_one, immediate
from .timefmt import to_db_time

if TYPE_CHECKING:
    from .db import Database

HELD, RELEASED = "held", "released"
TAKEOVER_OUTCOMES = ("moved", "gone", "failed")


@dataclass(frozen=True, slots=True)
class Lease:
    app: str
    holder: str
    state: str
    lease_until: str
    heartbeat_at: str
    generation: int
    node: str  # the node of the instance that took it (docs/scale-out.md): takeovers stay on a node


def _lease(row: dict | None) -> Lease | None:
    return None if row is None else Lease(**{k: row[k] for k in Lease.__slots__})


def get_sync(conn: sqlite3.Connection, app: str) -> Lease | None:
    return _lease(fetch_one(conn.execute("SELECT * FROM ari_leases WHERE app = ?", (app,))))


def acquire_own_sync(conn: sqlite3.Connection, app: str, holder: str, now: str | datetime,
                     until: str | datetime, node: str = "") -> Lease | None:
    """The instance ``holder`` starts and wants its own application ``app``: take the lease
    if nobody holds it, it is ours already (a restart within the lease), it was released,
    or it expired.  Returns the lease we now hold, or None while another live instance
    holds it (a survivor still moving our calls: try again on the next heartbeat)."""
    now_db, until_db = to_db_time(now), to_db_time(until)
    conn.execute("INSERT INTO ari_leases (app, holder, state, lease_until, heartbeat_at, node)"
                 " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (app) DO NOTHING", (app, holder, HELD, until_db, now_db, node))
    conn.execute("UPDATE ari_leases SET holder = ?, state = ?, lease_until = ?, heartbeat_at = ?, node = ?,"
                 " generation = generation + 1"
                 " WHERE app = ? AND (holder = ? OR state = ? OR lease_until < ?)",
                 (holder, HELD, until_db, now_db, node, app, holder, RELEASED, now_db))
    lease = get_sync(conn, app)
    return lease if lease is not None and lease.holder == holder and lease.state == HELD else None


def renew_sync(conn: sqlite3.Connection, holder: str, now: str | datetime, until: str | datetime) -> list[str]:
    """The heartbeat: extend every lease ``holder`` holds; the applications it still holds
    (one missing from the list was taken over while we were too slow to renew it)."""
    now_db, until_db = to_db_time(now), to_db_time(until)
    conn.execute("UPDATE ari_leases SET lease_until = ?, heartbeat_at = ? WHERE holder = ? AND state = ?",
                 (until_db, now_db, holder, HELD))
    return [r["app"] for r in fetch_all(conn.execute(
        "SELECT app FROM ari_leases WHERE holder = ? AND state = ? ORDER BY app", (holder, HELD)))]


def expired_sync(conn: sqlite3.Connection, now: str | datetime, node: str | None = None) -> list[Lease]:
    """Held leases nobody renewed in time: instances presumed dead, their calls to take over;
    with ``node``, only that node's (a survivor can only move the calls of its own Asterisk)."""
    if node is None:
        rows = fetch_all(conn.execute("SELECT * FROM ari_leases WHERE state = ? AND lease_until < ? ORDER BY app",
                                      (HELD, to_db_time(now))))
    else:
        rows = fetch_all(conn.execute("SELECT * FROM ari_leases WHERE state = ? AND lease_until < ? AND node = ?"
                                      " ORDER BY app", (HELD, to_db_time(now), node)))
    return [Lease(**{k: r[k] for k in Lease.__slots__}) for r in rows]


def take_over_sync(conn: sqlite3.Connection, seen: Lease, holder: str, now: str | datetime,
                   until: str | datetime) -> bool:
    """Claim the expired lease ``seen`` for ``holder``.  True for exactly one claimer: the
    row changes only if it is still the one seen (same generation, still expired)."""
    now_db, until_db = to_db_time(now), to_db_time(until)
    cur = conn.execute("UPDATE ari_leases SET holder = ?, lease_until = ?, heartbeat_at = ?,"
                       " generation = generation + 1"
                       " WHERE app = ? AND generation = ? AND state = ? AND lease_until < ?",
                       (holder, until_db, now_db, seen.app, seen.generation, HELD, now_db))
    return cur.rowcount == 1


def release_sync(conn: sqlite3.Connection, app: str, holder: str, now: str | datetime) -> bool:
    """A survivor has moved every call out of ``app``: give the lease back (the instance
    takes it again when it starts; nobody else takes a released lease over)."""
    now_db = to_db_time(now)
    cur = conn.execute("UPDATE ari_leases SET state = ?, lease_until = ?, heartbeat_at = ?"
                       " WHERE app = ? AND holder = ? AND state = ?", (RELEASED, now_db, now_db, app, holder, HELD))
    return cur.rowcount == 1


def expire_sync(conn: sqlite3.Connection, app: str, holder: str, at: str | datetime) -> bool:
    """``holder`` stops cleanly: its lease ends at ``at`` (held, so a survivor takes it over)."""
    at_db = to_db_time(at)
    cur = conn.execute("UPDATE ari_leases SET lease_until = ? WHERE app = ? AND holder = ? AND state = ?",
                       (at_db, app, holder, HELD))
    return cur.rowcount == 1


def record_takeover_sync(conn: sqlite3.Connection, channel_id: str, from_app: str, to_app: str,
                         at: str | datetime, outcome: str, detail: str | None = None) -> None:
    """What the survivor did with one channel of a dead instance; a moved call's row names
    its new application (``calls.ari_app``) in the same transaction."""
    if outcome not in TAKEOVER_OUTCOMES:
        raise ValueError(f"takeover outcome must be one of {', '.join(TAKEOVER_OUTCOMES)}, not {outcome!r}")
    at_db = to_db_time(at)
    with immediate(conn):
        conn.execute("INSERT INTO ari_takeovers (channel_id, from_app, to_app, taken_at, outcome, detail)"
                     " VALUES (?, ?, ?, ?, ?, ?)", (channel_id, from_app, to_app, at_db, outcome, detail))
        if outcome == "moved":
            conn.execute("UPDATE calls SET ari_app = ?, updated_at = ? WHERE channel_id = ? AND ended_at IS NULL",
                         (to_app, at_db, channel_id))


def takeovers_sync(conn: sqlite3.Connection, channel_id: str) -> list[dict]:
    return fetch_all(conn.execute("SELECT * FROM ari_takeovers WHERE channel_id = ? ORDER BY id", (channel_id,)))


class AriLeases:
    """Async repository (``db.ari_leases``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, app: str) -> Lease | None:
        return await self._db.run_in_connection(get_sync, app)

    async def acquire_own(self, app: str, holder: str, now: str | datetime, until: str | datetime,
                          node: str = "") -> Lease | None:
        return await self._db.run_in_connection(acquire_own_sync, app, holder, now, until, node)

    async def renew(self, holder: str, now: str | datetime, until: str | datetime) -> list[str]:
        return await self._db.run_in_connection(renew_sync, holder, now, until)

    async def expired(self, now: str | datetime, node: str | None = None) -> list[Lease]:
        return await self._db.run_in_connection(expired_sync, now, node)

    async def take_over(self, seen: Lease, holder: str, now: str | datetime, until: str | datetime) -> bool:
        return await self._db.run_in_connection(take_over_sync, seen, holder, now, until)

    async def release(self, app: str, holder: str, now: str | datetime) -> bool:
        return await self._db.run_in_connection(release_sync, app, holder, now)

    async def expire(self, app: str, holder: str, at: str | datetime) -> bool:
        return await self._db.run_in_connection(expire_sync, app, holder, at)

    async def record_takeover(self, channel_id: str, from_app: str, to_app: str, at: str | datetime,
                              outcome: str, detail: str | None = None) -> None:
        await self._db.run_in_connection(record_takeover_sync, channel_id, from_app, to_app, at, outcome, detail)

    async def takeovers(self, channel_id: str) -> list[dict]:
        return await self._db.run_in_connection(takeovers_sync, channel_id)
