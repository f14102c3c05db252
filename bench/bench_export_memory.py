"""Peak memory of exporting a long encrypted recording (issue #13: no whole recording in memory).

For each duration, a synthetic 8 kHz mono WAV is finalised and encrypted, then exported in
a fresh child process; printed: the recording's size, how much the exporting process's peak
resident set grew during the export, ffmpeg's peak, and each as a ratio of the recording's
size (streaming keeps them far below 1; loading the recording, as pydub did, is above 1).

    python bench/bench_export_memory.py --hours 1,3 --format mp3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.unit.rights.long_export import long_encrypted_request, measure_export  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", default="1,3", help="comma-separated durations in hours")
    parser.add_argument("--format", default="mp3", choices=("mp3", "ogg", "wav"))
    args = parser.parse_args()
    print(f"{'hours':>5} {'recording MiB':>14} {'python peak growth MiB':>23} {'ratio':>6}"
          f" {'ffmpeg peak MiB':>16} {'ratio':>6} {'seconds':>8}")
    for hours in (float(h) for h in args.hours.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            config, request_id, size = long_encrypted_request(Path(tmp), int(hours * 3600))
            started = time.perf_counter()
            outcome = measure_export(config, request_id, args.format)
            took = time.perf_counter() - started
        mib = size / 2**20
        growth, ffmpeg = outcome["growth_kib"] / 1024, outcome["ffmpeg_kib"] / 1024
        print(f"{hours:>5g} {mib:>14.1f} {growth:>23.1f} {growth / mib:>6.3f}"
              f" {ffmpeg:>16.1f} {ffmpeg / mib:>6.3f} {took:>8.1f}")


if __name__ == "__main__":
    main()
