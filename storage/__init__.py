"""callproof storage: SQLite (WAL) via aiosqlite, shared by the ARI app, AGI
scripts, the CLI and several processes.  See :mod:`storage.db`.

Each table module exposes plain sync functions taking a ``sqlite3.Connection``
(``*_sync``, for AGI scripts and the CLI via :func:`connect_sync`) and an
async repository that runs exactly those functions on aiosqlite's thread.
"""

from .call_status import CallStatus, IllegalTransitionError
from .calls import NewCall
from .db import Database, connect_sync, migrate
from .errors import (
    AlreadyExistsError,
    InvalidStateError,
    MigrationError,
    NotFoundError,
    ProtocolRangeError,
    StorageError,
)
from .protocols import AllocatedProtocol, SmsDraft, allocate_sync, format_protocol, parse_protocol
from .timefmt import to_db_time, utc_now

__all__ = [
    "AllocatedProtocol",
    "AlreadyExistsError",
    "CallStatus",
    "IllegalTransitionError",
    "Database",
    "InvalidStateError",
    "MigrationError",
    "NewCall",
    "NotFoundError",
    "ProtocolRangeError",
    "SmsDraft",
    "StorageError",
    "allocate_sync",
    "connect_sync",
    "format_protocol",
    "migrate",
    "parse_protocol",
    "to_db_time",
    "utc_now",
]
