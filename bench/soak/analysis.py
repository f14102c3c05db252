"""Figures of a soak run: least-squares slopes of RSS per 1,000 calls, and what
tracemalloc says stayed behind between two snapshots."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path
from typing import Any

from .driver import Sample

MIB = 1024 * 1024


def fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (b, a, residual standard deviation)."""
    n = len(xs)
    if n < 2:
        return 0.0, ys[0] if ys else 0.0, 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    resid = math.sqrt(sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True)) / max(1, n - 2))
    return b, a, resid


def slopes(samples: list[Sample], warmup: int) -> dict[str, Any]:
    """MiB per 1,000 calls after the warm-up (whole run and second half), and the
    other counters' first/last values over the same samples."""
    kept = [s for s in samples if s.calls >= warmup]
    figures: dict[str, Any] = {"samples": len(kept)}
    if len(kept) < 3:
        return figures
    xs = [s.calls / 1000 for s in kept]
    half = kept[len(kept) // 2:]
    for name, get in (("rss", lambda s: s.rss_kib), ("rss_anon", lambda s: s.rss_anon_kib)):
        b, _, resid = fit(xs, [get(s) / 1024 for s in kept])
        b2, _, _ = fit([s.calls / 1000 for s in half], [get(s) / 1024 for s in half])
        figures[name] = {"mib_per_1000_calls": round(b, 3), "residual_mib": round(resid, 3),
                         "second_half_mib_per_1000_calls": round(b2, 3),
                         "first_mib": round(get(kept[0]) / 1024, 1), "last_mib": round(get(kept[-1]) / 1024, 1)}
    for key in ("sqlite_kib", "malloc_used_kib", "malloc_free_kib", "py_arenas_kib", "py_used_kib",
                "traced_kib"):  # where RSS went
        have = [s for s in kept if key in s.memory]
        if len(have) >= 3:
            b, _, _ = fit([s.calls / 1000 for s in have], [s.memory[key] / 1024 for s in have])
            figures[key.removesuffix("_kib")] = {"mib_per_1000_calls": round(b, 3),
                                                 "first_mib": round(have[0].memory[key] / 1024, 2),
                                                 "last_mib": round(have[-1].memory[key] / 1024, 2)}
    have = [s for s in kept if "sqlite_kib" in s.memory]
    if len(have) >= 3:  # RssAnon less SQLite's own allocations (its page cache is bounded)
        b, _, resid = fit([s.calls / 1000 for s in have],
                          [(s.rss_anon_kib - s.memory["sqlite_kib"]) / 1024 for s in have])
        figures["rss_anon_less_sqlite"] = {"mib_per_1000_calls": round(b, 3), "residual_mib": round(resid, 3)}
    arenas = [s.memory["malloc_arenas"] for s in kept if s.memory.get("malloc_arenas")]
    if len(arenas) >= 2:  # glibc's arenas, first and last sample: [system KiB, free KiB] each
        figures["malloc_arenas"] = {"first": arenas[0], "last": arenas[-1]}
    blocks = [s for s in kept if "py_blocks" in s.memory]
    if len(blocks) >= 3:
        b, _, _ = fit([s.calls / 1000 for s in blocks], [float(s.memory["py_blocks"]) for s in blocks])
        figures["py_blocks"] = {"per_1000_calls": round(b), "first": blocks[0].memory["py_blocks"],
                                "last": blocks[-1].memory["py_blocks"]}
    for name in ("fds", "threads"):
        figures[name] = {"first": getattr(kept[0], name), "last": getattr(kept[-1], name),
                         "max": max(getattr(s, name) for s in kept)}
    tasks = [s.app.get("asyncio_tasks") for s in kept if s.app]
    if tasks:
        figures["asyncio_tasks"] = {"first": tasks[0], "last": tasks[-1], "max": max(tasks)}
    return figures


_IGNORED = [tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            tracemalloc.Filter(False, "*/linecache.py")]


def compare_snapshots(first: Path, last: Path, calls: int, top: int = 15) -> list[str]:
    """What grew from ``first`` to ``last`` (``calls`` calls apart), grouped by traceback,
    largest first, as printable lines: bytes and blocks per call, then the frames
    (the innermost 8, innermost last)."""
    old = tracemalloc.Snapshot.load(str(first)).filter_traces(_IGNORED)
    new = tracemalloc.Snapshot.load(str(last)).filter_traces(_IGNORED)
    stats = [s for s in new.compare_to(old, "traceback") if s.size_diff > 0]
    total = sum(s.size_diff for s in new.compare_to(old, "filename"))
    lines = [f"tracemalloc: {total / max(1, calls):+.0f} B per call in all ({total / MIB:+.2f} MiB over "
             f"{calls} calls); top {top} tracebacks by growth:"]
    for stat in stats[:top]:
        lines.append(f"  {stat.size_diff / max(1, calls):+8.0f} B/call {stat.count_diff / max(1, calls):+7.2f} "
                     f"blocks/call (now {stat.size / 1024:.0f} KiB in {stat.count} blocks)")
        lines.extend("      " + line for line in stat.traceback.format(limit=8))
    return lines
