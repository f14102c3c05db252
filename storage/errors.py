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


def is_unopenable(exc: BaseException) -> bool:
    """True for the driver's "cannot open / cannot write the file" errors (a database, or
    its folder, owned by another user): a permission problem, not a broken database."""
    return isinstance(exc, sqlite3.OperationalError) and any(
        text in str(exc) for text in ("unable to open database file", "readonly database"))


class StorageUnavailable(StorageError):
    """Storage did not answer a call's step within ``[storage] call_wait_seconds``, or refused
    the write (locked, read-only, disk full); ``problem`` names which, for the logs."""

    def __init__(self, problem: str, detail: str = ""):
        super().__init__(f"storage unavailable ({problem}){': ' + detail if detail else ''}")
        self.problem = problem


def storage_problem(exc: BaseException) -> str:
    """What was wrong, in a word for the logs (no paths, no data): ``locked``, ``read_only``,
    ``disk_full``, ``io_error``, ``timeout``, ``corrupt`` or ``error``."""
    if isinstance(exc, StorageUnavailable):
        return exc.problem
    if isinstance(exc, OSError):
        import errno

        return {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                errno.EACCES: "read_only", errno.EPERM: "read_only"}.get(exc.errno or 0, "io_error")
    text = str(exc).lower()
    for words, problem in ((("locked", "busy"), "locked"), (("readonly", "read-only", "read only"), "read_only"),
                           (("disk is full", "full"), "disk_full"), (("disk i/o",), "io_error"),
                           (("malformed", "not a database"), "corrupt")):
        if any(w in text for w in words):
            return problem
    return "error"
