"""Bringing the journal in: what calls could not write while storage was unavailable
(``storage/journal.py``), applied as soon as the database takes writes again.

The long-running processes (``callproof run``, ``callproof fastagi``) replay once at start-up
(what a previous process left), then every ``INTERVAL`` seconds while anything waits, on a
connection of their own in a worker thread, so a replay held up by a lock never holds up a
caller.  A call that needs its own writes in now (its protocol, ``call_store.py``) asks for
:meth:`JournalReplayer.replay_within`, bounded by its wait like every step of a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from callproof.config import Config
from callproof.evidence.records import sealer_for
from callproof.logs import event
from callproof.storage import Database, is_storage_error
from callproof.storage.errors import StorageUnavailable, storage_problem
from callproof.storage.journal import Journal, ReplayConnection, ReplayResult, mode_beside, replay_sync

log = logging.getLogger("callproof.storage.journal")

def journal_for(config: Config) -> Journal:
    """The configuration's journal (every process of a host appends to the same one): its
    replay finalises recordings with their signed evidence record, by this database's key,
    like a live finalisation."""
    return Journal(config.storage.journal_path, mode_beside(config.storage.database),
                   sealer=sealer_for(config.storage.target))


def settle_journalled(config: Config, ids: frozenset[int]) -> None:
    """Recordings a replay finalised with encryption facts (blocking: a worker thread): the
    plaintext of an encrypted one removed, a pending one encrypted if a key fits now, by the
    code of ``callproof recording encrypt`` (callproof/encryption/migration.py)."""
    from callproof.encryption.migration import settle_recordings
    from callproof.storage import open_sync

    with open_sync(config) as db:
        for rid, (outcome, detail) in settle_recordings(config, db, ids, actor="callproof").items():
            bad = outcome not in ("encrypted", "finished")
            event(log, "recording.settled", logging.WARNING if bad else logging.INFO, recording_id=rid,
                  outcome=outcome, detail=detail, via="journal")


INTERVAL = 1.0
#: The background replay's busy wait: short, so that a call bringing its own journal in
#: (replay_within) never waits long behind it; the next attempt is a second later anyway.
BACKGROUND_BUSY_MS = 250


class JournalReplayer:
    def __init__(self, db: Database, journal: Journal, config: Config):
        self.db, self.journal, self.config = db, journal, config
        self._lock = asyncio.Lock()
        self._conn = ReplayConnection(config.storage.target,
                                      min(config.storage.busy_timeout_ms, BACKGROUND_BUSY_MS), now=db.now,
                                      password=config.storage.password)
        self._last_problem: str | None = None
        self._settling: set[asyncio.Future] = set()

    def _report(self, result: ReplayResult) -> None:
        if result.applied or result.skipped:
            event(log, "storage.journal_replayed", applied=result.applied, skipped=result.skipped,
                  calls=len(result.channels))
        self._last_problem = None
        if result.to_settle and self.config.encryption.enabled:  # never on a call's time
            task = asyncio.ensure_future(asyncio.to_thread(settle_journalled, self.config, result.to_settle))
            self._settling.add(task)
            task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Future) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            event(log, "recording.settle_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}"[:300],
                  hint="'callproof recording encrypt' finishes it (docs/keys.md)")

    async def settled(self) -> None:
        """Wait for the settling of what earlier replays finalised (tests, shutdown)."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    def _failed(self, exc: BaseException) -> None:
        problem = storage_problem(exc)
        if problem != self._last_problem:  # once per kind of trouble, not every second
            event(log, "storage.journal_waiting", logging.WARNING, problem=problem)
        self._last_problem = problem

    async def replay_once(self) -> bool:
        """One replay on the replayer's own connection; False when storage is still unavailable."""
        if not self.journal.has_pending:
            return True
        async with self._lock:
            try:
                result = await asyncio.to_thread(self._conn.replay, self.journal)
            except Exception as exc:
                if not is_storage_error(exc):
                    log.exception("journal replay failed")
                self._failed(exc)
                return False
        self._report(result)
        return True

    async def replay_within(self, seconds: float) -> Any:
        """A replay for a call waiting on it: within ``seconds`` or StorageUnavailable."""
        deadline = time.monotonic() + seconds
        try:
            async with asyncio.timeout(seconds):
                await self._lock.acquire()
        except TimeoutError:
            raise StorageUnavailable("timeout", "a journal replay is under way") from None
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageUnavailable("timeout", "the wait ran out behind a journal replay")
            result = await self.db.run_within(left, replay_sync, self.journal, self.db.now())
        finally:
            self._lock.release()
        self._report(result)
        return result

    async def run(self) -> None:
        """For ever: replay while anything waits."""
        while True:
            await asyncio.sleep(INTERVAL)
            if self.journal.has_pending:
                await self.replay_once()

    def close(self) -> None:
        self._conn.close()
