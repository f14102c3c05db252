"""The mover (callproof/store/mover.py): a finalised recording's file from its node's root
into the shared store, and the row saying so -- on both engines, through each crash point
(a real SIGKILL of a mover process), with the store missing, and with a file that is not
what its row says."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callproof.storage import connect_sync
from callproof.store.mover import MARKER, Mover
from tests.retention_helpers import Builder, audit_actions

NOW = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]
AUDIO = b"RIFF" + b"\x00" * 4 + b"WAVE" + os.urandom(2000)


@pytest.fixture
def env(tmp_path, target):
    root, store = tmp_path / "rec", tmp_path / "store"
    root.mkdir()
    store.mkdir()
    (store / MARKER).write_text("")
    conn = connect_sync(target)
    yield conn, Builder(conn, root), root, store, target
    conn.close()


def _recording(conn, b: Builder, *, node: str = "a", content: bytes = AUDIO) -> dict:
    rec = b.add(NOW - timedelta(days=1), content=content)
    conn.execute("UPDATE recordings SET node = ? WHERE id = ?", (node, rec["id"]))
    return rec


def _row(conn, rec_id: int) -> dict:
    cur = conn.execute("SELECT node, store_path, moved_at, move_error, state FROM recordings WHERE id = ?", (rec_id,))
    return dict(zip(("node", "store_path", "moved_at", "move_error", "state"), cur.fetchone(), strict=True))


def _mover(conn, root: Path, store: Path, node: str = "a") -> Mover:
    return Mover(conn, root, store, node, clock=lambda: NOW)


def _parts(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*.part"))


def test_moves_the_file_verified_and_the_row_says_where(env):
    conn, b, root, store, _ = env
    rec = _recording(conn, b)
    other = _recording(conn, b, node="b")  # node b's file: not this node's to move
    s = _mover(conn, root, store).run()
    assert (s.moved, s.failed, s.refused) == (1, 0, 0)
    row = _row(conn, rec["id"])
    assert row["store_path"] == f"2026/08/31/{rec['protocol']}-{rec['id']}.wav"
    assert row["move_error"] is None and row["moved_at"].startswith("2026-09-01T15:00")
    moved = store / row["store_path"]
    assert moved.read_bytes() == AUDIO
    assert os.stat(moved).st_mode & 0o777 == 0o640
    assert not os.path.exists(rec["path"])  # the node's copy is gone once the row says store
    assert "_" not in moved.name  # the local name's caller digits do not travel
    (entry,) = audit_actions(conn, "recording.moved")
    assert entry[0] == f"recording:{rec['id']}" and json.loads(entry[2])["sha256"] == rec["sha256"]
    assert _row(conn, other["id"])["store_path"] is None and os.path.exists(other["path"])
    assert _parts(store) == []


def test_store_not_mounted_leaves_the_file_local_and_retries(env):
    conn, b, root, store, _ = env
    rec = _recording(conn, b)
    (store / MARKER).unlink()  # the mount point without its file system
    s = _mover(conn, root, store).run()
    assert (s.moved, s.failed) == (0, 1)
    row = _row(conn, rec["id"])
    assert row["store_path"] is None and "not mounted" in row["move_error"]
    assert os.path.exists(rec["path"]) and list(store.iterdir()) == []
    (store / MARKER).write_text("")  # mounted again: the next pass moves it
    assert _mover(conn, root, store).run().moved == 1
    assert _row(conn, rec["id"])["move_error"] is None and not os.path.exists(rec["path"])


def test_a_file_that_is_not_what_its_row_says_is_refused_and_audited(env):
    conn, b, root, store, _ = env
    rec = _recording(conn, b)
    Path(rec["path"]).write_bytes(AUDIO + b"tampered")
    s = _mover(conn, root, store).run()
    assert (s.moved, s.refused) == (0, 1)
    row = _row(conn, rec["id"])
    assert row["store_path"] is None and "sha256" in row["move_error"]
    assert os.path.exists(rec["path"]) and _parts(store) == []
    assert not any(p.is_file() and p.name != MARKER for p in store.rglob("*"))
    (entry,) = audit_actions(conn, "recording.move_refused")
    details = json.loads(entry[2])
    assert details["expected_sha256"] == rec["sha256"]
    assert details["found_sha256"] == hashlib.sha256(AUDIO + b"tampered").hexdigest()


_KILLED = textwrap.dedent("""
    import os, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from callproof.storage import connect_sync
    from callproof.store import mover as m
    target, root, store, point = sys.argv[1:5]
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "link":
        m.os.link = die
    elif point == "switch":
        m.rs.mark_moved_sync = die
    else:
        m.Mover._remove_local = die
    conn = connect_sync(target)
    m.Mover(conn, Path(root), Path(store), "a", clock=lambda: datetime(2026, 9, 1, 15, 0, tzinfo=UTC)).run()
