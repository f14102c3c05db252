"""Seeded databases for the metrics tests: calls, recordings, SMS and requests as calls leave them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callproof.storage import Database, NewCall
from tests.call_rows import advance

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def new_call(db: Database, n: int, **kw: object) -> int:
    return await db.calls.create(NewCall(channel_id=f"chan-{n}", uniqueid=f"uid-{n}", linkedid=f"uid-{n}",
                                         caller_number_raw="11987654321", caller_number="+5511987654321",
                                         caller_name=None, dialled_number="4000", language="pt_BR",
                                         started_at=T0 + timedelta(minutes=n), **kw))  # type: ignore[arg-type]


@pytest.fixture
async def seeded(target):
    """3 completed calls, 1 failed, 1 abandoned in the announcement, 1 still recording;
    one recording finalised, one failed; two open requests, one of them overdue."""
    async with Database.open(target) as db:  # SQLite and PostgreSQL (tests/conftest.py)
        for n in range(3):
            cid = await new_call(db, n)
            await advance(db, cid, "handed_off", consent_outcome="finished", handed_off_at=T0)
            await advance(db, cid, "completed", ended_at=T0 + timedelta(minutes=5))
        cid = await new_call(db, 3)
        await advance(db, cid, "failed", ended_at=T0, error="x")
        cid = await new_call(db, 4)
        await advance(db, cid, "abandoned_in_consent", consent_outcome="caller_left", ended_at=T0)
        live = await new_call(db, 5)
        await advance(db, live, "recording", consent_outcome="finished")

        def rows(conn):
            conn.execute("INSERT INTO recordings (call_id, path, started_at, state) VALUES (1, '/r/a.wav', ?,"
                         " 'finalised')", (T0.isoformat(),))
            conn.execute("INSERT INTO recordings (call_id, path, started_at, state) VALUES (2, '/r/b.wav', ?,"
                         " 'failed')", (T0.isoformat(),))
            conn.execute("INSERT INTO recording_requests (protocol, opened_at, due_at, state, channel)"
                         " VALUES ('20260000000000001', '2026-03-01T00:00:00.000000Z', '2026-03-05T00:00:00.000000Z',"
                         " 'received', 'cli')")
            conn.execute("INSERT INTO recording_requests (protocol, opened_at, due_at, state, channel)"
                         " VALUES ('20260000000000002', '2026-02-01T00:00:00.000000Z', '2026-02-10T00:00:00.000000Z',"
                         " 'received', 'cli')")
        await db.run_in_connection(rows)
        yield db
