"""CallStore (callproof/callflow/call_store.py): a call's storage with a bound on the caller's wait."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict

from callproof.callflow.call_store import CallStore
from callproof.storage import Database, NewCall
from callproof.storage.journal import Journal, read_entries

NOW = "2026-11-22T15:30:00.000000Z"


def new_call(channel: str) -> NewCall:
    return NewCall(channel_id=channel, uniqueid=channel, linkedid=channel, caller_number_raw="11987654321",
                   caller_number=None, caller_name=None, dialled_number="5511", language="pt_BR", started_at=NOW)


def lock(path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("UPDATE protocol_sequences SET last_value = last_value WHERE 0")
    return other


async def test_writes_go_to_the_journal_in_order_once_storage_failed(tmp_path):
    async with Database.open(tmp_path / "cp.db") as db:
        journal = Journal(tmp_path / "j")
        store = CallStore(db, journal, 0.2, "ch.1")
        other = lock(tmp_path / "cp.db")
        try:
            assert await store.existing() is None
            assert await store.create(new_call("ch.1")) is None
            other.execute("ROLLBACK")  # storage is back, but this call's writes keep their order
            await store.update(consent_outcome="finished")
        finally:
            other.close()
        journal.flush()
        ops = [(e["op"], e.get("changes")) for e in read_entries(journal.path)]
        assert ops[0][0] == "call.create" and ops[1][1]["error"].startswith("storage_unavailable: database locked")
        assert ops[2] == ("call.update", {"consent_outcome": "finished"})
        assert await db.calls.get_by_channel("ch.1") is None and store.problem == "locked"


async def test_a_call_resumed_while_in_the_journal_keeps_its_story(tmp_path):
    """After an ARI reconnect the flow starts again on the channel: its row is what the journal holds."""
    async with Database.open(tmp_path / "cp.db") as db:
        journal = Journal(tmp_path / "j")
        journal.append("ch.2", "call.create", call=asdict(new_call("ch.2")))
        journal.append("ch.2", "call.update", changes={"consent_outcome": "finished"})
        store = CallStore(db, journal, 0.2, "ch.2")
        row = await store.existing()
        assert row is not None and row["id"] is None and row["consent_outcome"] == "finished"
        assert row["status"] == "consent_playing" and store.journalled


async def test_the_protocol_step_brings_the_journal_in_first(tmp_path):
    from callproof.storage.protocols import SmsDraft

    async with Database.open(tmp_path / "cp.db") as db:
        journal = Journal(tmp_path / "j")
        store = CallStore(db, journal, 0.5, "ch.3")
        other = lock(tmp_path / "cp.db")
        try:
            await store.create(new_call("ch.3"))
        finally:
            other.execute("ROLLBACK")
            other.close()
        draft = SmsDraft(destination=None, language="pt_BR", render_body=lambda p: f"protocol {p}")
        result = await store.allocate(year=2026, allocated_at=NOW, sms=draft)
        row = await db.calls.get_by_channel("ch.3")
        assert row["protocol"] == result.protocol and row["id"] == store.call_id and not store.journalled
        assert not journal.path.exists()
