"""The shared recordings store (``[recording] store``, docs/scale-out.md): each node records
under its own ``[recording] root``; once a recording is finalised (and encrypted, when
``[encryption]`` is on) the node's mover copies its file into the store, a folder on a
shared file system every node mounts, and the row says so (migration 0018).

* :mod:`.location` -- where a row's file is, for every reader (web, exports, evidence,
  verify, retention): this node's root, the store, or another node not yet moved;
* :mod:`.layout`   -- the file's name in the store (date / protocol / id);
* :mod:`.mover`    -- the crash-safe copy and the row's switch;
* :mod:`.cli`      -- ``callproof recording move`` (cron, catching up).

This module keeps, per database, the name of the node a process records for: the call
flow writes it into each new recording row (``node_of``), as the keyring is kept per
database (callproof/encryption/atrest.py).
"""

from __future__ import annotations

import os
import socket
from typing import Any

_by_database: dict[str, str] = {}


#: A node's finished recording still local after this many ``[recording] move_interval_seconds`` is
#: late: its mover has stopped or fails (``callproof doctor``'s WARN, the metric
#: ``callproof_recordings_move_late_seconds`` the alert CallproofRecordingsNotMoving compares with).
LATE_INTERVALS = 10


def late_after_seconds(config: Any) -> float:
    """The age past which a recording still waiting for the store is late (one rule for doctor and /metrics)."""
    return LATE_INTERVALS * float(config.recording.move_interval_seconds)


def node_name(config: Any) -> str:
    """This node's name: ``[recording] node``, or the host name when it is empty."""
    return config.recording.node or socket.gethostname()


def configure(config: Any) -> str:
    """Register this process's node for its database (``callproof run``, fastagi, the AGI script)."""
    node = node_name(config)
    _by_database[os.fspath(config.storage.target)] = node
    return node


def node_of(database: str | os.PathLike[str]) -> str:
    """The node recordings made through ``database`` are written by (the host name by default)."""
    return _by_database.get(os.fspath(database)) or socket.gethostname()
