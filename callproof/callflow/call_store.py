"""One call's storage, with a bound on how long the caller waits for it.

Every write a step makes goes through :class:`CallStore`: it runs within ``[storage]
call_wait_seconds`` on the calls' own connection (:meth:`Database.run_within`: done in
time or certainly not done).  When storage does not answer in time or refuses (locked,
read-only, disk full) the call goes on: the write is appended to the journal
(``storage/journal.py``) and so is every later write of this call, in order, so the row
is rebuilt exactly when the journal is replayed.  The one thing that cannot wait is the
protocol: a 17-digit gap-free number exists only once the database has written it, so
:meth:`allocate` first brings the call's journalled writes in and then allocates, within
the same bound, or raises :class:`StorageUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from callproof.logs import event
from callproof.storage import Database, NewCall
from callproof.storage import calls as calls_table
from callproof.storage import recordings as recordings_table
from callproof.storage.callbacks import Plan, end_call_sync
from callproof.storage.errors import StorageUnavailable, storage_problem
from callproof.storage.journal import Journal, replay_sync
from callproof.storage.protocols import AllocatedProtocol, SmsDraft
from callproof.store import node_of

from .reasons import Reason

log = logging.getLogger("callproof.flow")

T = TypeVar("T")


class CallStore:
    """The storage of the call on channel ``channel`` (see the module doc)."""

    def __init__(self, db: Database, journal: Journal | None, wait_seconds: float, channel: str,
                 replay: Callable[[float], Any] | None = None):
        self.db, self.journal, self.wait, self.channel = db, journal, wait_seconds, channel
        self.call_id: int | None = None
        self.journalled = False     # this call's writes go to the journal, in order, until brought in
        self.problem: str | None = None  # what was wrong with storage, once it was ("locked", ...)
        self._replay = replay
        self._arrival: float | None = None  # the deadline of the arrival: loading, then creating the row

    # ----------------------------------------------------------- plumbing
    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        deadline, self._arrival = self._arrival or time.monotonic() + self.wait, None
        return await self.db.run_by(deadline, fn, *args, **kwargs)

    def _unavailable(self, exc: BaseException, what: str) -> None:
        self.problem = storage_problem(exc)
        event(log, "storage.unavailable", logging.ERROR, channel=self.channel, step=what, problem=self.problem,
              journal=self.journal is not None)

    async def _write(self, what: str, op: str, data: dict[str, Any], fn: Callable[..., T], *args: Any,
                     **kwargs: Any) -> T | None:
        """Write now, or journal the write (None) when storage is unavailable or this call is journalled."""
        first = False
        if not self.journalled:
            try:
                return await self._run(fn, *args, **kwargs)
            except StorageUnavailable as exc:
                self._unavailable(exc, what)
                if self.journal is None:
                    raise
                self.journalled = first = True
        assert self.journal is not None
        self.journal.submit(self.channel, op, **data)  # the caller does not wait on the journal's disk
        if first:  # the row says why it was written late
            note = f"{Reason.STORAGE_UNAVAILABLE}: database {self.problem} at the {what} step; written from the journal"
            self.journal.submit(self.channel, "call.update", changes={"error": note})
        return None

    # --------------------------------------------------------------- reads
    async def existing(self) -> dict | None:
        """The call's row, if it exists (a resumed call, a later split step); None also when
        storage cannot say in time (the call is then treated as new: a replay never makes it twice)."""
        deadline = time.monotonic() + self.wait
        try:
            found = await self.db.run_by(deadline, calls_table.get_by_channel_sync, self.channel)
        except StorageUnavailable as exc:
            self._unavailable(exc, "load")
            found = None
        if found is None and self.journal is not None and self.journal.pending(self.channel):
            # a call this process already has in the journal (resumed after an ARI reconnect):
            # what it wrote there, and its writes go on there
            found = _row_from(await asyncio.to_thread(self.journal.entries_for, self.channel))
            self.journalled = found is not None
        self._arrival = deadline if found is None else None  # the creation shares the arrival's bound
        return found

    async def recordings(self) -> list[dict] | None:
        """The call's recording rows; None when storage cannot say (or they are journalled)."""
        if self.call_id is None or self.journalled:
            return None
        try:
            return await self._run(recordings_table.for_call_sync, self.call_id)
        except StorageUnavailable as exc:
            self._unavailable(exc, "recordings")
            return None

    # -------------------------------------------------------------- writes
    async def create(self, call: NewCall) -> int | None:
        """The new row's id, or None when its creation waits in the journal."""
        data = asdict(call)
        self.call_id = await self._write("create", "call.create", {"call": data}, calls_table.create_sync, call,
                                         self.db.now())
        return self.call_id

    async def update(self, **changes: Any) -> None:
        if self.call_id is None and not self.journalled:
            raise StorageUnavailable("error", "no call row to update")
        await self._write("update", "call.update", {"changes": changes}, calls_table.update_sync, self.call_id,
                          changes, self.db.now())

    async def identity(self, hashes: dict[str, str | None]) -> None:
        await self._write("identity", "call.identity", {"hashes": hashes}, _identity_sync, self.call_id, hashes,
                          self.db.now())

    async def end(self, changes: dict[str, Any], schedule_reason: str | None, plan: Plan | None) -> int | None:
        """The call's end (and its call-back, when due); journalled, the end waits for the replay
        and the call-back for the call-back sweep (``[callback]``, docs/callback.md)."""
        return await self._write("end", "call.update", {"changes": changes}, end_call_sync, self.call_id, changes,
                                 now=self.db.now(), schedule_reason=schedule_reason, plan=plan)

    async def recording_created(self, path: str, protocol: str, caller_part: str | None, started_at: str,
                                retention_until: str | None, retention_class: str | None) -> int | None:
        node = node_of(self.db.path)  # whose root holds the file until the mover takes it to the store
        data = {"path": path, "recording": {"protocol": protocol, "caller_number": caller_part,
                                            "started_at": started_at, "retention_until": retention_until,
                                            "retention_class": retention_class, "node": node}}
        return await self._write("recording", "recording.create", data, recordings_table.create_sync, self.call_id,
                                 protocol, path, caller_part, started_at, retention_until, retention_class, node)

    async def recording_failed(self, rec_id: int | None, path: str, error: str) -> None:
        if rec_id is None and not self.journalled:
            return
        await self._write("recording", "recording.fail", {"path": path, "error": error},
                          recordings_table.fail_sync, rec_id, error)

    # ------------------------------------------------------------ protocol
    async def allocate(self, *, year: int, allocated_at: str, sms: SmsDraft) -> AllocatedProtocol:
        """The protocol (and its SMS row) in one transaction, within the bound; a journalled call
        first has its journal brought in.  StorageUnavailable when that cannot be done in time."""
        deadline = time.monotonic() + self.wait  # one bound for the whole step
        if self.journalled:
            await self.bring_in(deadline)
        if self.call_id is None:
            raise StorageUnavailable(self.problem or "error", "the call row does not exist yet")
        try:
            return await self.db.protocols.allocate_for_call_within(_left(deadline), self.call_id, year=year,
                                                                    allocated_at=allocated_at, sms=sms)
        except StorageUnavailable as exc:
            self._unavailable(exc, "protocol")
            raise

    async def bring_in(self, deadline: float) -> None:
        """Replay the journal now (by ``deadline``), so this call's row is what it wrote."""
        if self.journal is None:
            raise StorageUnavailable(self.problem or "error", "no journal")
        try:
            if self._replay is not None:
                await self._replay(_left(deadline))
            else:
                await self.db.run_within(_left(deadline), replay_sync, self.journal, self.db.now())
            row = await self.db.run_within(_left(deadline), calls_table.get_by_channel_sync, self.channel)
        except StorageUnavailable as exc:
            self._unavailable(exc, "journal")
            raise
        if row is None:
            raise StorageUnavailable("error", "the call row is not in the database after the replay")
        self.call_id, self.journalled = int(row["id"]), False
        event(log, "storage.back", channel=self.channel, call_id=self.call_id)


def _row_from(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The call row as its journal entries make it (id None: it is not in the database yet)."""
    row: dict[str, Any] | None = None
    for e in entries:
        if e["op"] == "call.create":
            row = {**e["call"], "id": None, "status": "consent_playing", "protocol": None}
        elif e["op"] == "call.update" and row is not None:
            row.update(e["changes"])
    return row


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise StorageUnavailable("timeout", "the call's wait on storage ran out")
    return left


def _identity_sync(conn: Any, call_id: int | None, hashes: dict[str, str | None], now: str) -> None:
    if call_id is None:
        raise StorageUnavailable("error", "no call row")
    calls_table.set_identity_hashes_sync(conn, call_id, updated_at=now, **hashes)
