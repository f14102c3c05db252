"""The compliance report's figures, computed from the rows storage/report.py reads.

Every figure is a count of rows by the local day (``[general] timezone``) its call, recording
or request started on; percentages are computed from the counts when shown, so a month's
figure is its days' counts added, never an average of percentages.  Definitions
(docs/operations.md, "Compliance report"):

* announcement in full: ``consent_outcome = 'finished'``; protocol given: the reading of the
  protocol finished (``protocol_read_finished_at``); both as a share of the calls.
* protocol SMS within N h: its first DELIVRD receipt no later than N hours after the call
  started, as a share of the calls given a protocol.
* wait to agent: hand-off to agent answered, over the answered calls (median; p95 by nearest
  rank); "within T s": answered within T seconds, as a share of the callers who reached the
  queue (answered + abandoned), so a caller who gave up counts against every threshold.
* recordings kept (finalised, still there), deleted (by retention), held (a legal hold or an
  open request keeps it now).
* requests delivered in time: delivered by the end (23:59:59 local) of the day
  ``[rights] request_due_days`` local calendar days after the day they were received, the
  deadline the rights code enforces (callproof/rights/deadlines.py); late: delivered after it,
  or still open past it.  Histories in time: produced by ``[rights] history_due_days``, alike.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from callproof.rights.deadlines import due_at
from callproof.storage.report import ReportRows

#: The longest period one report covers (a year and a bit: a year's months, each in full).
MAX_DAYS = 400


@dataclass(frozen=True)
class Targets:
    wait_thresholds: tuple[int, ...] = (60, 180)
    sms_within_hours: int = 24
    request_due_days: int = 10
    history_due_days: int = 5

    @classmethod
    def from_config(cls, config: object) -> Targets:
        c, r = config.compliance, config.rights  # type: ignore[attr-defined]
        return cls(tuple(c.wait_thresholds_seconds), c.sms_within_hours, r.request_due_days, r.history_due_days)


@dataclass
class PeriodFigures:
    label: str  # "2026-10-03" (a day) or "2026-10" (a month)
    calls: int = 0
    announcement_full: int = 0
    protocol_given: int = 0
    sms_within: int = 0
    queued: int = 0  # reached the queue: answered + abandoned
    waits: list[float] = field(default_factory=list)  # seconds, answered calls
    within: list[int] = field(default_factory=list)  # answered within each threshold
    abandoned: int = 0
    recordings_kept: int = 0
    recordings_deleted: int = 0
    recordings_held: int = 0
    requests_received: int = 0
    requests_in_time: int = 0
    requests_late: int = 0
    histories_received: int = 0
    histories_in_time: int = 0

    @property
    def answered(self) -> int:
        return len(self.waits)

    @property
    def announcement_pct(self) -> float | None:
        return pct(self.announcement_full, self.calls)

    @property
    def protocol_pct(self) -> float | None:
        return pct(self.protocol_given, self.calls)

    @property
    def sms_pct(self) -> float | None:
        return pct(self.sms_within, self.protocol_given)

    @property
    def within_pct(self) -> list[float | None]:
        return [pct(n, self.queued) for n in self.within]

    @property
    def wait_median(self) -> float | None:
        return statistics.median(self.waits) if self.waits else None

    @property
    def wait_p95(self) -> float | None:
        if not self.waits:
            return None
        ordered = sorted(self.waits)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    def add(self, other: PeriodFigures) -> None:
        for name in ("calls", "announcement_full", "protocol_given", "sms_within", "queued", "abandoned",
                     "recordings_kept", "recordings_deleted", "recordings_held", "requests_received",
                     "requests_in_time", "requests_late", "histories_received", "histories_in_time"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.waits.extend(other.waits)
        self.within = [a + b for a, b in zip(self.within, other.within, strict=True)]


@dataclass(frozen=True)
class Report:
    first: date
    last: date
    timezone: str
    generated_at: datetime
    targets: Targets
    days: list[PeriodFigures]
    months: list[PeriodFigures]
    total: PeriodFigures


def pct(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in per cent; None when there is nothing to divide (shown as "—")."""
    return 100.0 * part / whole if whole else None


