"""Readers find a recording's file through its row (migration 0018): the web page of another
node plays it once it is in the shared store (HTTP Range, exact bytes) and says where it is
while it is still on its node; the sweep of one node deletes the store's copy and its own
local files, never another node's; the store's names carry no caller-controlled string."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callproof.config import load_config
from callproof.retention.sweeper import Sweeper
from callproof.storage import connect_sync
from callproof.store.layout import store_name
from callproof.store.location import Elsewhere, locate
from callproof.store.mover import MARKER, Mover
from tests.retention_helpers import Builder, audit_actions, states
from tests.unit.rights.test_export import needs_ffmpeg
from tests.unit.web.test_app import login, make_site

NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
SP = datetime.now(UTC).astimezone().tzinfo


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    (store / MARKER).write_text("")
    return store


async def test_another_nodes_web_page_plays_the_recording_from_the_store(tmp_path):
    site = await make_site(tmp_path)
    try:
        rec_id, protocol = site.call["recording_id"], site.call["protocol"]
        data = site.call["path"].read_bytes()
        site.conn.execute("UPDATE recordings SET node = 'a' WHERE id = ?", (rec_id,))
        store = _store(tmp_path)
        node_b = dataclasses.replace(site.config, recording=dataclasses.replace(
            site.config.recording, root=tmp_path / "b-recordings", store=store, node="b"))
        site.app_ctx.config = node_b
        await login(site.client, "vera")
        url = f"/calls/{protocol}/audio"
        local = await site.client.get(url)  # still on node a: node b says so, serves nothing
        assert local.status == 404 and "still on node a" in await local.text()
        s = Mover(site.conn, site.config.recording.root, store, "a").run()
        assert s.moved == 1 and not site.call["path"].exists()
        part = await site.client.get(url, headers={"Range": "bytes=100-1099"})
        assert part.status == 206 and await part.read() == data[100:1100]
        assert part.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
        whole = await site.client.get(url)
        assert whole.status == 200 and await whole.read() == data
        assert {s["actor"] for s in site.audit("recording.streamed")} == {"web:vera"}
        site.app_ctx.config = dataclasses.replace(node_b, recording=dataclasses.replace(
            node_b.recording, store=None))  # a node that does not mount the store
        away = await site.client.get(url)
        assert away.status == 404 and "shared recordings store" in await away.text()
    finally:
        await site.client.close()
        site.pool.close()
        site.conn.close()


def test_store_names_never_carry_caller_strings():
    row = {"id": 7, "protocol": "20260000000000012", "started_at": "2026-03-10T14:00:01.000000Z",
           "path": "/r/2026/03/10/20260000000000012_5511912345678_x.wav", "encryption": "encrypted"}
    assert store_name(row) == "2026/03/10/20260000000000012-7.wav.age"
    odd = {"id": 8, "protocol": "../../etc", "started_at": "../x", "path": "/r/a.W;rm -rf"}
    assert store_name(odd) == "undated/recording-8.wav"


def test_locate_names_the_node_that_holds_a_local_file(tmp_path):
    config = load_config(_toml(tmp_path, node="b", store=tmp_path / "store"), env={}, require_asterisk_apis=False)
    row = {"id": 1, "path": str(tmp_path / "rec" / "x.wav"), "age_path": None, "node": "a", "store_path": None}
    with pytest.raises(Elsewhere, match="still on node a"):
        locate(row, config)
    assert locate({**row, "node": "b"}, config) == (tmp_path / "rec", row["path"])
    assert locate({**row, "node": None}, config)[1] == row["path"]  # a row from before migration 0018
    moved = {**row, "store_path": "2026/01/02/x-1.wav"}
    assert locate(moved, config)[1] == os.path.join(os.path.realpath(tmp_path / "store"), "2026/01/02/x-1.wav")


def _toml(tmp_path: Path, **recording) -> Path:
    lines = ["[storage]", f'database = "{tmp_path / "cp.db"}"', "[recording]", f'root = "{tmp_path / "rec"}"']
    lines += [f"{k} = {json.dumps(str(v))}" for k, v in recording.items()]
    path = tmp_path / "callproof.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("key", "value", "message"), [
    ("store", "relative/store", "absolute"), ("node", "a b", "letters, digits"),
    ("move_interval_seconds", 0.1, "between 1 and"),
])
def test_invalid_store_settings_stop_at_start_naming_the_key(tmp_path, key, value, message):
    from callproof.config import ConfigError

    extra = {"store": str(tmp_path / "store")} if key == "move_interval_seconds" else {}
    lines = ["[recording]", f'root = "{tmp_path / "rec"}"', *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
             f"{key} = {json.dumps(value)}"]
    path = tmp_path / "callproof.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={}, require_asterisk_apis=False)
    assert f"recording.{key}" in str(info.value)


def test_store_inside_the_root_is_refused(tmp_path):
    from callproof.config import ConfigError

    with pytest.raises(ConfigError, match=r"recording\.store"):
        load_config(_toml(tmp_path, store=tmp_path / "rec" / "store"), env={}, require_asterisk_apis=False)


def test_a_nodes_sweep_deletes_the_stores_copy_and_its_own_files_not_another_nodes(tmp_path, target):
    root, store = tmp_path / "rec", _store(tmp_path)
    root.mkdir()
    conn = connect_sync(target)
    try:
        b = Builder(conn, root)
        old = NOW - timedelta(days=200)
        mine, theirs, shared = b.add(old), b.add(old), b.add(old)
        conn.execute("UPDATE recordings SET node = 'a' WHERE id IN (?, ?)", (mine["id"], shared["id"]))
        conn.execute("UPDATE recordings SET node = 'b' WHERE id = ?", (theirs["id"],))
        Mover(conn, root, store, "a").run()  # `mine` too: put it back local, as if the store had been away
        conn.execute("UPDATE recordings SET store_path = NULL WHERE id = ?", (mine["id"],))
        Path(mine["path"]).write_bytes(b"RIFF-test-audio")
        moved = store / conn.execute("SELECT store_path FROM recordings WHERE id = ?", (shared["id"],)).fetchone()[0]
        assert moved.exists()
        # node b sweeps: the store's recording and its own; node a's local file is a's to delete
        summary = Sweeper(conn, root=root, tz=SP, now=lambda: NOW, recordings_store=store, node="b").sweep()
        assert summary.deleted == 2
        st = states(conn)
        assert (st[mine["id"]], st[theirs["id"]], st[shared["id"]]) == ("finalised", "deleted", "deleted")
        assert not moved.exists() and not os.path.exists(theirs["path"]) and os.path.exists(mine["path"])
        details = {e[0]: json.loads(e[2]) for e in audit_actions(conn, "recording.deleted")}
        assert details[f"recording:{shared['id']}"]["store_path"].endswith(f"-{shared['id']}.wav")
        assert Sweeper(conn, root=root, tz=SP, now=lambda: NOW, recordings_store=store, node="a").sweep().deleted == 1
        assert not os.path.exists(mine["path"])
    finally:
        conn.close()


def test_on_postgresql_one_sweep_holds_the_database_lock(target):
    from callproof.storage.retention import retention_store

    first, second = connect_sync(target), connect_sync(target)
    try:
        a, b = retention_store(first), retention_store(second)
        got_a, _ = a.try_sweep_lock()
        got_b, holder = b.try_sweep_lock()
        if target.startswith("postgresql"):
            assert (got_a, got_b) == (True, False) and "backend pid" in (holder or "")
            a.release_sweep_lock()
            assert b.try_sweep_lock() == (True, None)
        else:  # one host: the flock serves
            assert (got_a, got_b, holder) == (None, None, None)
    finally:
        first.close()
        second.close()


def test_a_moved_recording_verifies_and_is_packaged_on_another_node(tmp_path, capsys, monkeypatch):
    """Node b (its own root, the same store): `recording verify` re-hashes the store's copy
    against the signed record, and the evidence package holds it and verifies."""
    import zipfile

    from callproof.integrity import verify_recordings
    from callproof.storage import SyncDatabase
    from tests.unit.evidence.test_checkpoints import cli
    from tests.unit.evidence.world import finalised_call, signed_config

    config = signed_config(tmp_path)
    rec = finalised_call(config)
    data = Path(rec["path"]).read_bytes()
    store = _store(tmp_path)
    conn = connect_sync(config.storage.database)
    try:
        conn.execute("UPDATE recordings SET node = 'a'")
        assert Mover(conn, config.recording.root, store, "a").run().moved == 1
        node_b = dataclasses.replace(config, recording=dataclasses.replace(
            config.recording, root=tmp_path / "b-root", store=store, node="b"))
        node_b.recording.root.mkdir()
        from callproof.evidence.keys import trusted_from_config
        (item,) = verify_recordings(SyncDatabase.wrap(conn), node_b.recording.root, store=store, node="b",
                                    trusted=trusted_from_config(config))
        assert item["result"] == "ok" and item["path"].startswith(os.path.realpath(store))
        (away,) = verify_recordings(SyncDatabase.wrap(conn), node_b.recording.root, node="b",
                                    trusted=trusted_from_config(config))
        assert away["result"] == "unreadable" and "shared recordings store" in away["detail"]
    finally:
        conn.close()
    monkeypatch.setenv("CALLPROOF_RECORDING_ROOT", str(node_b.recording.root))  # node b's command line
    monkeypatch.setenv("CALLPROOF_RECORDING_STORE", str(store))
    monkeypatch.setenv("CALLPROOF_RECORDING_NODE", "b")
    capsys.readouterr()
    assert cli(config, tmp_path, "recording", "verify", "--by", "test") == 0
    assert "ok 1 (signed" in capsys.readouterr().out
    out = tmp_path / "evidence.zip"
    assert cli(config, tmp_path, "evidence", "export", rec["protocol"], "--out", str(out)) == 0
    with zipfile.ZipFile(out) as z:
        (member,) = [n for n in z.namelist() if n.startswith("recording")]
        assert z.read(member) == data


@needs_ffmpeg
def test_another_node_exports_a_moved_recording_and_refuses_one_still_local_elsewhere(tmp_path):
    from callproof.rights.export import ExportError, export_request_sync
    from tests.unit.rights.test_export import NOW as EXPORT_NOW
    from tests.unit.rights.test_export import audit_rows, file_request, make_config, make_recording

    config = make_config(tmp_path)
    conn = connect_sync(tmp_path / "cp.db")
    try:
        rec = make_recording(conn, config)
        request_id = file_request(conn, config, rec["protocol"])
        conn.execute("UPDATE recordings SET node = 'a'")
        store = _store(tmp_path)
        node_b = dataclasses.replace(config, recording=dataclasses.replace(
            config.recording, root=tmp_path / "b-root", store=store, node="b"))
        with pytest.raises(ExportError, match="still on node a"):
            export_request_sync(conn, node_b, request_id, actor="ops", now=EXPORT_NOW, fmt="wav")
        assert "unreachable here" in audit_rows(conn, "recording.export_failed")[-1]["details"]["why"]
        assert Mover(conn, config.recording.root, store, "a").run().moved == 1
        row = export_request_sync(conn, node_b, request_id, actor="ops", now=EXPORT_NOW, fmt="wav")
        assert Path(row["path"]).stat().st_size > 1000 and audit_rows(conn, "recording.exported")
    finally:
        conn.close()


def test_a_sweep_whose_database_lock_went_with_its_connection_stops_before_the_next_batch(tmp_path, target):
    """PostgreSQL: the sweep lock's backend is terminated mid-sweep (the connection reopens by
    itself, without the lock): the sweep stops before its next batch, saying so, and the next
    sweep finishes what it had marked.  SQLite: no such lock, the sweep is not interrupted."""
    from callproof.retention import SweepLockLost
    from callproof.storage.recording_store import SWEEP_LOCK
    from callproof.storage.retention import retention_store

    root = tmp_path / "rec"
    root.mkdir()
    conn, other = connect_sync(target), connect_sync(target)
    try:
        b = Builder(conn, root)
        rows = [b.add(NOW - timedelta(days=200)) for _ in range(6)]
        store = retention_store(conn)
        taken, _ = store.try_sweep_lock()
        pg = target.startswith("postgresql")
        assert taken is (True if pg else None) and store.sweep_lock_held() is (True if pg else None)

        def drop_the_lock_session(_n: int) -> None:  # after the first batch is recorded
            if pg:
                other.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                              " AND CAST(objid AS bigint) = ?", (SWEEP_LOCK,))

        sweeper = Sweeper(store, root=root, tz=SP, now=lambda: NOW, batch_size=2, guarded=taken is True,
                          progress=drop_the_lock_session)
        if not pg:
            assert sweeper.sweep(scan=False).deleted == 6
            return
        with pytest.raises(SweepLockLost, match="lost mid-sweep"):
            sweeper.sweep(scan=False)
        st = states(conn)  # the connection came back (a new session, no lock)
        assert [st[r["id"]] for r in rows] == ["deleted"] * 2 + ["finalised"] * 4
        assert store.sweep_lock_held() is False
        marked = conn.execute("SELECT count(*) FROM recordings WHERE sweep_mark IS NOT NULL"
                              " AND state = 'finalised'").fetchone()[0]
        assert marked == 2  # the batch unlinked while the lock went: recorded by the next sweep
        assert other.execute(f"SELECT pg_try_advisory_lock({SWEEP_LOCK})").fetchone()[0]  # free for another node
        other.execute(f"SELECT pg_advisory_unlock({SWEEP_LOCK})")
        again = retention_store(conn)
        assert again.try_sweep_lock() == (True, None)
        summary = Sweeper(again, root=root, tz=SP, now=lambda: NOW, batch_size=2, guarded=True).sweep(scan=False)
        assert (summary.recovered, summary.deleted) == (2, 4)
        assert set(states(conn).values()) == {"deleted"}
        assert not any(os.path.exists(r["path"]) for r in rows)
    finally:
        conn.close()
        other.close()
