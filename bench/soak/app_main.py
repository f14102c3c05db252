"""``callproof run`` for the soak benchmark, optionally under tracemalloc.

    python bench/soak/app_main.py [--tracemalloc FRAMES --snapshots DIR] --config X run

Everything after the launcher's own options goes to ``callproof.cli``.  With
``--tracemalloc``, tracing starts before callproof is imported and each SIGUSR2
writes ``DIR/snapshot-NNN.pickle`` (after a ``gc.collect()``), which
bench/soak/analysis.py compares batch by batch.  SIGUSR1 is callproof's own
``app.stats`` line.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--snapshots", type=Path)
    ours, rest = parser.parse_known_args()
    if ours.tracemalloc:
        if ours.snapshots is None:
            parser.error("--tracemalloc needs --snapshots DIR")
        tracemalloc.start(ours.tracemalloc)
        ours.snapshots.mkdir(parents=True, exist_ok=True)
        taken = [0]

        def dump(_signum: int, _frame: Any) -> None:
            # runs in the main thread, i.e. between two steps of the event loop
            gc.collect()
            taken[0] += 1
            tracemalloc.take_snapshot().dump(str(ours.snapshots / f"snapshot-{taken[0]:03d}.pickle"))
            (ours.snapshots / f"snapshot-{taken[0]:03d}.done").touch()

        signal.signal(signal.SIGUSR2, dump)
    from callproof.cli import main as callproof_main

    return callproof_main(rest)


if __name__ == "__main__":
    sys.exit(main())
