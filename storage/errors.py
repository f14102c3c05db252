"""Exceptions raised by the storage layer (all subclass :class:`StorageError`)."""

from __future__ import annotations

import sqlite3


class StorageError(Exception):
    """Base class for storage errors."""


class MigrationError(StorageError):
    """The schema cannot be brought to the version this code expects."""


class NotFoundError(StorageError, LookupError):
    """The referenced row does not exist."""


class AlreadyExistsError(StorageError):
    """A row with the same unique key (channel id, recording path) exists."""


class InvalidStateError(StorageError):
    """The row is not in a state that allows the requested transition."""


class EvidenceOrderError(InvalidStateError):
    """A write that would put a call's evidence timestamps out of order (consent, then
    protocol, reading, recording), refused by the database's triggers (migration 0005)."""


def evidence_order_error(exc: sqlite3.IntegrityError, call_id: int) -> EvidenceOrderError | None:
    """The EvidenceOrderError an IntegrityError from a calls trigger means, else None."""
    text = str(exc)
    if not text.startswith("evidence order:"):
        return None
    return EvidenceOrderError(f"call {call_id}: {text}")


class ProtocolRangeError(StorageError, ValueError):
    """Year outside 2000..9999 or the year's 13-digit sequence is exhausted."""


def is_storage_error(exc: BaseException) -> bool:
    """True for any failure of the database itself: ours, or the driver's (locked,
    unwritable, corrupt). Callers outside storage classify errors with this instead
    of importing the driver."""
    return isinstance(exc, StorageError | sqlite3.Error)
