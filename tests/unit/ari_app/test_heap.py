"""ari_app/heap.py: malloc_trim where the C library has it (glibc), nothing elsewhere."""

from __future__ import annotations

import asyncio
import ctypes

import pytest

from callproof.ari_app import heap


def test_trim_heap_gives_free_pages_back_under_glibc():
    if not hasattr(ctypes.CDLL(None), "malloc_trim"):
        pytest.skip("this C library has no malloc_trim (not glibc): trim_heap does nothing")
    blocks = [bytearray(16384) for _ in range(4000)]  # ~64 MiB from the heap
    kept = blocks[::4]  # holes of ~48 KiB between live blocks: free pages inside the heap
    del blocks
    assert heap.trim_heap() is True
    assert len(kept) == 1000


def test_trim_heap_without_malloc_trim_does_nothing(monkeypatch):
    monkeypatch.setattr(heap, "_TRIM", None)
    assert heap.trim_heap() is False


async def test_the_application_trims_periodically(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "trim_heap", lambda: calls.append(1) or True)
    task = asyncio.ensure_future(heap.trim_periodically(0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    assert calls
