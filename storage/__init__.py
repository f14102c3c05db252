"""callproof storage: SQLite (WAL) via aiosqlite, shared by the ARI app, AGI
scripts, the CLI and several processes.  See :mod:`storage.db`.

Every SQL statement lives in this package.  Each table module holds plain sync
functions taking a ``sqlite3.Connection`` (``*_sync``); callers reach them
through a handle, never a connection:

* :class:`Database` (async): repositories such as ``db.calls``, and
  :meth:`Database.run_sync` to run business code written against the sync
  handle on its thread;
* :class:`SyncDatabase` (sync): the same functions as repository methods
  (``db.requests.get(12)``) for the CLI and the web page's :class:`SyncPool`.

Open them from the configuration with :func:`open_database`,
:func:`open_sync` and :func:`open_pool` (storage/opening.py).
:func:`connect_sync` stays for storage-level code and tests.
"""

from .call_status import CallStatus, IllegalTransitionError
from .calls import NewCall
from .db import Database, connect_sync, migrate
from .errors import (
    AlreadyExistsError,
    EvidenceOrderError,
    InvalidStateError,
    MigrationError,
    NotFoundError,
    ProtocolRangeError,
    StorageError,
    is_storage_error,
    is_unopenable,
)
from .opening import open_database, open_pool, open_sync
from .pool import SyncPool
from .protocols import AllocatedProtocol, SmsDraft, allocate_sync, format_protocol, parse_protocol
from .sync import SyncDatabase
from .timefmt import to_db_time, utc_now

__all__ = [
    "AllocatedProtocol",
    "AlreadyExistsError",
    "CallStatus",
    "Database",
    "EvidenceOrderError",
    "IllegalTransitionError",
    "InvalidStateError",
    "MigrationError",
    "NewCall",
    "NotFoundError",
    "ProtocolRangeError",
    "SmsDraft",
    "StorageError",
    "SyncDatabase",
    "SyncPool",
    "allocate_sync",
    "connect_sync",
    "format_protocol",
    "is_storage_error",
    "is_unopenable",
    "migrate",
    "open_database",
    "open_pool",
    "open_sync",
    "parse_protocol",
    "to_db_time",
    "utc_now",
]
