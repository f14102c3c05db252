"""Retention sweep vs ``find ROOT -type f -mtime +90 -delete``, same run.

    python bench/bench_retention.py [--n 100000] [--big 1000000] [--batch 500]

1. Two identical trees of N small expired files (16 bytes, mtime 100 days
   ago, 100 files per folder in YYYY/MM/DD-like folders).  Tree A has a full
   database (call + protocol + recording row each, retention ended); tree B
   has nothing (files created interleaved, so neither tree is warmer in the
   cache).  ``find B -type f -mtime +90 -delete`` is the baseline;
   ``callproof retention sweep`` (its own process, as cron runs it) sweeps
   A doing everything find does not: mark/unlink/record in batches, one
   hash-chained audit entry per deletion, the orphan/missing scan, the
   call-record pass.  The figure is the ratio of wall times (target <= 1.5):
   the median of the per-round ratios over ``--rounds`` rounds (fresh trees
   each round) that alternate which of the two runs first.  Each round prints
   the 1-minute load average, since a loaded machine moves both times.
2. Peak memory (max RSS of the sweep process, from wait4) at N rows and at
   BIG rows.  To keep the BIG run practical its rows have **no files**: each
   goes through the same mark -> unlink attempt -> record path, ending as
   'missing' with an audit entry instead of 'deleted'.  Flat memory means the
   two peaks are close (ratio ~1), not 10x apart.

Nothing is asserted; the last line is the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callproof.storage import connect_sync  # noqa: E402
from tests.retention_helpers import expired_rows  # noqa: E402

NOW = datetime.now(UTC)
ENV = {**os.environ, "PYTHONPATH": str(REPO), "CALLPROOF_ARI_PASSWORD": "bench-ari-secret-1",
       "CALLPROOF_AMI_PASSWORD": "bench-ami-secret-1"}
ENV.pop("CALLPROOF_CONFIG", None)


def rel_path(i: int) -> str:
    return f"2026/{i // 10000:02d}/{(i // 100) % 100:02d}/2026{i + 1:013d}_5511900000000_x.wav"


def make_files(roots: list[Path], n: int) -> None:
    """The same N files in each root, created interleaved (file i in every root,
    then file i+1) so no tree is warmer in the page/dentry cache than another."""
    old = time.time() - 100 * 86400
    last_dir = None
    for i in range(n):
        rel = rel_path(i)
        for root in roots:
            p = root / rel
            if p.parent != last_dir or len(roots) > 1:
                p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o640)
            os.write(fd, b"RIFF-small-audio")
            os.close(fd)
            os.utime(p, (old, old))
        last_dir = (roots[0] / rel).parent


def make_rows(db: Path, root: Path, n: int) -> None:
    conn = connect_sync(db)
    expired_rows(conn, os.path.realpath(root), n, started=NOW - timedelta(days=100),
                 until=NOW - timedelta(days=10))
    conn.close()


def sweep(tmp: Path, db: Path, root: Path, batch: int) -> tuple[float, int, str]:
    cfg = tmp / "bench.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n[recording]\nroot = "{root}"\n'
                   f'[retention]\nbatch_size = {batch}\n')
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "callproof.cli", "--config", str(cfg), "retention",
                          "sweep"], cwd=REPO, env=ENV, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, out.decode().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=4, help="rounds alternate which tool runs first")
    ap.add_argument("--dir", help="scratch folder (default: a temp folder)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-retention-", dir=args.dir))
    try:
        rounds = []
        for rnd in range(args.rounds):
            a, b = tmp / f"a{rnd}", tmp / f"b{rnd}"
            a.mkdir(), b.mkdir()
            print(f"round {rnd + 1}: building 2 x {args.n} files and {args.n} rows ...", flush=True)
            make_files([a, b], args.n)
            make_rows(tmp / f"a{rnd}.db", a, args.n)
            subprocess.run(["sync"], check=False)

            def run_find(b: Path = b) -> float:
                t0 = time.perf_counter()
                subprocess.run(["find", str(b), "-type", "f", "-mtime", "+90", "-delete"], check=True)
                return time.perf_counter() - t0

            # alternate which one goes first: the second may find a colder or warmer cache
            if rnd % 2 == 0:
                find_wall = run_find()
                cp_wall, rss_n, summary = sweep(tmp, tmp / f"a{rnd}.db", a, args.batch)
            else:
                cp_wall, rss_n, summary = sweep(tmp, tmp / f"a{rnd}.db", a, args.batch)
                find_wall = run_find()
            load = os.getloadavg()[0]
            left = sum(len(f) for _, _, f in os.walk(a))
            order = "find first" if rnd % 2 == 0 else "callproof first"
            print(f"  find -delete    {find_wall:8.2f} s")
            print(f"  callproof sweep {cp_wall:8.2f} s   ratio callproof/find = {cp_wall / find_wall:.2f}"
                  f"  ({order}; load {load:.1f}; files left: {left})")
            print(f"  {summary}")
            rounds.append((find_wall, cp_wall, rss_n, load))
            shutil.rmtree(a, ignore_errors=True)
            shutil.rmtree(b, ignore_errors=True)
        find_wall = statistics.median(r[0] for r in rounds)
        cp_wall = statistics.median(r[1] for r in rounds)
        ratio = statistics.median(r[1] / r[0] for r in rounds)
        rss_n = max(r[2] for r in rounds)
        loads = [r[3] for r in rounds]
        print(f"median over {len(rounds)} round(s): find {find_wall:.2f} s, callproof {cp_wall:.2f} s,"
              f" ratio {ratio:.2f} (per round: {', '.join(f'{r[1] / r[0]:.2f}' for r in rounds)};"
              f" load {min(loads):.0f}-{max(loads):.0f})")
        print(f"peak RSS at {args.n:>9} rows: {rss_n / 1024:8.1f} MiB")
        big = {}
        if args.big:
            empty = tmp / "c"
            empty.mkdir()
            print(f"building {args.big} rows without files ...", flush=True)
            make_rows(tmp / "c.db", empty, args.big)
            big_wall, rss_big, big_summary = sweep(tmp, tmp / "c.db", empty, args.batch)
            print(f"peak RSS at {args.big:>9} rows: {rss_big / 1024:8.1f} MiB   "
                  f"(ratio {rss_big / rss_n:.2f}; sweep took {big_wall:.1f} s)")
            print(f"  {big_summary}")
            big = {"big_rows": args.big, "big_peak_rss_kib": rss_big, "big_wall_s": round(big_wall, 2),
                   "rss_ratio_big_vs_n": round(rss_big / rss_n, 3)}
        print(json.dumps({"n": args.n,
                          "rounds": [[round(f, 3), round(c, 3), round(ld, 1)] for f, c, _, ld in rounds],
                          "median_find_s": round(find_wall, 3), "median_callproof_s": round(cp_wall, 3),
                          "median_ratio": round(ratio, 3), "peak_rss_kib": rss_n,
                          "batch": args.batch, **big}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
