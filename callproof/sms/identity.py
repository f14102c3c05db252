"""The SMS sender's name: the owner written on the outbox rows it leases.

A sender named by something that survives a restart (the host and
``[sms] instance``, not the pid) can take back at once the rows it held when
it was killed, instead of waiting for their lease to run out: rows leased
under its name cannot belong to a live process, because only one process
uses a name at a time.  That process holds an ``flock`` on a lock file next
to the database for as long as it runs; the kernel releases it when the
process ends, however it ends (``kill -9`` included), so holding it is the
fact that the name's earlier owner is gone.

A second process started with the same name on the same host does not get
the lock.  It runs under a name of its own (the name and its pid), takes
nothing back early, and says so in the log (``sms.sender_name_in_use``);
rows it holds when it dies wait for their lease, as any other sender's do.

On PostgreSQL (``[storage] url``) there is no file beside the database: the name is
held with a session advisory lock on a connection of its own
(storage/named_locks.py), which the server releases when the process ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from callproof.storage.connect import MEMORY
from callproof.storage.pg_url import is_postgres_url

from ..config.validation import SENDER_INSTANCE
from ..logs import event

log = logging.getLogger("callproof.sms")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class SenderIdentity:
    owner: str  # written on the rows this sender leases
    exclusive: bool  # no other live process uses ``owner``: its rows at start are a previous life's
    _fd: int | None = None
    _held: Any = None  # the PostgreSQL session holding the name (storage.named_locks.HeldName)

    @classmethod
    def for_database(cls, db: Any, instance: str, host: str | None = None) -> SenderIdentity:
        """:meth:`acquire` for the database of a :class:`storage.Database` handle: beside
        the SQLite file, or, for ``[storage] url``, as a PostgreSQL session lock."""
        if not is_postgres_url(db.path):
            return cls.acquire(db.path, instance, host)
        from callproof.storage.errors import is_storage_error
        from callproof.storage.named_locks import hold_name_for

        if not SENDER_INSTANCE.fullmatch(instance):
            raise ValueError(f"sender instance must match {SENDER_INSTANCE.pattern}, got {instance!r}")
        name = f"{host or socket.gethostname()}:{instance}"
        try:
            held = hold_name_for(db, f"sms-sender {name}")
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            event(log, "sms.sender_lock_unavailable", logging.WARNING, sender=name, error=type(exc).__name__)
            return cls(f"{name}:{os.getpid()}", False)
        if held is None:
            event(log, "sms.sender_name_in_use", logging.WARNING, sender=name, pid=os.getpid())
            return cls(f"{name}:{os.getpid()}", False)
        return cls(name, True, _held=held)

    @classmethod
    def acquire(cls, db_path: str, instance: str, host: str | None = None) -> SenderIdentity:
        """The identity ``host:instance`` if this process can hold it alone,
        else ``host:instance:pid`` (not exclusive)."""
        if not SENDER_INSTANCE.fullmatch(instance):
            raise ValueError(f"sender instance must match {SENDER_INSTANCE.pattern}, got {instance!r}")
        host = host or socket.gethostname()
        name = f"{host}:{instance}"
        if not db_path or db_path == MEMORY:  # no file to put a lock next to
            return cls(f"{name}:{os.getpid()}", False)
        lock_path = f"{db_path}.sms-sender-{_UNSAFE.sub('_', host)}-{instance}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            event(log, "sms.sender_lock_unavailable", logging.WARNING, sender=name, error=type(exc).__name__)
            return cls(f"{name}:{os.getpid()}", False)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            event(log, "sms.sender_name_in_use", logging.WARNING, sender=name, pid=os.getpid())
            return cls(f"{name}:{os.getpid()}", False)
        return cls(name, True, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
            self.exclusive = False
        if self._held is not None:
            self._held.release()  # ends the session that holds the lock
            self._held = None
            self.exclusive = False

    def __del__(self) -> None:
        self.release()
