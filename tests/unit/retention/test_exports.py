"""The sweeper also removes request exports (copies of recordings made for a
customer): kept while the request is open, during its grace period and while a
download link to them is still usable; removed (and audited) after that."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callproof.retention import Sweeper
from callproof.storage import connect_sync
from callproof.storage.holds import close_request_sync, open_request_sync
from callproof.storage.timefmt import to_db_time
from tests.retention_helpers import Builder, audit_actions

SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path, target):
    root, exports = tmp_path / "rec", tmp_path / "exports"
    root.mkdir()
    exports.mkdir()
    conn = connect_sync(target)  # SQLite and PostgreSQL (tests/conftest.py)
    yield conn, Builder(conn, root), root, exports
    conn.close()


def add_export(conn, exports, request_id, name, *, link_expires=None, revoked=False):
    path = exports / name
    path.write_bytes(b"ID3-export")
    cur = conn.execute(
        "INSERT INTO request_exports (request_id, format, path, sha256, size_bytes, created_at, created_by)"
        " VALUES (?, 'mp3', ?, ?, 10, ?, 'ops')", (request_id, str(path), "a" * 64, to_db_time(NOW)))
    if link_expires is not None:
        conn.execute(
            "INSERT INTO download_links (export_id, recipient, issued_at, issued_by, expires_at, revoked_at)"
            " VALUES (?, 'sms:+5511912345678', ?, 'ops', ?, ?)",
            (cur.lastrowid, to_db_time(link_expires - timedelta(hours=72)), to_db_time(link_expires),
             to_db_time(NOW) if revoked else None))
    return cur.lastrowid, path


def sweep(conn, root, exports, now=NOW):
    return Sweeper(conn, root=root, tz=SP, now=lambda: now, request_grace_days=30,
                   export_dir=exports).sweep()


def test_exports_kept_while_open_in_grace_or_linked_then_deleted_and_audited(env):
    conn, b, root, exports = env
    r_open, r_grace, r_linked, r_done = (b.add(NOW - timedelta(days=10)) for _ in range(4))
    q_open = open_request_sync(conn, r_open["protocol"], at=NOW - timedelta(days=5))
    q_grace = open_request_sync(conn, r_grace["protocol"], at=NOW - timedelta(days=9))
    q_linked = open_request_sync(conn, r_linked["protocol"], at=NOW - timedelta(days=60))
    q_done = open_request_sync(conn, r_done["protocol"], at=NOW - timedelta(days=60))
    close_request_sync(conn, q_grace, at=NOW - timedelta(days=3))
    close_request_sync(conn, q_linked, at=NOW - timedelta(days=40))
    close_request_sync(conn, q_done, at=NOW - timedelta(days=40))
    e_open, p_open = add_export(conn, exports, q_open, "request-1-a-1.mp3")
    _e_grace, p_grace = add_export(conn, exports, q_grace, "request-2-b-1.mp3")
    _e_linked, p_linked = add_export(conn, exports, q_linked, "request-3-c-1.mp3",
                                    link_expires=NOW + timedelta(hours=1))
    e_done, p_done = add_export(conn, exports, q_done, "request-4-d-1.mp3",
                                link_expires=NOW + timedelta(hours=1), revoked=True)

    s = sweep(conn, root, exports)

    assert s.exports_deleted == 1 and s.errors == 0
    assert not p_done.exists()
    assert p_open.exists() and p_grace.exists() and p_linked.exists()
    deleted = dict(conn.execute("SELECT id, deleted_at FROM request_exports").fetchall())
    assert deleted[e_done] is not None and deleted[e_open] is None
    entries = audit_actions(conn, "export.deleted")
    assert len(entries) == 1

    # two hours later the last link has expired: that export goes too; a second run changes nothing
    assert sweep(conn, root, exports, now=NOW + timedelta(hours=2)).exports_deleted == 1
    assert not p_linked.exists()
    assert sweep(conn, root, exports, now=NOW + timedelta(hours=3)).exports_deleted == 0
    assert len(audit_actions(conn, "export.deleted")) == 2


def test_export_already_gone_is_recorded_and_symlink_is_refused(env, tmp_path):
    conn, b, root, exports = env
    r1, r2 = b.add(NOW - timedelta(days=10)), b.add(NOW - timedelta(days=10))
    q1 = open_request_sync(conn, r1["protocol"], at=NOW - timedelta(days=60))
    q2 = open_request_sync(conn, r2["protocol"], at=NOW - timedelta(days=60))
    close_request_sync(conn, q1, at=NOW - timedelta(days=40))
    close_request_sync(conn, q2, at=NOW - timedelta(days=40))
    _, gone = add_export(conn, exports, q1, "request-1-a-1.mp3")
    gone.unlink()  # e.g. a sweeper killed after the unlink, before recording it
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    _, link = add_export(conn, exports, q2, "request-2-b-1.mp3")
    link.unlink()
    os.symlink(outside, link)

    s = sweep(conn, root, exports)

    assert s.exports_deleted == 1 and s.errors == 1
    assert outside.read_text() == "keep me" and os.path.islink(link)
