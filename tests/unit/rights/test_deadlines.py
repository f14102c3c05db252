"""Deadlines in local calendar days: month ends, leap years, year end, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from callproof.rights.deadlines import days_remaining, deadline_status, due_at

SP = ZoneInfo("America/Sao_Paulo")   # UTC-3, no DST since 2019
MAD = ZoneInfo("Europe/Madrid")      # CET/CEST


def local(tz, *args):
    return datetime(*args, tzinfo=tz)


@pytest.mark.parametrize("received, days, due_local", [
    ((2026, 1, 25, 10, 0), 10, (2026, 2, 4)),     # across a 31-day month end
    ((2026, 2, 25, 10, 0), 10, (2026, 3, 7)),     # non-leap February (28 days)
    ((2028, 2, 25, 10, 0), 10, (2028, 3, 6)),     # leap February (29 days)
    ((2028, 2, 19, 10, 0), 10, (2028, 2, 29)),    # due on the leap day itself
    ((2026, 12, 28, 10, 0), 10, (2027, 1, 7)),    # across the year end
    ((2026, 4, 30, 23, 59), 5, (2026, 5, 5)),     # late evening counts as that local day
    ((2026, 1, 31, 0, 0), 1, (2026, 2, 1)),
])
def test_due_at_counts_local_calendar_days_in_sao_paulo(received, days, due_local):
    due = due_at(local(SP, *received), days, SP)
    assert due.tzinfo is not None and due.utcoffset().total_seconds() == 0
    assert due.astimezone(SP) == datetime(*due_local, 23, 59, 59, tzinfo=SP)
    assert due == datetime(*due_local, 23, 59, 59, tzinfo=SP).astimezone(UTC)


def test_local_day_not_utc_day_decides():
    # 01:30 UTC on Feb 1 is still Jan 31 in São Paulo (UTC-3)
    due = due_at(datetime(2026, 2, 1, 1, 30, tzinfo=UTC), 10, SP)
    assert due.astimezone(SP).date().isoformat() == "2026-02-10"
    assert due == datetime(2026, 2, 11, 2, 59, 59, tzinfo=UTC)


def test_accepts_the_stored_string_form():
    assert due_at("2026-01-25T13:00:00.000000Z", 10, SP) == datetime(2026, 2, 5, 2, 59, 59, tzinfo=UTC)


def test_refuses_naive_times_and_bad_days():
    with pytest.raises(ValueError, match="naive"):
        due_at(datetime(2026, 1, 1, 12), 10, SP)  # noqa: DTZ001 -- naive on purpose: refused
    with pytest.raises(ValueError, match="days"):
        due_at(local(SP, 2026, 1, 1, 12), -1, SP)


@pytest.mark.parametrize("received, due_local, utc_offset_hours", [
    # Spring forward on Sun 29 Mar 2026 (02:00 CET -> 03:00 CEST): due after it, in CEST
    ((2026, 3, 25, 9, 0), (2026, 4, 4), 2),
    # Received on the DST day itself, in the hour before the jump
    ((2026, 3, 29, 1, 30), (2026, 4, 8), 2),
    # Fall back on Sun 25 Oct 2026 (03:00 CEST -> 02:00 CET): due after it, in CET
    ((2026, 10, 20, 9, 0), (2026, 10, 30), 1),
    # Received in the repeated hour (02:30, second occurrence)
    ((2026, 10, 25, 2, 30), (2026, 11, 4), 1),
])
def test_dst_changes_do_not_move_the_deadline_in_madrid(received, due_local, utc_offset_hours):
    due = due_at(local(MAD, *received), 10, MAD)
    in_madrid = due.astimezone(MAD)
    assert (in_madrid.date(), in_madrid.time().isoformat()) == (date(*due_local), "23:59:59")
    assert in_madrid.utcoffset().total_seconds() == utc_offset_hours * 3600


def test_ten_days_over_a_dst_change_is_not_240_hours():
    received = local(MAD, 2026, 3, 25, 23, 30)
    due = due_at(received, 10, MAD)
    # 10 days 00:29:59 on the wall clock, one hour less in real time (the lost hour)
    assert (due - received).total_seconds() == 10 * 24 * 3600 + 29 * 60 + 59 - 3600


def test_sao_paulo_old_dst_dates_are_plain_now():
    # Brazil had DST until 2019 (it started in November); 2026 has none
    due = due_at(local(SP, 2026, 11, 1, 12, 0), 10, SP)
    assert due == datetime(2026, 11, 12, 2, 59, 59, tzinfo=UTC)


def test_days_remaining_and_status():
    due = due_at(local(SP, 2026, 1, 25, 10, 0), 10, SP)   # end of Feb 4 local
    assert days_remaining(due, local(SP, 2026, 1, 25, 11, 0), SP) == 10
    assert days_remaining(due, local(SP, 2026, 2, 2, 0, 0), SP) == 2
    assert days_remaining(due, local(SP, 2026, 2, 4, 23, 59), SP) == 0
    assert days_remaining(due, local(SP, 2026, 2, 5, 0, 0), SP) == -1
    assert deadline_status(due, local(SP, 2026, 1, 30, 12, 0), SP, 2) == "on_time"
    assert deadline_status(due, local(SP, 2026, 2, 2, 0, 0), SP, 2) == "due_soon"
    assert deadline_status(due, local(SP, 2026, 2, 4, 23, 59, 59), SP, 2) == "due_soon"
    assert deadline_status(due, local(SP, 2026, 2, 5, 0, 0, 0), SP, 2) == "overdue"
    assert deadline_status(due, local(SP, 2026, 2, 3, 0, 0), SP, 0) == "on_time"
    assert deadline_status(due, "2026-02-05T02:59:59.000000Z", SP, 0) == "due_soon"
    assert deadline_status(due, "2026-02-05T03:00:00.000000Z", SP, 0) == "overdue"
