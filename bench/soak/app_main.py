"""``callproof run`` for the soak benchmark, with a memory breakdown and optional tracemalloc.

    python bench/soak/app_main.py --memory DIR [--tracemalloc FRAMES] --config X run

Everything after the launcher's own options goes to ``callproof.cli``.  Each
SIGUSR2 appends one JSON line to ``DIR/memory.jsonl``: what SQLite holds
(``sqlite3_status64``: all its allocations, and the page cache's), glibc's heap
(``mallinfo2``: in use, free, mmapped), Python's allocated blocks and pymalloc's
arenas, and, under
tracemalloc, the traced total.  With ``--tracemalloc``, tracing starts before
callproof is imported and each SIGRTMIN writes ``DIR/snapshot-NNN.pickle``
(after a ``gc.collect()``), which bench/soak/analysis.py compares.  SIGUSR1 is
callproof's own ``app.stats`` line.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

SQLITE_STATUS_MEMORY_USED = 0
SQLITE_STATUS_PAGECACHE_OVERFLOW = 2  # page cache memory that came from malloc (all of it, by default)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _sqlite_status(lib: Any, op: int) -> int:
    current, high = ctypes.c_int64(), ctypes.c_int64()
    lib.sqlite3_status64(op, ctypes.byref(current), ctypes.byref(high), 0)
    return current.value


def pymalloc_figures() -> dict[str, int]:
    """pymalloc's arenas (KiB mapped, in used blocks, in free blocks), from
    ``sys._debugmallocstats()``, which writes to the C-level stderr."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        number = value.strip().replace(",", "")
        if not number.isdigit():
            continue
        if name.startswith("# bytes in allocated blocks"):
            found["py_used_kib"] = int(number) // 1024
        elif name.startswith("# bytes in available blocks"):
            found["py_free_kib"] = int(number) // 1024
        elif name.startswith("Total") and "py_arenas_kib" not in found:
            found["py_arenas_kib"] = int(number) // 1024
    return found


def malloc_arenas(libc: Any) -> list[list[int]]:
    """glibc's arenas from ``malloc_info()``: [KiB taken from the system, KiB free in it] each
    (arena 0 is the main thread's; the others belong to threads: SQLite's, to_thread's)."""
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile() as out:
        fp = libc.fopen(out.name.encode(), b"w")
        if not fp:
            return []
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        text = Path(out.name).read_text()
    arenas = []
    for heap in re.findall(r'<heap nr="\d+">(.*?)</heap>', text, re.S):
        free = sum(int(n) for n in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"/>', heap))
        current = re.search(r'<system type="current" size="(\d+)"/>', heap)
        arenas.append([int(current.group(1)) // 1024 if current else 0, free // 1024])
    return arenas


def memory_figures() -> dict[str, Any]:
    figures: dict[str, Any] = {"at": time.time(), "py_blocks": sys.getallocatedblocks(), **pymalloc_figures(),
                               # classes alive (garbage included): aioari's per-request class shows here
                               "object_subclasses": len(object.__subclasses__()),
                               "gc_collections": [g["collections"] for g in gc.get_stats()],
                               "gc_counts": list(gc.get_count())}
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")  # the library _sqlite3 is linked with: the same globals
        figures["sqlite_kib"] = _sqlite_status(lib, SQLITE_STATUS_MEMORY_USED) // 1024
        figures["sqlite_pagecache_kib"] = _sqlite_status(lib, SQLITE_STATUS_PAGECACHE_OVERFLOW) // 1024
    except (OSError, AttributeError):
        pass
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
        figures.update(malloc_used_kib=info.uordblks // 1024, malloc_free_kib=info.fordblks // 1024,
                       malloc_mmap_kib=info.hblkhd // 1024, malloc_arenas=malloc_arenas(libc))
    except (OSError, AttributeError):
        pass
    if tracemalloc.is_tracing():
        figures["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--memory", type=Path, required=True, metavar="DIR")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    ours, rest = parser.parse_known_args()
    ours.memory.mkdir(parents=True, exist_ok=True)

    def memory_line(_signum: int, _frame: Any) -> None:
        with open(ours.memory / "memory.jsonl", "a") as out:
            out.write(json.dumps(memory_figures()) + "\n")

    signal.signal(signal.SIGUSR2, memory_line)
    if ours.tracemalloc:
        tracemalloc.start(ours.tracemalloc)
        taken = [0]

        def dump(_signum: int, _frame: Any) -> None:
            # runs in the main thread, i.e. between two steps of the event loop
            gc.collect()
            taken[0] += 1
            tracemalloc.take_snapshot().dump(str(ours.memory / f"snapshot-{taken[0]:03d}.pickle"))
            (ours.memory / f"snapshot-{taken[0]:03d}.done").touch()

        signal.signal(signal.SIGRTMIN, dump)
    from callproof.cli import main as callproof_main

    return callproof_main(rest)


if __name__ == "__main__":
    sys.exit(main())
