"""The figures whose truth is in the database, read at scrape time.

:class:`StoredFigures` is a prometheus-client custom collector: :meth:`refresh` reads one
snapshot through storage (``db.figures``, storage/figures.py: all the SQL is there) at most
once per ``cache_seconds``, and :meth:`collect` turns the last snapshot into metric families.
Because the figures are counted from the rows, they survive restarts, and two processes on
one database (``callproof run`` and ``callproof fastagi``) report the same numbers.

Label values come from the columns (``calls.status``, ``recordings.state``, ...), so a state
a later version adds appears without a change here; the states known today are always
exported (0 when no row has them), so alerts and dashboards see a series from the start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from callproof.storage.call_status import CallStatus
from callproof.storage.figures import Figures, StoredHistogram
from callproof.storage.timefmt import parse_db_time

from .process import AGENT_BUCKETS

#: SMS from queued to accepted / delivered (seconds): the 24 h an SMS rule allows is the last bound.
SMS_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 24 * 3600.0)
FINAL_STATUSES = ("completed", "failed", "abandoned_in_consent", "abandoned_in_protocol")
RECORDING_STATES = ("recording", "finalised", "empty", "failed", "missing", "deleted")
CONSENT_OUTCOMES = ("finished", "caller_left")


def _with_known(counts: Mapping[str, int], known: Iterable[str]) -> dict[str, int]:
    return {**dict.fromkeys(known, 0), **counts}


def _histogram(name: str, help_text: str, h: StoredHistogram | None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text)
    if h is not None:
        buckets = [(repr(float(b)), n) for b, n in zip(h.bounds, h.buckets, strict=True)]
        family.add_metric([], [*buckets, ("+Inf", h.count)], h.total)
    return family


def families(f: Figures, now: datetime | None = None, move_late_seconds: float | None = None) -> Iterator[Metric]:
    """The metric families of one snapshot (names documented in docs/operations.md); ``now``
    dates the oldest recording awaiting the store, ``move_late_seconds`` is when it is late."""
    ended = CounterMetricFamily("callproof_calls_ended", "Calls that ended, by final status (calls.status).",
                                labels=["status"])
    for status, n in sorted(_with_known(f.calls_ended, FINAL_STATUSES).items()):
        ended.add_metric([status], n)
    yield ended
    active = GaugeMetricFamily("callproof_calls_active", "Calls not ended yet, by the step they are in.",
                               labels=["status"])
    not_final = [s.value for s in CallStatus if s.value not in FINAL_STATUSES]
    for status, n in sorted(_with_known(f.calls_active, not_final).items()):
        active.add_metric([status], n)
    yield active
    consent = CounterMetricFamily("callproof_consent_outcomes",
                                  "Recording announcements by outcome (finished in full, or the caller left).",
                                  labels=["outcome"])
    for outcome, n in sorted(_with_known(f.consent, CONSENT_OUTCOMES).items()):
        consent.add_metric([outcome], n)
    yield consent
    recordings = GaugeMetricFamily("callproof_recordings", "Recordings by state (recordings.state).",
                                   labels=["state"])
    for state, n in sorted(_with_known(f.recordings, RECORDING_STATES).items()):
        recordings.add_metric([state], n)
    yield recordings
    deleted = CounterMetricFamily("callproof_retention_deleted", "What retention has deleted or anonymised.",
                                  labels=["kind"])
    deleted.add_metric(["recording"], f.recordings.get("deleted", 0))
    deleted.add_metric(["export"], f.exports_deleted)
    deleted.add_metric(["call_record_anonymised"], f.calls_anonymised)
    yield deleted
    for key, help_text in (("open", "Customers' recording requests not closed."),
                           ("due_soon", "Open requests due within [rights] due_soon_days."),
                           ("overdue", "Open requests past their due date.")):
        g = GaugeMetricFamily(f"callproof_requests_{key}", help_text)
        g.add_metric([], f.requests.get(key, 0))
        yield g
    queue = CounterMetricFamily("callproof_queue_outcomes",
                                "Handed-off calls an agent answered, or whose caller gave up waiting.",
                                labels=["outcome"])
    for outcome in ("answered", "abandoned"):
        queue.add_metric([outcome], f.queue.get(outcome, 0))
    yield queue
    yield _histogram("callproof_agent_wait_seconds",
                     "Hand-off to agent answered, over every answered call in the database.", f.agent_wait)
    from callproof.sms.metrics import sms_families

    yield from sms_families(f.sms)
    yield _histogram("callproof_sms_accepted_seconds",
                     "From the protocol SMS being queued to the gateway accepting it.", f.sms_accepted)
    yield _histogram("callproof_sms_delivered_seconds",
                     "From the protocol SMS being queued to its DELIVRD receipt.", f.sms_delivery)
    if f.store_backlog is not None:
        awaiting = GaugeMetricFamily("callproof_recordings_awaiting_move",
                                     "Finished recordings whose file is still only on the node that recorded them "
                                     "(not yet in the shared recordings store), by node.", labels=["node"])
        errors = GaugeMetricFamily("callproof_recordings_move_errors",
                                   "Of those, the ones whose last move failed (recordings.move_error), by node.",
                                   labels=["node"])
        oldest = GaugeMetricFamily("callproof_recordings_oldest_awaiting_move_seconds",
                                   "Age of the oldest of them (since it was finalised), by node: it grows when the "
                                   "node's mover has stopped, with no move error to show.", labels=["node"])
        for node, (n, failed, oldest_at) in sorted(f.store_backlog.items()):
            awaiting.add_metric([node], n)
            errors.add_metric([node], failed)
            age = (now or datetime.now(UTC)) - parse_db_time(oldest_at) if oldest_at else None
            oldest.add_metric([node], max(0.0, age.total_seconds()) if age is not None else 0.0)
        yield awaiting
        yield errors
        yield oldest
        if move_late_seconds is not None:
            late = GaugeMetricFamily("callproof_recordings_move_late_seconds",
                                     "The age past which a recording awaiting the store is late: "
                                     "10 x [recording] move_interval_seconds (callproof doctor's threshold too).")
            late.add_metric([], move_late_seconds)
            yield late


class StoredFigures(Collector):
    """The database figures, cached between reads.

    Scrape cost stays bounded on a large database: the read runs on storage's own read-only
    connection and thread (calls and the SMS sender never wait behind it); a scrape waits for a
    fresh read at most ``wait_seconds`` and is otherwise served the previous snapshot while the
    read finishes; and reads are at least ``READ_SPACING`` times their own duration apart, so
    the database spends at most about a tenth of its time on them whatever the scrape rate."""

    READ_SPACING = 10.0

    def __init__(self, db: Any, *, soon_until: Callable[[datetime], datetime], cache_seconds: float = 5.0,
                 wait_seconds: float = 2.0, clock: Callable[[], datetime] | None = None,
                 store_backlog: bool = False, move_late_seconds: float | None = None) -> None:
        self.db = db
        self.store_backlog = store_backlog  # [recording] store set: the per-node backlog is read too
        self.move_late_seconds = move_late_seconds  # callproof.store.late_after_seconds(config)
        self.soon_until = soon_until
        self.cache_seconds = cache_seconds
        self.wait_seconds = wait_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self._snapshot: Figures | None = None
        self._read_at = float("-inf")
        self._read_seconds = 0.0
        self._reading: asyncio.Future[None] | None = None
        self.reads = 0  # how many times the database was read (tests, bench)
        self.stale_serves = 0  # scrapes answered with the previous snapshot (a read took too long)

    def _fresh(self) -> bool:
        spacing = max(self.cache_seconds, self.READ_SPACING * self._read_seconds) if self.cache_seconds else 0.0
        return self._snapshot is not None and time.monotonic() - self._read_at < spacing

    async def _read(self) -> None:
        began, now = time.monotonic(), self.clock()
        snapshot = await self.db.figures.read(now=now, soon_until=self.soon_until(now),
                                              sms_bounds=SMS_BUCKETS, wait_bounds=AGENT_BUCKETS,
                                              store_backlog=self.store_backlog)
        self._snapshot, self._read_at = snapshot, time.monotonic()
        self._read_seconds = self._read_at - began
        self.reads += 1

    async def refresh(self) -> None:
        """A fresh snapshot, unless the last one is recent; concurrent scrapes share one read."""
        if self._reading is None or self._reading.done():
            if self._fresh():
                return
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(lambda f: f.cancelled() or f.exception())
        if self._snapshot is None:  # nothing to serve yet: wait for the first read
            await asyncio.shield(self._reading)
            return
        try:
            async with asyncio.timeout(self.wait_seconds):
                await asyncio.shield(self._reading)
        except TimeoutError:
            self.stale_serves += 1

    def collect(self) -> Iterator[Metric]:
        if self._snapshot is None:
            return
        yield from families(self._snapshot, self.clock(), self.move_late_seconds if self.store_backlog else None)
        age = GaugeMetricFamily("callproof_metrics_figures_age_seconds",
                                "Age of the database figures on this page (they are re-read every few seconds).")
        age.add_metric([], max(0.0, time.monotonic() - self._read_at))
        yield age
        took = GaugeMetricFamily("callproof_metrics_figures_read_seconds", "How long the last read of them took.")
        took.add_metric([], self._read_seconds)
        yield took

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: registering does not call collect() (no read yet)
