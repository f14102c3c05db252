"""storage.retention: the sweeper's store gives typed rows, re-checks holds
when marking, and writes in one transaction; the retention package reaches
the database only through it."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callproof.storage import connect_sync
from callproof.storage.holds import place_hold_sync
from callproof.storage.retention import ExpiredRecording, LiveRecording, retention_store
from callproof.storage.timefmt import to_db_time
from tests.retention_helpers import Builder, audit_actions, states

NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path, target):
    root = tmp_path / "rec"
    root.mkdir()
    conn = connect_sync(target)
    yield conn, Builder(conn, root), retention_store(conn)
    conn.close()


def test_expired_rows_are_typed_and_say_whether_held(env):
    conn, b, store = env
    free = b.add(NOW - timedelta(days=100))
    held = b.add(NOW - timedelta(days=100), caller="+5521998887777")
    b.add(NOW - timedelta(days=10))  # not expired yet
    place_hold_sync(conn, "caller", caller_number="+5521998887777", reason="case", placed_by="ana", at=NOW)
    assert store.count_expired(NOW) == 2
    rows = store.expired(0, 10, NOW, NOW - timedelta(days=30))
    assert all(isinstance(r, ExpiredRecording) for r in rows)
    assert [(r.id, r.held) for r in rows] == [(free["id"], False), (held["id"], True)]
    assert rows[0].path == free["path"] and rows[0].retention_class == "consumer_service"
    # the mark checks the hold again, and marks only once
    assert store.mark([free["id"], held["id"]], "run-1", NOW) == {free["id"]}
    assert store.mark([free["id"]], "run-2", NOW) == set()
    assert [r.id for r in store.marked(0, 10, NOW)] == [free["id"]]
    assert store.expired(0, 10, NOW, NOW) == [rows[1]]


def test_a_write_is_one_transaction_with_its_audit_entry(env):
    conn, b, store = env
    r = b.add(NOW - timedelta(days=100))
    with pytest.raises(RuntimeError), store.write() as tx:
        assert tx.set_deleted([r["id"]]) == {r["id"]}
        tx.audit("recording.deleted", "retention", NOW, subject=f"recording:{r['id']}")
        raise RuntimeError("crash before the commit")
    assert states(conn)[r["id"]] == "finalised" and audit_actions(conn, "recording.deleted") == []
    with store.write() as tx:
        assert tx.set_not_found(r["id"]) is True
        assert tx.set_not_found(r["id"]) is False
    assert states(conn)[r["id"]] == "missing"
    assert store.live(0, 10) == [] and store.state_of_path(r["path"]) == "missing"
    assert store.state_of_path("/nowhere") is None


def test_live_rows(env):
    _, b, store = env
    r = b.add(NOW - timedelta(days=1), days=90)
    b.add(NOW - timedelta(days=1), state="deleted", with_file=False)
    assert store.live(0, 10) == [LiveRecording(r["id"], r["protocol"], r["path"], r["sha256"],
                                                "consumer_service", to_db_time(NOW + timedelta(days=89)))]
    assert store.live(r["id"], 10) == []


@pytest.mark.parametrize("folder", ["callproof/retention", "callproof/sms"])
def test_no_database_driver_outside_storage(folder):
    for path in sorted((REPO / folder).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("sqlite3", "aiosqlite"), f"{path.name} imports {name}"
                assert "_sqlutil" not in name, f"{path.name} imports {name}"
