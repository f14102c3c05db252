"""SendLedger: a receipt waits for the sends on the wire when it arrived, not for later ones."""

from __future__ import annotations

import asyncio

from callproof.sms.ledger import SendLedger


async def test_waits_for_the_sends_opened_before_it_only():
    ledger = SendLedger()
    assert await ledger.wait_settled(0.01)  # nothing on the wire: at once
    a, b = ledger.opened(), ledger.opened()
    waiter = asyncio.create_task(ledger.wait_settled(5))
    await asyncio.sleep(0.01)
    later = ledger.opened()  # sent after the receipt arrived: not waited for
    ledger.settled([b])
    await asyncio.sleep(0.01)
    assert not waiter.done()
    ledger.settled([a])
    assert await waiter is True
    assert ledger.unsettled() == 1
    ledger.settled([later])
    assert ledger.unsettled() == 0


async def test_the_wait_is_bounded():
    ledger = SendLedger()
    ledger.opened()
    assert await ledger.wait_settled(0.05) is False
