"""The development ``log`` backend sends nothing, so its SMS end 'logged' (never 'sent'),
are never counted as sent, and its log line holds neither the phone number nor the text."""

from __future__ import annotations

import json
import logging
import random

from callproof.logs import JsonFormatter
from callproof.sms import OutboxSender
from callproof.sms.backends import LogBackend, masked_destination
from callproof.sms.metrics import exposition

from .test_sender import MOBILE, Clock, db, queue  # noqa: F401  (db is a fixture)


async def test_log_backend_rows_are_logged_not_sent(db, caplog):
    [oid] = await queue(db, 1)
    with caplog.at_level(logging.INFO, logger="callproof.sms"):
        assert await OutboxSender(db, LogBackend(), clock=Clock(), rng=random.Random(1), owner="w1",
                                  lease_seconds=30).drain_once() == 1
    row = await db.outbox.get(oid)
    assert row["state"] == "logged" and row["next_attempt_at"] is None
    metrics = exposition(await db.outbox.counters())
    assert "callproof_sms_sent_total 0" in metrics and "callproof_sms_logged_total 1" in metrics
    assert 'callproof_sms_outbox{state="logged"} 1' in metrics
    assert 'callproof_sms_outbox{state="sent"} 0' in metrics
    lines = [JsonFormatter().format(r) for r in caplog.records]
    assert all(json.loads(line) for line in lines)
    text = "\n".join(lines)
    assert "sms.logged" in text and "sms.sent" not in text
    assert MOBILE not in text and MOBILE[3:] not in text and "Protocolo" not in text
    assert masked_destination(MOBILE) in text


def test_masked_destination_keeps_only_the_last_two_digits():
    assert masked_destination("+5511912345678") == "************78"
    assert masked_destination(None) == "-" and masked_destination("+551") == "****"
