"""Protocol numbers: ``YYYY`` + 13-digit per-year sequence (17 digits).

The sequence bump, the ``protocols`` row, the call update and the SMS outbox
row are one transaction (:func:`allocate_sync`).  Because the counter is
bumped inside that transaction, a rollback leaves no gap and concurrent
processes never get the same number: on SQLite they are serialised by BEGIN
IMMEDIATE; on PostgreSQL the year's counter row is locked by the bump itself
(``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``) until the transaction
ends, on every node (never a SEQUENCE: a rolled-back nextval is a gap), and the
call's row by ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ._sqlutil import fetch_one, inserted_id, row_locked
from .bounded import within
from .call_status import INITIAL
from .dialect import dialect_of
from .errors import InvalidStateError, NotFoundError, ProtocolRangeError, evidence_order_error
from .timefmt import to_db_time

if TYPE_CHECKING:
    from .db import Database

MIN_YEAR, MAX_YEAR = 2000, 9999
MAX_SEQUENCE = 10**13 - 1
PROTOCOL_LENGTH = 17

# A call may receive its protocol only while consent is being played/just
# finished; any other status means the call moved on (or was abandoned).
ALLOCATABLE_CALL_STATUSES = frozenset({INITIAL.value})


@dataclass(frozen=True, slots=True)
class SmsDraft:
    """The SMS to queue with a new protocol.

    ``render_body(protocol)`` runs inside the allocation transaction (on the
    database thread): keep it pure and fast; if it raises, nothing is stored.
    The row is 'not_sendable' when ``destination`` is None or a
    ``not_sendable_reason`` is given (e.g. a landline); otherwise 'pending'.
    """

    destination: str | None
    language: str
    render_body: Callable[[str], str]
    not_sendable_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AllocatedProtocol:
    protocol: str
    outbox_id: int | None
    sms_state: str | None
    reused: bool = False  # True: the call already had this protocol (resumed call)


def format_protocol(year: int, sequence: int) -> str:
    _check_year(year)
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise ProtocolRangeError(f"sequence {sequence} outside 1..{MAX_SEQUENCE}")
    return f"{year:04d}{sequence:013d}"


def parse_protocol(protocol: str) -> tuple[int, int]:
    """``'20260000000000042'`` -> ``(2026, 42)``; ValueError if malformed."""
    if len(protocol) != PROTOCOL_LENGTH or not protocol.isascii() or not protocol.isdigit():
        raise ValueError(f"not a {PROTOCOL_LENGTH}-digit protocol: {protocol!r}")
    year, sequence = int(protocol[:4]), int(protocol[4:])
    format_protocol(year, sequence)  # range check
    return year, sequence


def _check_year(year: int) -> None:
    if not isinstance(year, int) or isinstance(year, bool) or not MIN_YEAR <= year <= MAX_YEAR:
        raise ProtocolRangeError(
            f"protocol year must be an int in {MIN_YEAR}..{MAX_YEAR}, got {year!r}")


_SQL_CALL = "SELECT protocol, status FROM calls WHERE id = ?"  # + the dialect's FOR UPDATE
_SQL_EXISTING_SMS = "SELECT id, state FROM sms_outbox WHERE protocol = ? ORDER BY id LIMIT 1"
_SQL_BUMP = (
    "INSERT INTO protocol_sequences (year, last_value) VALUES (?, 1)"
    " ON CONFLICT (year) DO UPDATE SET last_value = protocol_sequences.last_value + 1"
    " RETURNING last_value"
)
_SQL_PROTOCOL = (
    "INSERT INTO protocols (protocol, year, sequence, allocated_at, kind, call_id)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_SQL_LINK_CALL = (
    "UPDATE calls SET protocol = ?, status = 'protocol_reading', updated_at = ? WHERE id = ?"
)
_SQL_SMS = (
    "INSERT INTO sms_outbox (protocol, call_id, destination, language, body, state, reason,"
    " attempts, next_attempt_at, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
)


def allocate_sync(
    conn: sqlite3.Connection,
    *,
    year: int,
    allocated_at: str | datetime,
    kind: str = "call",
    call_id: int | None = None,
    sms: SmsDraft | None = None,
) -> AllocatedProtocol:
    """Allocate the next protocol of ``year`` in one transaction (see the module's doc).

    With ``call_id``: idempotent per call (a call that already has a protocol
    gets it back, ``reused=True``, nothing is written), otherwise the call's
    ``protocol`` is set and its status becomes 'protocol_reading'.  With
    ``sms``: the outbox row is inserted in the same transaction.

    ``allocated_at``: aware ISO-8601 string or datetime (stored normalised,
    also as the call's/outbox row's ``updated_at``).  ``conn`` must be in
    autocommit mode with no open transaction (:func:`storage.connect.connect_sync`).
    """
    _check_year(year)
    allocated_at = to_db_time(allocated_at)
    with row_locked(conn):
        if call_id is not None:
            row = conn.execute(_SQL_CALL + dialect_of(conn).for_update, (call_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"call {call_id} does not exist")
            existing, status = row
            if existing is not None:
                sms_row = conn.execute(_SQL_EXISTING_SMS, (existing,)).fetchone()
                return AllocatedProtocol(
                    existing,
                    sms_row[0] if sms_row else None,
                    sms_row[1] if sms_row else None,
                    reused=True,
                )
            if status not in ALLOCATABLE_CALL_STATUSES:
                raise InvalidStateError(
                    f"call {call_id} has status {status!r}; a protocol can only be "
                    f"allocated in {sorted(ALLOCATABLE_CALL_STATUSES)}"
                )

        sequence = conn.execute(_SQL_BUMP, (year,)).fetchall()[0][0]  # all: the statement ends
        if sequence > MAX_SEQUENCE:  # rollback keeps the counter at the maximum
            raise ProtocolRangeError(f"protocol sequence for {year} exhausted ({MAX_SEQUENCE})")
        protocol = f"{year:04d}{sequence:013d}"
        conn.execute(_SQL_PROTOCOL, (protocol, year, sequence, allocated_at, kind, call_id))

        if call_id is not None:
            try:
                conn.execute(_SQL_LINK_CALL, (protocol, allocated_at, call_id))
            except sqlite3.IntegrityError as e:  # the consent did not finish first
                refused = evidence_order_error(e, call_id)
                if refused is None:
                    raise
                raise refused from None

        outbox_id = sms_state = None
        if sms is not None:
            body = sms.render_body(protocol)
            if sms.destination is None or sms.not_sendable_reason is not None:
                sms_state = "not_sendable"
                reason = sms.not_sendable_reason or "no destination number"
                next_attempt_at = None
            else:
                sms_state, reason, next_attempt_at = "pending", None, allocated_at
            cur = conn.execute(
                _SQL_SMS,
                (protocol, call_id, sms.destination, sms.language, body, sms_state, reason,
                 next_attempt_at, allocated_at, allocated_at),
            )
            outbox_id = inserted_id(cur)
    return AllocatedProtocol(protocol, outbox_id, sms_state)


def get_sync(conn: sqlite3.Connection, protocol: str) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM protocols WHERE protocol = ?", (protocol,)))


def allocate_many_within_sync(conn: sqlite3.Connection, requests: list[dict]) -> list:
    """:func:`allocate_many_sync` for requests that each carry their ``deadline``
    (:func:`storage.bounded.within`): one that cannot finish in time is not made at all."""
    results: list = []
    for kwargs in requests:
        args = dict(kwargs)
        deadline = args.pop("deadline")
        try:
            results.append(within(conn, deadline, allocate_sync, **args))
        except Exception as exc:  # handed back to that request's caller
            results.append(exc)
    return results


def allocate_many_sync(conn: sqlite3.Connection, requests: list[dict]) -> list:
    """Run several allocations, each in its own transaction, in one call.

    Returns, per request, its AllocatedProtocol or the exception it raised, so one
    failure (e.g. a call in the wrong state) does not affect the others.
    """
    results: list = []
    for kwargs in requests:
        try:
            results.append(allocate_sync(conn, **kwargs))
        except Exception as exc:  # handed back to that request's caller
            results.append(exc)
    return results


class _AllocationQueue:
    """Shares one thread hop among allocations that arrive while one is in flight.

    A hop to aiosqlite's thread costs far more than the transaction itself on a
    busy machine.  The first caller goes straight through; callers arriving
    while it is in flight wait, and the whole group then goes in a single hop,
    each allocation still in its own transaction (same guarantees as alone).
    """

    def __init__(self, db: Database, *, bounded: bool = False) -> None:
        self._db = db
        self._bounded = bounded  # requests carry a deadline and run on the calls' connection
        self._busy = False
        self._waiting: list[tuple[dict, asyncio.Future]] = []
        self._drainer: asyncio.Future[None] | None = None

    async def allocate(self, **kwargs) -> AllocatedProtocol:
        if self._busy:
            future = asyncio.get_running_loop().create_future()
            self._waiting.append((kwargs, future))
            return await future
        self._busy = True
        try:
            if self._bounded:
                return await self._single_within(kwargs)
            return await self._db.run_in_connection(allocate_sync, **kwargs)
        finally:
            if self._waiting:
                # held: the loop keeps only a weak reference to a task
                self._drainer = asyncio.ensure_future(self._drain())
            else:
                self._busy = False

    async def _single_within(self, kwargs: dict) -> AllocatedProtocol:
        args = dict(kwargs)
        deadline = args.pop("deadline")
        return await self._db.run_on_calls_connection(within, deadline, allocate_sync, **args)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    if self._bounded:
                        results = await self._db.run_on_calls_connection(allocate_many_within_sync,
                                                                         [k for k, _ in group])
                    else:
                        results = await self._db.run_in_connection(allocate_many_sync, [k for k, _ in group])
                except BaseException as exc:
                    results = [exc] * len(group)
                    if isinstance(exc, asyncio.CancelledError):
                        for _, future in group:
                            if not future.done():
                                future.cancel()
                        raise
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            for _, future in self._waiting:
                if not future.done():
                    future.cancel()
            self._waiting = []
            self._busy = False


class Protocols:
    """Async repository (``db.protocols``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue = _AllocationQueue(db)
        self._bounded_queue = _AllocationQueue(db, bounded=True)

    async def allocate_for_call(
        self,
        call_id: int,
        *,
        year: int,
        allocated_at: str | datetime,
        sms: SmsDraft | None,
    ) -> AllocatedProtocol:
        """Protocol + call update + outbox row in one transaction (one thread hop,
        shared with allocations that arrive meanwhile)."""
        return await self._queue.allocate(
            year=year,
            allocated_at=allocated_at,
            kind="call",
            call_id=call_id,
            sms=sms,
        )

    async def allocate_for_call_within(
        self,
        seconds: float,
        call_id: int,
        *,
        year: int,
        allocated_at: str | datetime,
        sms: SmsDraft | None,
    ) -> AllocatedProtocol:
        """:meth:`allocate_for_call` for a caller who is waiting: done within ``seconds`` or
        not at all (:class:`StorageUnavailable`), on the calls' connection."""
        return await self._bounded_queue.allocate(
            deadline=time.monotonic() + seconds, year=year, allocated_at=allocated_at, kind="call",
            call_id=call_id, sms=sms)

    async def allocate(
        self,
        *,
        kind: str = "request",
        year: int,
        allocated_at: str | datetime | None = None,
    ) -> str:
        """A protocol not tied to a call (customer requests...).  Returns it."""
        at = self._db.now() if allocated_at is None else allocated_at
        result = await self._db.run_in_connection(
            allocate_sync, year=year, allocated_at=at, kind=kind
        )
        return result.protocol

    async def get(self, protocol: str) -> dict | None:
        return await self._db.run_in_connection(get_sync, protocol)
