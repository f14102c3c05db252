"""``callproof recording encrypt``: plaintext recordings encrypted where they lie, each checked
against its signed record (or its recording.finalised audit entry when unsigned) first;
every state a crash can leave is finished by the next run; a file that does not match is
left as it is and audited."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from callproof.encryption import decrypt
from callproof.encryption.atrest import encrypt_beside, open_dir
from callproof.encryption.migration import STRAY_AGE_SECONDS, lock_path, migration_lock, run_migration
from callproof.evidence.keys import trusted_from_config
from callproof.integrity import verify_recordings
from callproof.storage import SyncDatabase, connect_sync
from callproof.storage import recordings as recordings_store
from tests.unit.evidence.test_encrypted_verify import cli

from .fakekeys import FakeKeyring
from .world import CLASS, UNTIL, encrypted_config, finalise_with, unfinalised_call, write_keyring


def plaintext_calls(config, n: int = 3, *, keyring=None) -> tuple[list[dict], FakeKeyring]:
    """n recordings finalised with encryption off; then the keys exist (as after 'keys init')."""
    recs = []
    for i in range(n):
        rec = unfinalised_call(config, channel=f"ch-{i}")
        finalise_with(config, rec, keyring)
        recs.append(rec)
    keys = FakeKeyring()
    from callproof.storage.timefmt import parse_db_time
    keys.recipients_for(CLASS, parse_db_time(UNTIL))  # the period key, made ahead
    write_keyring(config, keys)
    return recs, keys


def _migrate(config, **kw):
    conn = connect_sync(config.storage.target)
    try:
        items: list[dict] = []
        summary = run_migration(config, SyncDatabase.wrap(conn), actor="ops", report=items.append, **kw)
        return summary, items
    finally:
        conn.close()


def _rows(config):
    conn = connect_sync(config.storage.target)
    try:
        return {r["id"]: r for r in (recordings_store.get_sync(conn, i) for (i,) in
                                     conn.execute("SELECT id FROM recordings ORDER BY id"))}
    finally:
        conn.close()


def _plain_of(path: Path, keys: FakeKeyring) -> bytes:
    out = io.BytesIO()
    with path.open("rb") as fh:
        decrypt(fh, out, keys.identities())
    return out.getvalue()


def test_plaintext_recordings_are_encrypted_checked_and_verify_without_a_key(tmp_path, target):
    config = encrypted_config(tmp_path, target=target)
    recs, keys = plaintext_calls(config)
    summary, _items = _migrate(config)
    assert summary.counts["encrypted"] == 3 and summary.problems == 0
    rows = _rows(config)
    for rec in recs:
        row = rows[rec["recording_id"]]
        age = Path(str(rec["path"]) + ".age")
        assert not rec["path"].exists() and row["encryption"] == "encrypted" and row["age_path"] == str(age)
        assert row["key_ids"] == "consumer-2027-03"
        assert _plain_of(age, keys) == rec["plaintext"]
    conn = connect_sync(config.storage.target)
    try:
        results = list(verify_recordings(conn, config.recording.root, trusted=trusted_from_config(config)))
        entries = [json.loads(d) for (d,) in conn.execute(
            "SELECT details FROM audit_log WHERE action = 'recording.encrypted'")]
    finally:
        conn.close()
    assert [r["result"] for r in results] == ["ok"] * 3
    assert all("recording.encrypted audit entry" in r["detail"] for r in results)  # signed before encryption
    assert {e["checked_against"] for e in entries} == {"signed evidence record"}
    assert _migrate(config)[0].counts["encrypted"] == 0  # nothing left to do


def test_a_plaintext_that_does_not_match_its_record_is_left_and_audited(tmp_path, target):
    config = encrypted_config(tmp_path, target=target)
    recs, _ = plaintext_calls(config, 2)
    victim = recs[0]["path"]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    summary, items = _migrate(config)
    assert (summary.counts["encrypted"], summary.counts["mismatch"]) == (1, 1)
    assert victim.read_bytes() == bytes(data) and not Path(str(victim) + ".age").exists()
    assert _rows(config)[recs[0]["recording_id"]]["encryption"] is None
    (bad,) = [i for i in items if i["result"] == "mismatch"]
    assert "signed evidence record says" in bad["detail"]


def test_unsigned_recordings_are_checked_against_their_finalisation_audit_entry(tmp_path, target):
    config = encrypted_config(tmp_path, target=target, key=False)
    _recs, _keys = plaintext_calls(config, 1)
    summary, _items = _migrate(config)
    assert summary.counts["encrypted"] == 1
    conn = connect_sync(config.storage.target)
    try:
        (entry,) = [json.loads(d) for (d,) in conn.execute(
            "SELECT details FROM audit_log WHERE action = 'recording.encrypted'")]
    finally:
        conn.close()
    assert entry["checked_against"].startswith("recording.finalised audit entry")


def test_every_state_a_crash_leaves_is_finished_by_the_next_run(tmp_path, target):
    config = encrypted_config(tmp_path, target=target)
    recs, keys = plaintext_calls(config, 3)
    old, young, half = recs
    # 1. an age file no row names, left by a crash long ago: removed and redone
    stray = Path(str(old["path"]) + ".age")
    stray.write_bytes(b"half-written")
    past = time.time() - STRAY_AGE_SECONDS - 10
    os.utime(stray, (past, past))
    # 2. one written moments ago (a finalisation may be under way): left for the next run
    Path(str(young["path"]) + ".age").write_bytes(b"in progress")
    # 3. the row says encrypted, the plaintext is still there (killed before the unlink)
    dir_fd = open_dir(half["path"].parent)
    try:
        with half["path"].open("rb") as fh:
            d = encrypt_beside(fh, dir_fd, half["path"].name, (keys.periods["consumer-2027-03"].recipient,))
    finally:
        os.close(dir_fd)
    conn = connect_sync(config.storage.target)
    recordings_store.mark_encrypted_sync(conn, half["recording_id"], age_path=str(half["path"]) + ".age",
                                         ciphertext_sha256=d.ciphertext_sha256, ciphertext_size=d.ciphertext_size,
                                         payload_sha256=d.payload_sha256, key_ids=("consumer-2027-03",))
    conn.close()
    _, items = _migrate(config)
    by_id = {i["id"]: i["result"] for i in items}
    assert by_id == {old["recording_id"]: "encrypted", young["recording_id"]: "busy",
                     half["recording_id"]: "finished"}
    assert _plain_of(stray, keys) == old["plaintext"] and not old["path"].exists()
    assert young["path"].exists() and not half["path"].exists()
    past = time.time() - STRAY_AGE_SECONDS - 10
    os.utime(Path(str(young["path"]) + ".age"), (past, past))
    _summary, items = _migrate(config)
    assert [i["result"] for i in items] == ["encrypted"]
    assert _plain_of(Path(str(young["path"]) + ".age"), keys) == young["plaintext"]


def test_pending_recordings_are_encrypted_and_a_missing_period_key_is_reported(tmp_path, target):
    config = encrypted_config(tmp_path, target=target)
    rec = unfinalised_call(config)
    finalise_with(config, rec, FakeKeyring(missing=frozenset({CLASS})))  # pending: no key then
    assert _rows(config)[rec["recording_id"]]["encryption"] == "pending"
    write_keyring(config, FakeKeyring())  # still no period key on disk: only the hold key
    _, items = _migrate(config)
    assert [i["result"] for i in items] == ["no_key"] and "consumer-2027-03" in items[0]["detail"]
    keys = FakeKeyring()
    from callproof.storage.timefmt import parse_db_time
    keys.recipients_for(CLASS, parse_db_time(UNTIL))
    write_keyring(config, keys)
    _summary, items = _migrate(config)
    assert [i["result"] for i in items] == ["encrypted"]
    row = _rows(config)[rec["recording_id"]]
    assert row["encryption"] == "encrypted" and row["encryption_error"] is None


def test_the_cli_runs_once_at_a_time_and_says_what_it_did(tmp_path, target, capsys):
    config = encrypted_config(tmp_path, target=target)
    plaintext_calls(config, 2)
    with migration_lock(lock_path(config)):
        assert cli(config, tmp_path, "recording", "encrypt") == 75
    assert "another 'recording encrypt' is running" in capsys.readouterr().err
    assert cli(config, tmp_path, "recording", "encrypt", "--json") == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["result"] for x in lines if x["type"] == "item"] == ["encrypted", "encrypted"]
    assert lines[-1]["type"] == "summary" and lines[-1]["encrypted"] == 2


@pytest.mark.parametrize("enabled", [False])
def test_the_cli_refuses_when_encryption_is_off(tmp_path, target, capsys, enabled):
    import dataclasses
    config = encrypted_config(tmp_path, target=target)
    config = dataclasses.replace(config, encryption=dataclasses.replace(config.encryption, enabled=enabled))
    from tests.unit.evidence.test_records import _toml, main
    p = tmp_path / "c.toml"
    p.write_text(_toml(config))
    p.chmod(0o600)
    assert main(["--config", str(p), "recording", "encrypt"]) == 2
    assert "encryption.enabled" in capsys.readouterr().err


def test_a_row_pointing_outside_the_recordings_root_is_not_touched(tmp_path, target):
    config = encrypted_config(tmp_path, target=target)
    recs, _ = plaintext_calls(config, 1)
    outside = tmp_path / "elsewhere" / "victim.wav"
    outside.parent.mkdir()
    outside.write_bytes(recs[0]["plaintext"])  # the very bytes its record signs
    conn = connect_sync(config.storage.target)
    conn.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(outside), recs[0]["recording_id"]))
    conn.close()
    _, items = _migrate(config)
    assert [i["result"] for i in items] == ["error"] and "not under [recording] root" in items[0]["detail"]
    assert outside.exists() and not Path(str(outside) + ".age").exists()


def test_the_configured_keyring_encrypts_the_recordings_of_its_database(tmp_path, target):
    """``[encryption]`` loaded as ``callproof run`` loads it (atrest.configure): a recording
    finalised on that configuration's database -- the SQLite file or the ``[storage] url`` --
    is encrypted (the keyring was once filed under the file name alone, so a PostgreSQL
    database's recordings stayed plaintext)."""
    import asyncio
    from datetime import datetime

    from callproof.callflow.recording_files import finalise_recording
    from callproof.encryption import atrest
    from callproof.storage import Database
    from tests.unit.evidence.world import NOW_ISO

    config = encrypted_config(tmp_path, target=target)
    keys = FakeKeyring()
    keys.recipients_for(CLASS, datetime.fromisoformat(UNTIL))  # the recording's period key, on disk
    write_keyring(config, keys)
    rec = unfinalised_call(config)
    atrest.configure(config)

    async def finalise() -> None:
        db = await Database.open(config.storage.target)
        try:
            assert await finalise_recording(db, rec["recording_id"], rec["path"], NOW_ISO, attempts=1)
        finally:
            await db.close()

    try:
        asyncio.run(finalise())
    finally:
        atrest.use_keyring(None, config.storage.target)
    [row] = _rows(config).values()
    assert row["encryption"] == "encrypted" and not rec["path"].exists()
