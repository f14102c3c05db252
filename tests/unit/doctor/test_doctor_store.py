"""``callproof doctor`` on a node with a shared recordings store: what the operator reads."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callproof.config import Config, StorageConfig
from callproof.config.sections import RecordingConfig
from callproof.doctor.access import Who
from callproof.doctor.checks_store import check_hard_links, check_store
from callproof.storage import connect_sync
from callproof.store.mover import MARKER
from tests.retention_helpers import Builder

NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def folder():
    with tempfile.TemporaryDirectory(prefix="callproof-doctor-", dir="/var/tmp") as where:
        os.chmod(where, 0o755)
        yield Path(where)


def _config(folder: Path, target: str, **recording) -> Config:
    storage = StorageConfig(url=target) if target.startswith("postgresql") else StorageConfig(database=Path(target))
    return dataclasses.replace(Config(), storage=storage, recording=RecordingConfig(
        root=folder / "rec", store=folder / "store", node="a", move_interval_seconds=30.0, **recording))


def _me() -> Who:
    return Who("svc", os.getuid(), frozenset({os.getgid()}))


def by_check(results) -> dict[str, tuple[str, str, str]]:
    return {r.check: (r.status, r.detail, r.fix) for r in results}


def test_no_store_no_checks(folder):
    config = dataclasses.replace(_config(folder, str(folder / "cp.db")), recording=RecordingConfig(root=folder))
    assert check_store(config, _me()) == []


def test_a_missing_or_unmarked_store_fails_naming_the_fix(folder):
    config = _config(folder, str(folder / "cp.db"))
    [missing] = check_store(config, _me())
    assert missing.status == "FAIL" and "does not exist" in missing.detail and "mount" in missing.fix
    (folder / "store").mkdir()
    [unmarked] = check_store(config, _me())
    assert unmarked.status == "FAIL" and f"no {MARKER}" in unmarked.detail and "not a mount point" in unmarked.detail
    assert "callproof recording move --init" in unmarked.fix and "mount the shared file system" in unmarked.fix


def test_hard_links_tested_and_cleaned_up(folder):
    assert check_hard_links(folder).status == "OK"
    assert list(folder.iterdir()) == []  # the test's two names removed


def test_the_nodes_backlog_its_age_and_move_errors(folder, target):
    (folder / "rec").mkdir()
    (folder / "store").mkdir()
    (folder / "store" / MARKER).write_text("")
    config = _config(folder, target)
    conn = connect_sync(target)
    try:
        found = by_check(check_store(config, _me(), now=NOW))
        assert found["store"][0] == found["store-write"][0] == found["store-links"][0] == "OK"
        assert found["store-backlog"][:2] == ("OK", "every finished recording of node a is in the store")
        b = Builder(conn, folder / "rec")
        old, recent, theirs = b.add(NOW - timedelta(hours=3)), b.add(NOW - timedelta(seconds=40)), b.add(NOW)
        conn.execute("UPDATE recordings SET node = 'a' WHERE id IN (?, ?)", (old["id"], recent["id"]))
        conn.execute("UPDATE recordings SET node = 'b', move_error = 'x' WHERE id = ?", (theirs["id"],))
        # only the recent one: under 10 x move_interval_seconds (300 s)
        conn.execute("UPDATE recordings SET store_path = '2026/x.wav' WHERE id = ?", (old["id"],))
        found = by_check(check_store(config, _me(), now=NOW))
        assert found["store-backlog"][:2] == ("OK", "1 finished recording(s) of node a only on this node,"
                                                    " the oldest 40 s old")
        assert "store-moves" not in found  # node b's error is b's
        conn.execute("UPDATE recordings SET store_path = NULL WHERE id = ?", (old["id"],))
        conn.execute("UPDATE recordings SET move_error = 'the store is not mounted here (no .callproof-store in it)'"
                     " WHERE id = ?", (recent["id"],))
        found = by_check(check_store(config, _me(), now=NOW))
        status, detail, fix = found["store-backlog"]
        assert status == "WARN" and detail.startswith("2 finished recording(s) of node a") and "3 h old" in detail
        assert "callproof recording move" in fix
        status, detail, _ = found["store-moves"]
        assert status == "WARN" and detail.endswith("the last: the store is not mounted here (no .callproof-store"
                                                    " in it)")
    finally:
        conn.close()
