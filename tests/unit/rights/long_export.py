"""A long encrypted recording exported in a fresh child process, measuring its peak memory.

Used by tests/unit/rights/test_export_memory.py and bench/bench_export_memory.py.  The
recording is a synthetic 8 kHz mono 16-bit WAV (16 000 bytes a second: 173 MB for 3 hours)
written a second at a time, finalised and encrypted by the one finalisation function.  The
export runs in a spawned interpreter so ``ru_maxrss`` (the peak resident set) is its own:
the figure is how much that peak grew during the export, beside ffmpeg's own peak."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import resource
import struct
from pathlib import Path
from typing import Any

RATE = 8000
BYTES_PER_SECOND = RATE * 2


def write_long_wav(path: Path, seconds: int) -> int:
    """A PCM WAV of ``seconds`` seconds of a 440 Hz tone, written streaming; its size."""
    second = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / RATE)))
                      for i in range(RATE))
    data = seconds * BYTES_PER_SECOND
    with path.open("wb") as out:
        out.write(b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE")
        out.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, BYTES_PER_SECOND, 2, 16))
        out.write(b"data" + struct.pack("<I", data))
        for _ in range(seconds):
            out.write(second)
    return 44 + data


def long_encrypted_request(tmp_path: Path, seconds: int) -> tuple[Any, int, int]:
    """(config, request id, plaintext size) for an encrypted recording of ``seconds`` seconds."""
    from callproof.storage import connect_sync
    from tests.unit.encryption.fakekeys import FakeKeyring
    from tests.unit.encryption.world import encrypted_config, finalise_with, unfinalised_call, write_keyring
    from tests.unit.rights.test_export import SECRET, file_request

    config = encrypted_config(tmp_path)
    config = dataclasses.replace(config, rights=dataclasses.replace(config.rights, link_secret=SECRET))
    keyring = FakeKeyring()
    rec = unfinalised_call(config)
    size = write_long_wav(rec["path"], seconds)
    finalise_with(config, rec, keyring)
    write_keyring(config, keyring)
    conn = connect_sync(config.storage.database)
    try:
        request_id = file_request(conn, config, rec["protocol"])
    finally:
        conn.close()
    return config, request_id, size


def _child(config: Any, request_id: int, fmt: str, results: Any) -> None:
    from callproof.rights.export import export_request_sync
    from callproof.storage import connect_sync
    from tests.unit.rights.test_export import NOW

    conn = connect_sync(config.storage.database)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    export = export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt=fmt)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ffmpeg = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    conn.close()
    results.put({"growth_kib": after - before, "peak_kib": after, "ffmpeg_kib": ffmpeg,
                 "export_bytes": export.size_bytes, "path": export.path})


def measure_export(config: Any, request_id: int, fmt: str) -> dict[str, Any]:
    """Export in a spawned child; its peak RSS growth, ffmpeg's peak (KiB) and the export."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_child, args=(config, request_id, fmt, results))
    child.start()
    try:
        outcome = results.get(timeout=3600)
    finally:
        child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the export child exited with {child.exitcode}")
    return outcome
