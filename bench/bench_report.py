"""What the compliance report costs on a large database, against a bare count, same run.

    python bench/bench_report.py [--n 100000] [--rounds 5]

Seeds N completed calls spread over 61 days (October and November 2026, São Paulo time), each
with a protocol, a finalised recording, an SMS row with its DELIVRD receipt and a hand-off
answered by an agent, one customer request per 50 calls and one history request per 200,
then times, on one database:

* baseline: ``SELECT count(*) FROM calls WHERE started_at >= ? AND started_at < ?`` (the
  cheapest figure of the period, by the index on ``started_at``);
* the report's read: storage/report.py's one read transaction (its statements counted with
  SQLite's trace hook: a fixed number whatever N, never one per call);
* the whole report: that read, the figures (callproof/report/figures.py) and the CSV;
* the PDF and the HTML renderings alone (their size depends on the days, not the calls).

Medians over ``--rounds``, shown per 10,000 calls; the ratios are against the baseline of the
same run.  The last line is the figures as one JSON object.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callproof.config import Config
from callproof.report.figures import build_report, read_report, utc_bounds
from callproof.report.render_data import render_csv
from callproof.report.render_html import document
from callproof.report.render_pdf import render_pdf
from callproof.storage import SyncDatabase, connect_sync

FIRST, LAST = date(2026, 10, 1), date(2026, 11, 30)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
START = "2026-10-01T03:00:00.000000Z"  # 1 Oct 00:00 in São Paulo
SPAN_S = 61 * 86400


def seed(conn, n: int) -> None:
    step = SPAN_S / (n + 1)  # the last call before the period ends
    t = "strftime('%Y-%m-%dT%H:%M:%fZ', ?, '+' || ? || ' seconds')"
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO protocols (protocol, year, sequence, allocated_at)"
        f" VALUES (printf('%04d%013d', 2026, ?), 2026, ?, {t})",
        ((i, i, START, int(i * step)) for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO calls (id, channel_id, uniqueid, caller_number_raw, started_at, status, protocol,"
        " consent_outcome, protocol_read_finished_at, handed_off_at, ended_at, agent_answered_at, updated_at)"
        f" VALUES (?, 'c' || ?, 'u' || ?, '11987654321', {t}, 'completed', printf('%04d%013d', 2026, ?),"
        f" 'finished', {t}, {t}, {t}, {t}, {t})",
        ((i, i, i, START, int(i * step), i, START, int(i * step) + 30, START, int(i * step) + 40,
          START, int(i * step) + 600, START, int(i * step) + 40 + i % 300, START, int(i * step) + 600)
         for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO recordings (call_id, protocol, path, started_at, state)"
        f" VALUES (?, printf('%04d%013d', 2026, ?), '/r/' || ? || '.wav', {t}, 'finalised')",
        ((i, i, i, START, int(i * step) + 30) for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO sms_outbox (id, protocol, call_id, destination, language, body, state, created_at, updated_at,"
        f" dlr_state, dlr_at) VALUES (?, printf('%04d%013d', 2026, ?), ?, '+5511987654321', 'pt_BR', 'x', 'sent',"
        f" {t}, {t}, 'DELIVRD', {t})",
        ((i, i, i, START, int(i * step), START, int(i * step), START, int(i * step) + 90 + i % 7200)
         for i in range(1, n + 1)))
    conn.executemany(
        "INSERT INTO recording_requests (protocol, reference, opened_at, updated_at, closed_at, state)"
        f" VALUES (printf('%04d%013d', 2026, ?), 'bench', {t}, {t}, {t}, 'delivered')",
        ((i, START, int(i * step) + 3600, START, int(i * step) + 3600, START, int(i * step) + 86400 * (i % 12))
         for i in range(1, n + 1, 50)))
    conn.executemany(
        "INSERT INTO history_requests (subject_kind, subject_hash, received_at, due_at, produced_at, created_by)"
        f" VALUES ('cpf', 'h' || ?, {t}, {t}, {t}, 'bench')",
        ((i, START, int(i * step), START, int(i * step) + 5 * 86400, START, int(i * step) + 86400 * (i % 7))
         for i in range(1, n + 1, 200)))
    conn.execute("COMMIT")


def median_s(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(n: int, rounds: int) -> dict:
    config = Config()
    tz = config.general.tz
    start, end = utc_bounds(FIRST, LAST, tz)
    with tempfile.TemporaryDirectory() as tmp:
        conn = connect_sync(Path(tmp) / "bench.db")
        began = time.perf_counter()
        seed(conn, n)
        seeded_s = time.perf_counter() - began
        db = SyncDatabase(conn)
        bounds = (start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        baseline = median_s(lambda: conn.execute(
            "SELECT count(*) FROM calls WHERE started_at >= ? AND started_at < ?", bounds).fetchone(), rounds)

        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        rows = db.report.rows(start=start, end=end, grace_cutoff=NOW)
        conn.set_trace_callback(None)
        read = median_s(lambda: db.report.rows(start=start, end=end, grace_cutoff=NOW), rounds)
        whole = median_s(lambda: render_csv(read_report(db, config, FIRST, LAST, NOW)), rounds)
        report = build_report(rows, first=FIRST, last=LAST, tz=tz, targets=read_report(
            db, config, FIRST, LAST, NOW).targets, now=NOW)
        pdf = median_s(lambda: render_pdf(report), rounds)
        html = median_s(lambda: document(report), rounds)
        conn.close()
    per10k = 10_000 / n
    figures = {
        "calls": n, "seeded_s": round(seeded_s, 2), "report_calls_counted": report.total.calls,
        "read_statements": len(statements),
        "baseline_count_ms_per_10k": round(baseline * 1000 * per10k, 2),
        "read_ms_per_10k": round(read * 1000 * per10k, 2),
        "report_csv_ms_per_10k": round(whole * 1000 * per10k, 2),
        "read_vs_baseline": round(read / baseline, 1),
        "report_vs_baseline": round(whole / baseline, 1),
        "pdf_ms": round(pdf * 1000, 1), "html_ms": round(html * 1000, 1),
    }
    print(f"{n} calls seeded in {seeded_s:.1f} s; the report counts {report.total.calls}")
    print(f"the report's read: {len(statements)} SQL statements (BEGIN, 4 SELECTs, COMMIT), whatever N")
    print(f"baseline count      {figures['baseline_count_ms_per_10k']:8.2f} ms per 10k calls")
    print(f"report read         {figures['read_ms_per_10k']:8.2f} ms per 10k calls  "
          f"({figures['read_vs_baseline']}x the baseline)")
    print(f"report read + CSV   {figures['report_csv_ms_per_10k']:8.2f} ms per 10k calls  "
          f"({figures['report_vs_baseline']}x the baseline)")
    print(f"PDF rendering {figures['pdf_ms']} ms, HTML {figures['html_ms']} ms (61 days)")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(main(args.n, args.rounds)))
