"""storage/report.py: the rows of a period read in one transaction, bounded."""

from __future__ import annotations

import pytest

from callproof.report.figures import utc_bounds
from callproof.storage import connect_sync
from callproof.storage.report import ReportTooLarge, report_rows_sync
from tests.report_seed import FIRST, LAST, NOW, TZ, seed_two_months


@pytest.fixture
def conn(tmp_path):
    c = connect_sync(tmp_path / "r.db")
    seed_two_months(c)
    yield c
    c.close()


def test_the_rows_of_the_period_only_in_one_read_transaction(conn):
    start, end = utc_bounds(FIRST, LAST, TZ)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    rows = report_rows_sync(conn, start=start, end=end, grace_cutoff=NOW)
    conn.set_trace_callback(None)
    assert [s.split()[0] for s in statements] == ["BEGIN", "SELECT", "SELECT", "SELECT", "SELECT", "COMMIT"]
    assert (len(rows.calls), len(rows.recordings), len(rows.requests), len(rows.histories)) == (7, 5, 4, 2)
    assert not conn.in_transaction


def test_a_period_with_more_rows_than_the_limit_is_refused_and_the_transaction_ends(conn):
    start, end = utc_bounds(FIRST, LAST, TZ)
    with pytest.raises(ReportTooLarge, match="more than 6 calls: ask for a shorter period"):
        report_rows_sync(conn, start=start, end=end, grace_cutoff=NOW, limit=6)
    assert not conn.in_transaction
    assert len(report_rows_sync(conn, start=start, end=end, grace_cutoff=NOW, limit=7).calls) == 7


def test_both_engines_read_the_same_rows(target):
    """The report's SQL on SQLite and on PostgreSQL ([storage] url): the same seeded rows read."""
    c = connect_sync(target)
    try:
        seed_two_months(c)
        start, end = utc_bounds(FIRST, LAST, TZ)
        rows = report_rows_sync(c, start=start, end=end, grace_cutoff=NOW)
        assert (len(rows.calls), len(rows.recordings), len(rows.requests), len(rows.histories)) == (7, 5, 4, 2)
        with pytest.raises(ReportTooLarge):
            report_rows_sync(c, start=start, end=end, grace_cutoff=NOW, limit=6)
    finally:
        c.close()
