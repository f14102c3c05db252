"""The figures whose truth is in the database, for the metrics endpoint (callproof/metrics/).

One read, one transaction (a consistent snapshot), every count grouped by the column it
comes from: a status a later version adds shows up as a new label value without a change
here.  Each query is an aggregate over an indexed or small table; the caller caches the
result for a few seconds so a scrape every few seconds costs one read, not one per scrape
per process.

Latency histograms read from stored timestamps (differences in seconds, :mod:`.dialect`)
are cumulative bucket counts, like a Prometheus histogram: ``buckets[i]`` counts the
values <= ``bounds[i]``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .dialect import dialect_of
from .outbox_receipts import counters_sync
from .requests import count_open_sync
from .timefmt import to_db_time

if TYPE_CHECKING:
    from .db import Database


@dataclass(frozen=True)
class StoredHistogram:
    bounds: tuple[float, ...]
    buckets: tuple[int, ...]  # cumulative, one per bound
    count: int
    total: float


@dataclass(frozen=True)
class Figures:
    calls_ended: dict[str, int] = field(default_factory=dict)  # final status -> calls
    calls_active: dict[str, int] = field(default_factory=dict)  # status -> calls not ended yet
    consent: dict[str, int] = field(default_factory=dict)  # consent_outcome -> calls
    recordings: dict[str, int] = field(default_factory=dict)  # state -> recordings
    exports_deleted: int = 0
    calls_anonymised: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # open / overdue / due_soon
    sms: dict[str, dict[str, int]] = field(default_factory=dict)  # outbox counters_sync()
    queue: dict[str, int] = field(default_factory=dict)  # answered / abandoned -> calls
    sms_accepted: StoredHistogram | None = None  # queued -> the gateway accepted it
    sms_delivery: StoredHistogram | None = None  # queued -> the handset's DELIVRD receipt
    agent_wait: StoredHistogram | None = None
    #: node -> (finished recordings not yet in the shared store, how many with a move_error, the
    #: oldest one's finalised time); None when ``[recording] store`` is not set (nothing is to move)
    store_backlog: dict[str, tuple[int, int, str | None]] | None = None


def _grouped(conn: sqlite3.Connection, sql: str) -> dict[str, int]:
    return {str(k): int(n) for k, n in conn.execute(sql).fetchall() if k is not None}


def _histogram(conn: sqlite3.Connection, table: str, start: str, end: str, where: str,
               bounds: Sequence[float]) -> StoredHistogram:
    dialect = dialect_of(conn)
    seconds = dialect.seconds_between(end, start)
    sums = ", ".join(f"coalesce(sum(CASE WHEN s <= {float(b)!r} THEN 1 ELSE 0 END), 0)" for b in bounds)
    row = conn.execute(
        f"SELECT count(*), coalesce(sum(s), 0.0){', ' + sums if sums else ''}"
        f" FROM (SELECT {dialect.greatest('0.0', seconds)} AS s FROM {table} WHERE {where}) AS stored").fetchone()
    return StoredHistogram(tuple(bounds), tuple(int(n) for n in row[2:]), int(row[0]), float(row[1]))


def figures_sync(conn: sqlite3.Connection, *, now: str | datetime, soon_until: str | datetime,
                 sms_bounds: Sequence[float], wait_bounds: Sequence[float],
                 store_backlog: bool = False) -> Figures:
    """Everything the metrics endpoint reads from storage, in one read transaction
    (``store_backlog``: the shared store's per-node backlog too)."""
    from .recording_store import backlog_by_node_sync

    conn.execute("BEGIN")
    try:
        return Figures(
            calls_ended=_grouped(conn, "SELECT status, count(*) FROM calls WHERE ended_at IS NOT NULL GROUP BY status"),
            calls_active=_grouped(conn, "SELECT status, count(*) FROM calls WHERE ended_at IS NULL GROUP BY status"),
            consent=_grouped(conn, "SELECT consent_outcome, count(*) FROM calls GROUP BY consent_outcome"),
            recordings=_grouped(conn, "SELECT state, count(*) FROM recordings GROUP BY state"),
            exports_deleted=conn.execute(
                "SELECT count(*) FROM request_exports WHERE deleted_at IS NOT NULL").fetchone()[0],
            calls_anonymised=conn.execute(
                "SELECT count(*) FROM calls WHERE anonymised_at IS NOT NULL").fetchone()[0],
            requests=count_open_sync(conn, now=to_db_time(now), soon_until=to_db_time(soon_until)),
            sms=counters_sync(conn),
            queue={"answered": conn.execute(
                       "SELECT count(*) FROM calls WHERE agent_answered_at IS NOT NULL").fetchone()[0],
                   "abandoned": conn.execute(
                       "SELECT count(*) FROM calls WHERE queue_abandoned_at IS NOT NULL").fetchone()[0]},
            sms_accepted=_histogram(conn, "sms_outbox o JOIN sms_attempts a ON a.outbox_id = o.id",
                                    "o.created_at", "a.finished_at", "a.outcome = 'accepted'", sms_bounds),
            sms_delivery=_histogram(conn, "sms_outbox", "created_at", "dlr_at",
                                    "dlr_state = 'DELIVRD' AND dlr_at IS NOT NULL", sms_bounds),
            agent_wait=_histogram(conn, "calls", "handed_off_at", "agent_answered_at",
                                  "agent_answered_at IS NOT NULL AND handed_off_at IS NOT NULL", wait_bounds),
            store_backlog=backlog_by_node_sync(conn) if store_backlog else None,
        )
    finally:
        conn.execute("COMMIT")


class FiguresReader:
    """Async repository (``db.figures``).

    The read runs on a read-only connection of its own, on a thread of its own: on a large
    database it is a scan of the calls, and it must never queue the SMS sender's or a call's
    statements behind it (WAL: a reader blocks no writer).  An in-memory database has one
    connection, which it shares."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one read at a time on the connection

    def _read_sync(self, **kw: object) -> Figures:
        with self._lock:
            if self._conn is None:
                self._conn = self._db.open_reader_sync()
            return figures_sync(self._conn, **kw)  # type: ignore[arg-type]

    async def read(self, *, now: str | datetime, soon_until: str | datetime, sms_bounds: Sequence[float],
                   wait_bounds: Sequence[float], store_backlog: bool = False) -> Figures:
        if self._db.path == ":memory:":
            return await self._db.run_in_connection(figures_sync, now=now, soon_until=soon_until,
                                                    sms_bounds=sms_bounds, wait_bounds=wait_bounds,
                                                    store_backlog=store_backlog)
        return await asyncio.to_thread(self._read_sync, now=now, soon_until=soon_until, sms_bounds=sms_bounds,
                                       wait_bounds=wait_bounds, store_backlog=store_backlog)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
