"""What every rendering of the report shows, in one place: the table's columns (heading and
formatted cell) and the charts (title, one value per day).  The HTML, PDF and CSV renderers
draw these; none of them decides what a figure is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .figures import PeriodFigures, Report

NONE = "—"  # nothing to divide: no calls, no queued callers


def fmt_pct(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f} %"


def fmt_seconds(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f} s"


@dataclass(frozen=True)
class Column:
    heading: str
    cell: Callable[[PeriodFigures], str]


def columns(report: Report) -> list[Column]:
    t = report.targets
    cols = [
        Column("Calls", lambda f: str(f.calls)),
        Column("Announcement in full", lambda f: fmt_pct(f.announcement_pct)),
        Column("Protocol given", lambda f: fmt_pct(f.protocol_pct)),
        Column(f"Protocol SMS within {t.sms_within_hours} h", lambda f: fmt_pct(f.sms_pct)),
        Column("Wait to agent, median", lambda f: fmt_seconds(f.wait_median)),
        Column("Wait to agent, p95", lambda f: fmt_seconds(f.wait_p95)),
    ]
    for i, threshold in enumerate(t.wait_thresholds):
        cols.append(Column(f"Answered within {threshold} s", _within(i)))
    cols += [
        Column("Abandoned while waiting", lambda f: str(f.abandoned)),
        Column("Recordings kept", lambda f: str(f.recordings_kept)),
        Column("Recordings deleted", lambda f: str(f.recordings_deleted)),
        Column("Recordings held", lambda f: str(f.recordings_held)),
        Column("Requests received", lambda f: str(f.requests_received)),
        Column(f"Requests delivered within {t.request_due_days} days", lambda f: str(f.requests_in_time)),
        Column("Requests late", lambda f: str(f.requests_late)),
        Column("Histories requested", lambda f: str(f.histories_received)),
        Column(f"Histories within {t.history_due_days} days", lambda f: str(f.histories_in_time)),
    ]
    return cols


def _within(i: int) -> Callable[[PeriodFigures], str]:
    return lambda f: fmt_pct(f.within_pct[i])


@dataclass(frozen=True)
class Chart:
    title: str
    labels: list[str]  # one per day: "03" (day of month), the month shown in the title range
    values: list[float | None]
    percent: bool  # 0..100 scale; otherwise 0..the largest value

    @property
    def top(self) -> float:
        if self.percent:
            return 100.0
        return max([v for v in self.values if v is not None] or [0.0]) or 1.0


def charts(report: Report) -> list[Chart]:
    days, t = report.days, report.targets
    labels = [f.label for f in days]
    last = len(t.wait_thresholds) - 1
    return [
        Chart("Calls per day", labels, [float(f.calls) for f in days], False),
        Chart("Protocol given (%)", labels, [f.protocol_pct for f in days], True),
        Chart(f"Protocol SMS delivered within {t.sms_within_hours} h (%)", labels, [f.sms_pct for f in days], True),
        Chart(f"Answered within {t.wait_thresholds[last]} s (%)", labels,
              [f.within_pct[last] for f in days], True),
    ]


def title(report: Report) -> str:
    return f"Compliance report {report.first.isoformat()} to {report.last.isoformat()}"


def subtitle(report: Report) -> str:
    generated = report.generated_at.astimezone(ZoneInfo(report.timezone))
    return f"Days in {report.timezone}; generated {generated:%Y-%m-%d %H:%M %Z}"
