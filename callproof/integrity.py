"""Evidence integrity of recordings: re-hash files against the sha256
stored when they were finalised (``callproof recording verify``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from callproof.storage import SyncDatabase

from .retention import SafeTree, UnsafePath

_CHUNK = 1 << 20


def sha256_file(fd: int) -> str:
    import os

    h = hashlib.sha256()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def verify_recordings(db: SyncDatabase, root: Path, protocol: str | None = None,
                      batch: int = 500) -> Iterator[dict[str, Any]]:
    """One result per finalised recording (``ok``/``mismatch``/``missing``/
    ``unreadable``), in id order, in bounded batches.  Files are opened
    without following symlinks, under the recordings root only."""
    import os

    db = SyncDatabase.wrap(db)
    tree = SafeTree(root)
    try:
        last = 0
        while True:
            rows = db.recordings.finalised_batch(after_id=last, protocol=protocol, limit=batch)
            if not rows:
                return
            last = rows[-1][0]
            for rid, proto, path, stored in rows:
                item = {"id": rid, "protocol": proto, "path": path, "sha256": stored}
                try:
                    parts = tree.parts(path)
                    pfd = tree._parent_fd(parts[:-1])
                    fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                    try:
                        actual = sha256_file(fd)
                    finally:
                        os.close(fd)
                except FileNotFoundError:
                    yield {**item, "result": "missing"}
                    continue
                except (UnsafePath, OSError) as exc:
                    yield {**item, "result": "unreadable", "detail": str(exc)}
                    continue
                if actual == stored:
                    yield {**item, "result": "ok"}
                else:
                    yield {**item, "result": "mismatch", "detail": f"file hashes to {actual}"}
    finally:
        tree.close()
