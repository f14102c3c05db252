"""Giving glibc's free heap memory back to the system, every 10 seconds.

CPython takes every object over 512 bytes (event dicts, JSON texts, buffers) from malloc.
Under glibc (2.36 measured) the main arena's heap of ``callproof run`` fragments: in the soak
(bench/bench_soak.py, docs/benchmarks.md "Memory per call") the bytes in use stayed flat while
the free chunks between live ones grew, resident, by ~0.7 MiB per 1,000 calls, and glibc only
returns the top of a heap on its own.  ``malloc_trim(0)`` also releases the whole free pages
inside the heaps (``madvise``).  Where the C library has no ``malloc_trim`` (musl, macOS)
this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

TRIM_SECONDS = 10.0  # a trim of the app's ~12 MiB heap takes well under 1 ms


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def trim_heap() -> bool:
    """Return free heap pages to the system; True if any were."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def trim_periodically(seconds: float = TRIM_SECONDS) -> None:
    """Run by the application for as long as it runs."""
    while True:
        await asyncio.sleep(seconds)
        trim_heap()