def utc_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[first 00:00, last + 1 day 00:00)`` local time, in UTC.

    Raises ValueError naming ``--from``/``--to`` when the period is backwards or longer than
    :data:`MAX_DAYS`."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    if (days := (last - first).days + 1) > MAX_DAYS:
        raise ValueError(f"--from {first} --to {last} spans {days} days; a report covers at most {MAX_DAYS}:"
                         " ask for a shorter period")
    start = datetime.combine(first, time(0), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def _utc(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = _utc(start), _utc(end)
    return max(0.0, (b - a).total_seconds()) if a and b else None


def build_report(rows: ReportRows, *, first: date, last: date, tz: ZoneInfo, targets: Targets,
                 now: datetime) -> Report:
    """The report of the local days ``first``..``last`` (inclusive) from ``rows``."""
    n = len(targets.wait_thresholds)
    days: dict[date, PeriodFigures] = {}
    d = first
    while d <= last:
        days[d] = PeriodFigures(d.isoformat(), within=[0] * n)
        d += timedelta(days=1)

    def day_of(text: str) -> PeriodFigures | None:
        return days.get(datetime.fromisoformat(text).astimezone(tz).date())

    sms_limit = targets.sms_within_hours * 3600.0
    for started, consent, protocol_at, delivered_at, handed_off, answered, abandoned in rows.calls:
        f = day_of(started)
        if f is None:
            continue
        f.calls += 1
        f.announcement_full += consent == "finished"
        if protocol_at:
            f.protocol_given += 1
            latency = _seconds(started, delivered_at)
            f.sms_within += latency is not None and latency <= sms_limit
        wait = _seconds(handed_off, answered)
        if wait is not None:
            f.queued += 1
            f.waits.append(wait)
            for i, threshold in enumerate(targets.wait_thresholds):
                f.within[i] += wait <= threshold
        elif abandoned:
            f.queued += 1
            f.abandoned += 1
    for started, state, held in rows.recordings:
        if (f := day_of(started)) is None:
            continue
        f.recordings_kept += state == "finalised"
        f.recordings_deleted += state == "deleted"
        f.recordings_held += bool(held) and state != "deleted"
    for opened, state, closed in rows.requests:
        if (f := day_of(opened)) is None:
            continue
        f.requests_received += 1
        deadline = due_at(opened, targets.request_due_days, tz)
        if state == "delivered" and closed:
            in_time = datetime.fromisoformat(closed) <= deadline
            f.requests_in_time += in_time
            f.requests_late += not in_time
        elif not closed and now > deadline:
            f.requests_late += 1
    for received, produced in rows.histories:
        if (f := day_of(received)) is None:
            continue
        f.histories_received += 1
        f.histories_in_time += bool(produced) and (
            datetime.fromisoformat(produced) <= due_at(received, targets.history_due_days, tz))

    months: dict[str, PeriodFigures] = {}
    total = PeriodFigures(f"{first.isoformat()} to {last.isoformat()}", within=[0] * n)
    for day, f in days.items():
        month = months.setdefault(day.strftime("%Y-%m"), PeriodFigures(day.strftime("%Y-%m"), within=[0] * n))
        month.add(f)
        total.add(f)
    return Report(first, last, str(tz), now, targets, list(days.values()), list(months.values()), total)


def read_report(db: object, config: object, first: date, last: date, now: datetime) -> Report:
    """The report of ``first``..``last`` read through the sync handle ``db`` (a
    :class:`callproof.storage.SyncDatabase`: the CLI's, or the web pool's thread's)."""
    tz: ZoneInfo = config.general.tz  # type: ignore[attr-defined]
    start, end = utc_bounds(first, last, tz)
    grace = timedelta(days=config.retention.request_grace_days)  # type: ignore[attr-defined]
    rows = db.report.rows(start=start, end=end, grace_cutoff=now - grace)  # type: ignore[attr-defined]
    return build_report(rows, first=first, last=last, tz=tz, targets=Targets.from_config(config), now=now)
