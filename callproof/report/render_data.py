"""The report as data: CSV (one row per month, then per day, with the formatted cells a
spreadsheet user reads, in the report's locale) and JSON (the counts themselves, and the
derived figures, for anything that computes further; the same in every locale).

Both keep stable machine-readable keys: the CSV's header is the columns' ``key`` (the JSON's
field names), ``period`` is the ISO day or month (or ``total``'s range) and ``kind`` is
``month``, ``day`` or ``total``, whatever the language.  Only the cells follow the locale
(``75.0%`` in en, ``75,0 %`` in es)."""

from __future__ import annotations

import csv
import io
import json

from .figures import PeriodFigures, Report
from .layout import columns, words


def render_csv(report: Report, locale: str = "en") -> str:
    cols = columns(report, words(report, locale))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "kind"] + [c.key for c in cols])
    for kind, rows in (("month", report.months), ("day", report.days), ("total", [report.total])):
        for f in rows:
            writer.writerow([f.label, kind] + [c.cell(f) for c in cols])
    return out.getvalue()


def _period(f: PeriodFigures, thresholds: tuple[int, ...]) -> dict:
    data = {k: v for k, v in vars(f).items() if k not in ("waits", "within")}
    data.update(answered=f.answered, announcement_pct=f.announcement_pct, protocol_pct=f.protocol_pct,
                sms_pct=f.sms_pct, wait_median_seconds=f.wait_median, wait_p95_seconds=f.wait_p95,
                answered_within={str(t): {"calls": n, "pct": p}
                                 for t, n, p in zip(thresholds, f.within, f.within_pct, strict=True)})
    return data


def render_json(report: Report) -> str:
    t = report.targets
    return json.dumps({
        "from": report.first.isoformat(), "to": report.last.isoformat(), "timezone": report.timezone,
        "generated_at": report.generated_at.isoformat(),
        "targets": {"wait_thresholds_seconds": list(t.wait_thresholds), "sms_within_hours": t.sms_within_hours,
                    "request_due_days": t.request_due_days, "history_due_days": t.history_due_days},
        "total": _period(report.total, t.wait_thresholds),
        "months": [_period(f, t.wait_thresholds) for f in report.months],
        "days": [_period(f, t.wait_thresholds) for f in report.days],
    }, indent=2, ensure_ascii=False) + "\n"
