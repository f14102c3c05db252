"""Where a recording row's file is, as every reader needs it: the folder it must be inside
and its path (``(root, path)``, what ``file_inside`` / ``SafeTree`` check), or
:class:`Elsewhere` when this node cannot reach it.

* ``store_path`` set: the file is in the shared store, ``[recording] store`` / ``store_path``
  (the age file when the row is encrypted);
* otherwise the file is on the node that recorded it (``node``), under its
  ``[recording] root`` at ``path`` (``age_path`` when encrypted): on this node only when the
  row names it (or names no node: a row from before migration 0018).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import node_name


class Elsewhere(Exception):
    """The file is not reachable from this node; the message says where it is."""


def is_here(row: dict, config: Any) -> bool:
    """Whether this node can reach the row's file (in a store it mounts, or its own local file)."""
    try:
        locate(row, config)
    except Elsewhere:
        return False
    return True


def locate(row: dict, config: Any, *, encrypted: bool | None = None) -> tuple[Path, str]:
    """``(root, path)`` of the row's file; ``encrypted`` (default: what the row says) picks the
    age file or the plaintext of a local recording.  Raises :class:`Elsewhere`."""
    if encrypted is None:
        encrypted = row.get("encryption") == "encrypted"
    store_path = row.get("store_path")
    if store_path:
        store = config.recording.store
        if store is None:
            raise Elsewhere("the recording is in the shared recordings store, which [recording] store does not"
                            " name on this node")
        return Path(store), os.path.join(os.path.realpath(store), store_path)
    node = row.get("node")
    if node and node != node_name(config):
        raise Elsewhere(f"the recording's file is still on node {node} (not yet moved to the shared store)")
    return Path(config.recording.root), str(row["age_path"] if encrypted else row["path"])
