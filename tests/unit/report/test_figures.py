"""The report's figures over the seeded two months, against the numbers worked out by hand in
tests/report_seed.py, and the period checks."""

from __future__ import annotations

from datetime import date

import pytest

from callproof.report.figures import MAX_DAYS, PeriodFigures, Report, read_report, utc_bounds
from callproof.storage import open_sync
from tests.report_seed import EXPECTED, FIRST, LAST, NOW, TZ


def figures(f: PeriodFigures) -> dict[str, object]:
    return {name: getattr(f, name) for name in EXPECTED["total"]}


def test_each_month_and_the_total_have_the_hand_worked_figures(report: Report):
    assert [m.label for m in report.months] == ["2026-10", "2026-11"]
    got = {"2026-10": figures(report.months[0]), "2026-11": figures(report.months[1]),
           "total": figures(report.total)}
    for period, want in EXPECTED.items():
        for name, value in want.items():
            assert got[period][name] == pytest.approx(value), (period, name)


def test_days_cover_the_period_one_row_each_and_add_up_to_the_months(report: Report):
    assert len(report.days) == 61
    assert report.days[0].label == "2026-10-01" and report.days[-1].label == "2026-11-30"
    assert sum(d.calls for d in report.days) == report.total.calls == 7


def test_a_call_at_23_59_local_counts_on_its_local_day(report: Report):
    by_day = {d.label: d for d in report.days}
    assert by_day["2026-10-05"].calls == 4  # A, B, D and C at 23:59 (02:59 UTC on the 6th)
    assert by_day["2026-10-05"].abandoned == 1  # C's
    assert by_day["2026-10-06"].calls == 0


def test_a_day_without_calls_shows_zeros_and_nothing_to_divide(report: Report):
    quiet = next(d for d in report.days if d.label == "2026-10-06")
    assert (quiet.calls, quiet.queued, quiet.answered) == (0, 0, 0)
    assert quiet.announcement_pct is None and quiet.sms_pct is None
    assert quiet.wait_median is None and quiet.wait_p95 is None and quiet.within_pct == [None, None]


def test_the_call_before_the_first_local_day_is_left_out(report: Report):
    # Z started 30 Sep 23:30 local, which is 1 Oct 02:30 UTC
    assert report.days[0].calls == 0 and report.total.calls == 7


def test_sms_at_24h_is_in_time_and_at_24h_plus_one_second_is_not(report: Report):
    oct5 = next(d for d in report.days if d.label == "2026-10-05")
    assert (oct5.protocol_given, oct5.sms_within) == (3, 2)  # A (60 s), C (24 h) yes; B (24 h + 1 s) no


def test_request_delivered_on_day_10_is_in_time_on_day_11_late(report: Report):
    oct5 = next(d for d in report.days if d.label == "2026-10-05")
    assert (oct5.requests_received, oct5.requests_in_time, oct5.requests_late) == (2, 1, 1)


def test_deadlines_are_the_rights_ones(seeded_config, tmp_path):
    """[rights] request_due_days is the one the report counts against: 11 days makes both in time."""
    from dataclasses import replace
    longer = replace(seeded_config, rights=replace(seeded_config.rights, request_due_days=11, history_due_days=6))
    with open_sync(longer) as db:
        r = read_report(db, longer, FIRST, LAST, NOW)
    assert (r.months[0].requests_in_time, r.months[0].requests_late) == (2, 0)
    assert r.total.histories_in_time == 2
    assert r.targets.request_due_days == 11 and r.targets.history_due_days == 6


def test_wait_thresholds_come_from_compliance(seeded_config):
    from dataclasses import replace
    es = replace(seeded_config, compliance=replace(seeded_config.compliance, wait_thresholds_seconds=(180,)))
    with open_sync(es) as db:
        r = read_report(db, es, FIRST, LAST, NOW)
    assert r.total.within_pct == [pytest.approx(60.0)]


@pytest.mark.parametrize(("first", "last", "names"), [
    (date(2026, 11, 2), date(2026, 11, 1), ("--to 2026-11-01", "--from 2026-11-02")),
    (date(2025, 1, 1), date(2026, 3, 1), ("--from 2025-01-01", "--to 2026-03-01", str(MAX_DAYS))),
])
def test_a_bad_period_names_the_options(first, last, names):
    with pytest.raises(ValueError) as exc:
        utc_bounds(first, last, TZ)
    for name in names:
        assert name in str(exc.value)


def test_the_local_days_are_the_bounds_in_utc():
    start, end = utc_bounds(date(2026, 10, 1), date(2026, 10, 31), TZ)
    assert (start.isoformat(), end.isoformat()) == ("2026-10-01T03:00:00+00:00", "2026-11-01T03:00:00+00:00")