""")


def _killed_at(point: str, target: str, root: Path, store: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _KILLED, target, str(root), str(store), point], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_killed_after_the_copy_before_the_link(env):
    conn, b, root, store, target = env
    rec = _recording(conn, b)
    _killed_at("link", target, root, store)
    (part,) = _parts(store)  # the copy under its temporary name: never taken for the recording
    assert _row(conn, rec["id"])["store_path"] is None and os.path.exists(rec["path"])
    s = _mover(conn, root, store).run()
    assert s.moved == 1
    assert (store / _row(conn, rec["id"])["store_path"]).read_bytes() == AUDIO
    assert part.exists()  # a killed pass's part file stays until it is an hour old...
    os.utime(part, (0, 0))
    _recording(conn, b)  # (the same day: the same folder)
    _mover(conn, root, store).run()
    assert _parts(store) == []  # ...then the next pass through its folder removes it


def test_killed_after_the_link_before_the_row(env):
    conn, b, root, store, target = env
    rec = _recording(conn, b)
    _killed_at("switch", target, root, store)
    final = store / f"2026/08/31/{rec['protocol']}-{rec['id']}.wav"
    assert final.read_bytes() == AUDIO and _row(conn, rec["id"])["store_path"] is None
    assert os.path.exists(rec["path"])
    s = _mover(conn, root, store).run()
    assert (s.moved, s.adopted) == (0, 1)  # found complete and verified: the row switched, no second copy
    assert _row(conn, rec["id"])["store_path"] == f"2026/08/31/{rec['protocol']}-{rec['id']}.wav"
    assert not os.path.exists(rec["path"])
    assert len(audit_actions(conn, "recording.moved")) == 1


def test_killed_after_the_row_before_the_local_removal(env):
    conn, b, root, store, target = env
    rec = _recording(conn, b)
    _killed_at("remove", target, root, store)
    assert _row(conn, rec["id"])["store_path"] is not None and os.path.exists(rec["path"])
    assert _mover(conn, root, store).remove_leftovers() == 1
    assert not os.path.exists(rec["path"])


def test_a_different_file_at_the_recordings_place_is_refused(env):
    conn, b, root, store, _ = env
    rec = _recording(conn, b)
    final = store / f"2026/08/31/{rec['protocol']}-{rec['id']}.wav"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"something else")
    assert _mover(conn, root, store).run().refused == 1
    assert final.read_bytes() == b"something else" and os.path.exists(rec["path"])
    assert _row(conn, rec["id"])["store_path"] is None


def test_encrypted_recordings_travel_as_their_age_file_and_pending_ones_wait(env):
    conn, b, root, store, _ = env
    enc = _recording(conn, b)
    age = enc["path"] + ".age"
    Path(age).write_bytes(b"age-encryption.org/v1\n" + AUDIO)
    os.unlink(enc["path"])
    csha = hashlib.sha256(Path(age).read_bytes()).hexdigest()
    conn.execute("UPDATE recordings SET encryption = 'encrypted', age_path = ?, ciphertext_sha256 = ?,"
                 " payload_sha256 = ?, key_ids = 'k1' WHERE id = ?", (age, csha, csha, enc["id"]))
    pending = _recording(conn, b)
    conn.execute("UPDATE recordings SET encryption = 'pending' WHERE id = ?", (pending["id"],))
    plain = _recording(conn, b)  # never encrypted: with [encryption] on it waits for `recording encrypt`
    Path(enc["path"]).write_bytes(AUDIO)  # its plaintext still there: it waits for the step removing it
    assert Mover(conn, root, store, "a", encrypted_only=True, clock=lambda: NOW).run().skipped == 1
    os.unlink(enc["path"])
    s = Mover(conn, root, store, "a", encrypted_only=True, clock=lambda: NOW).run()
    assert s.moved == 1
    assert _row(conn, enc["id"])["store_path"].endswith(f"{enc['protocol']}-{enc['id']}.wav.age")
    assert not os.path.exists(age)
    assert _row(conn, pending["id"])["store_path"] is None and _row(conn, plain["id"])["store_path"] is None


def test_recording_move_command_initialises_the_store_and_moves_this_nodes_recordings(tmp_path, capsys):
    import pwd

    from callproof.cli import main

    root, store = tmp_path / "rec", tmp_path / "shared"
    root.mkdir()
    store.mkdir()
    config = tmp_path / "callproof.toml"
    config.write_text(f'[general]\nservice_user = "{pwd.getpwuid(os.geteuid()).pw_name}"\n'
                      f'[storage]\ndatabase = "{tmp_path / "cp.db"}"\n'
                      f'[recording]\nroot = "{root}"\nstore = "{store}"\nnode = "a"\n')
    conn = connect_sync(tmp_path / "cp.db")
    try:
        rec = _recording(conn, Builder(conn, root))
        assert main(["--config", str(config), "recording", "move"]) == 1  # not initialised: stays local
        assert "not mounted" in capsys.readouterr().out and os.path.exists(rec["path"])
        assert main(["--config", str(config), "recording", "move", "--init", "--json"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert "initialised" in out[0] and json.loads(out[-1])["moved"] == 1
        assert (store / MARKER).exists() and not os.path.exists(rec["path"])
        assert _row(conn, rec["id"])["store_path"] is not None
    finally:
        conn.close()
