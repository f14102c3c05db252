"""The journal (storage/journal.py): appended, replayed in order, idempotent, safe after a crash."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import asdict

import pytest

from callproof.storage import NewCall, connect_sync
from callproof.storage import calls as calls_table
from callproof.storage import recordings as recordings_table
from callproof.storage.journal import Journal, ReplayConnection, read_entries, replay_sync

NOW = "2026-11-22T15:30:00.000000Z"
CHANNEL = "1700000000.7"


def new_call(channel: str = CHANNEL) -> NewCall:
    return NewCall(channel_id=channel, uniqueid=channel, linkedid=channel, caller_number_raw="11987654321",
                   caller_number="+5511987654321", caller_name="Cliente", dialled_number="551130000000",
                   language="pt_BR", started_at=NOW)


def journal_a_call(journal: Journal, channel: str = CHANNEL, path: str = "/rec/a.wav") -> None:
    """What a call writes when storage is unavailable from its arrival to its end (after its protocol)."""
    journal.append(channel, "call.create", call=asdict(new_call(channel)))
    journal.append(channel, "call.update", changes={"error": "storage_unavailable: database locked"})
    journal.append(channel, "call.update", changes={"consent_outcome": "finished", "consent_finished_at": NOW})


@pytest.fixture
def conn(target):
    """The database the journal is replayed into: SQLite, and PostgreSQL (a live call's
    journal is brought in on either: tests/integration/test_pg_call.py)."""
    c = connect_sync(target)
    yield c
    c.close()


def row(conn, channel: str = CHANNEL) -> dict | None:
    return calls_table.get_by_channel_sync(conn, channel)


def test_entries_are_fsynced_lines_in_a_private_file(tmp_path):
    journal = Journal(tmp_path / "cp.db.journal")
    journal_a_call(journal)
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    entries = read_entries(journal.path)
    assert [e["op"] for e in entries] == ["call.create", "call.update", "call.update"]
    assert journal.pending(CHANNEL) and journal.has_pending


def test_replay_builds_the_row_in_order_and_removes_the_file(tmp_path, conn):
    journal = Journal(tmp_path / "cp.db.journal")
    journal_a_call(journal)
    result = replay_sync(conn, journal, NOW)
    assert result.applied == 3 and result.channels == {CHANNEL}
    r = row(conn)
    assert r["status"] == "consent_playing" and r["consent_outcome"] == "finished"
    assert r["error"].startswith("storage_unavailable")
    assert not journal.path.exists() and not journal.has_pending and not journal.pending(CHANNEL)


def test_the_end_of_a_handed_off_call_in_the_journal_completes_it(tmp_path, conn):
    """Protocol given with storage up, then storage away: the later steps and the end from the journal."""
    call_id = calls_table.create_sync(conn, new_call(), NOW)
    for status in ("protocol_reading", "protocol_given"):
        conn.execute("UPDATE calls SET status = ? WHERE id = ?", (status, call_id))
    journal = Journal(tmp_path / "j")
    journal.append(CHANNEL, "recording.create", path="/rec/a.wav", recording={
        "protocol": None, "caller_number": "11987654321", "started_at": NOW, "retention_until": None,
        "retention_class": "consumer_service"})
    journal.append(CHANNEL, "call.update", changes={"status": "recording", "recording_started_at": NOW})
    journal.append(CHANNEL, "call.update", changes={"status": "handed_off", "handed_off_at": NOW})
    journal.append(CHANNEL, "recording.finalise", path="/rec/a.wav", facts={
        "size_bytes": 1044, "duration_ms": 125, "sha256": "ab" * 32, "finalised_at": NOW})
    journal.append(CHANNEL, "call.ended", ended_at=NOW, hangup_cause="Hangup:Normal Clearing")
    replay_sync(conn, journal, NOW)
    r = row(conn)
    assert (r["status"], r["ended_at"], r["hangup_cause"]) == ("completed", NOW, "Hangup:Normal Clearing")
    [rec] = recordings_table.for_call_sync(conn, call_id)
    assert rec["state"] == "finalised" and rec["sha256"] == "ab" * 32


def test_replay_is_idempotent_after_a_crash_half_way(tmp_path, conn):
    """A replay that crashed after applying some entries (its renamed file left behind) is
    applied again in full next time: the same row, nothing twice."""
    journal = Journal(tmp_path / "j")
    journal_a_call(journal)
    journal.append(CHANNEL, "call.update", changes={"status": "failed"})
    journal.append(CHANNEL, "call.ended", ended_at=NOW, hangup_cause="Hangup")
    saved = tmp_path / "copy"
    shutil.copy(journal.path, saved)
    replay_sync(conn, journal, NOW)
    first = row(conn)
    shutil.copy(saved, journal.path.with_name(journal.path.name + ".replaying-1-000001"))  # the crashed one
    again = Journal(journal.path)  # the next process
    result = replay_sync(conn, again, NOW)
    assert result.skipped >= 2  # the creation and the status change were in already
    second = row(conn)
    assert {k: v for k, v in second.items() if k != "updated_at"} == {k: v for k, v in first.items()
                                                                      if k != "updated_at"}
    assert second["status"] == "failed" and second["ended_at"] == NOW
    assert not list(tmp_path.glob("j.replaying-*"))


def test_a_torn_last_line_is_left_out(tmp_path, conn):
    journal = Journal(tmp_path / "j")
    journal_a_call(journal)
    with open(journal.path, "ab") as fh:
        fh.write(b'{"channel": "x", "op": "call.upd')  # the process died mid-append
    replay_sync(conn, journal, NOW)
    assert row(conn)["consent_outcome"] == "finished"


def test_an_unwritable_journal_keeps_entries_in_memory(tmp_path, conn, monkeypatch):
    journal = Journal(tmp_path / "j")

    def full(line: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "_append_line", full)
    journal_a_call(journal)
    assert not journal.path.exists() and journal.has_pending
    replay_sync(conn, journal, NOW)
    assert row(conn)["consent_outcome"] == "finished" and not journal.has_pending


def test_appends_during_a_replay_go_to_a_new_file(tmp_path, conn):
    journal = Journal(tmp_path / "j")
    journal_a_call(journal, "a")
    files, _ = journal.take()  # a replay has moved the file aside ...
    journal_a_call(journal, "b")  # ... and a call appends meanwhile
    assert [e["channel"] for e in read_entries(journal.path)] == ["b", "b", "b"]
    assert files and all(e["channel"] == "a" for e in read_entries(files[0]))
    replay_sync(conn, journal, NOW)
    assert row(conn, "a") and row(conn, "b")


def test_one_replay_at_a_time(tmp_path, conn, target):
    import fcntl

    from callproof.storage.errors import StorageUnavailable

    journal = Journal(tmp_path / "j")
    journal_a_call(journal)
    with open(journal.path.with_name("j.lock"), "a") as other:  # another process is replaying
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(StorageUnavailable) as raised:
            replay_sync(conn, journal, NOW)
    assert raised.value.problem == "locked"
    ReplayConnection(target, 1000).replay(journal)
    assert row(conn) is not None


def test_entries_hold_nothing_but_what_the_row_holds(tmp_path):
    journal = Journal(tmp_path / "j")
    journal_a_call(journal)
    for entry in read_entries(journal.path):
        assert set(entry) <= {"channel", "op", "call", "changes"}
        json.dumps(entry)


def test_the_journal_shares_the_databases_group_access_never_others(tmp_path):
    from callproof.storage.journal import mode_beside

    database = tmp_path / "cp.db"
    database.touch()
    database.chmod(0o640)
    old = os.umask(0o077)
    try:
        journal = Journal(tmp_path / "j", mode_beside(database))
        journal_a_call(journal)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o640
    database.chmod(0o666)
    assert mode_beside(database) == 0o660


def test_submitted_entries_are_written_in_order_by_the_writer_thread(tmp_path):
    journal = Journal(tmp_path / "j")
    for i in range(50):
        journal.submit(CHANNEL, "call.update", changes={"protocol_read_count": i})
    assert journal.pending(CHANNEL) and journal.has_pending  # before they are on disk, too
    assert journal.flush(timeout=10)
    assert [e["changes"]["protocol_read_count"] for e in read_entries(journal.path)] == list(range(50))
