"""The sends of this process whose answer is not written yet, so that a
delivery receipt is matched only after the acceptance it may belong to.

An SMSC can send a receipt before the submit_sm_resp that tells us the
message id, or just after it while the answer is still waiting for its
group commit.  Matched at once, such a receipt finds no row with that id,
or (when the SMSC restarted and gives out its ids again) an older row that
had the same id.  So a receipt first waits until every send that was on
the wire when it arrived has its answer committed (or has given up); then
storage matches it (``callproof.storage.outbox_receipts``).  The wait is
bounded: after it the receipt is stored anyway, and held there until its
acceptance is written.  Costs one counter and one dict entry per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class SendLedger:
    def __init__(self) -> None:
        self._seq = 0
        self._open: dict[int, None] = {}  # insertion order = send order: the first key is the oldest
        self._changed = asyncio.Event()
        self._waiters = 0  # receipts waiting: only then is a settlement signalled

    def opened(self) -> int:
        """A message is about to be written: its number in the ledger."""
        self._seq += 1
        self._open[self._seq] = None
        return self._seq

    def settled(self, seqs: Iterable[int]) -> None:
        """These sends' answers are committed (or will never be)."""
        pop = self._open.pop
        for seq in seqs:
            pop(seq, None)
        if self._waiters:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def unsettled(self) -> int:
        return len(self._open)

    async def wait_settled(self, timeout: float) -> bool:
        """Wait until every send opened so far is settled; False if the time
        ran out first."""
        mark = self._seq
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._open and next(iter(self._open)) <= mark:
            left = deadline - loop.time()
            if left <= 0:
                return False
            changed = self._changed
            self._waiters += 1
            try:
                async with asyncio.timeout(left):
                    await changed.wait()
            except TimeoutError:
                return False
            finally:
                self._waiters -= 1
        return True
