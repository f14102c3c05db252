"""Web accounts: scrypt hashes, the password rules, the account and session
SQL (storage/webauth.py), and the ``callproof web-user`` / ``callproof web``
commands (passwords from stdin, never argv; SIGTERM stops the server)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import ProxyHandler, build_opener

import pytest

from callproof.sandbox.ports import free_port
from callproof.storage import AlreadyExistsError, NotFoundError, connect_sync, webauth
from callproof.storage.audit import verify_chain_sync
from callproof.web.passwords import WeakPassword, check_password_strength, hash_password, verify_password

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GOOD = "correct horse battery staple"


# -- passwords --------------------------------------------------------------------

def test_scrypt_hash_carries_its_parameters_and_a_fresh_salt():
    a, b = hash_password(GOOD, n=2 ** 10), hash_password(GOOD, n=2 ** 10)
    assert a.startswith("scrypt$n=1024,r=8,p=1$") and a != b
    assert verify_password(GOOD, a) and verify_password(GOOD, b)
    assert not verify_password(GOOD + "!", a)


def test_default_cost_is_a_real_kdf_cost():
    encoded = hash_password(GOOD)
    assert encoded.startswith("scrypt$n=32768,r=8,p=1$")
    assert verify_password(GOOD, encoded)


@pytest.mark.parametrize("stored", ["", "plain", "md5$x$y$z", "scrypt$n=3,r=8,p=1$AA==$AA==",
                                    "scrypt$n=1024,r=8$AA==$AA==", "scrypt$n=1024,r=8,p=1$!!$AA=="])
def test_malformed_stored_hashes_never_match_and_never_raise(stored):
    assert verify_password(GOOD, stored) is False


@pytest.mark.parametrize("password", ["short", "password", "changeme", "   admin   ", "x" * 11, "y" * 2000])
def test_weak_passwords_are_refused(password):
    with pytest.raises(WeakPassword):
        check_password_strength(password)


def test_a_long_unusual_password_is_accepted():
    check_password_strength(GOOD)


# -- storage ----------------------------------------------------------------------

@pytest.fixture
def conn(target):
    c = connect_sync(target)
    yield c
    c.close()


def test_users_are_unique_validated_and_audited(conn):
    webauth.create_user_sync(conn, "ana.silva", "scrypt$x", "operator", actor="cli:root", at=NOW)
    with pytest.raises(AlreadyExistsError):
        webauth.create_user_sync(conn, "ana.silva", "scrypt$y", "viewer", actor="cli:root", at=NOW)
    for bad in ("", "has space", "../x", "ação", "-dash", "x" * 65):
        with pytest.raises(ValueError):
            webauth.create_user_sync(conn, bad, "scrypt$x", "viewer", actor="cli:root", at=NOW)
    with pytest.raises(ValueError, match="role"):
        webauth.create_user_sync(conn, "bob", "scrypt$x", "root", actor="cli:root", at=NOW)
    assert [u["username"] for u in webauth.list_users_sync(conn)] == ["ana.silva"]
    assert "password_hash" not in webauth.list_users_sync(conn)[0]
    actions = conn.execute("SELECT action, actor, subject FROM audit_log").fetchall()
    assert actions == [("web.user.created", "cli:root", "web_user:ana.silva")]
    assert verify_chain_sync(conn) is None


def _session(conn, user_id: int, name: str, token: str, *, at=NOW, minutes: int = 60) -> None:
    webauth.create_session_sync(conn, id_hash=token, user_id=user_id, username=name, csrf_token="c" + token,
                                at=at, expires_at=at + timedelta(minutes=minutes), remote="127.0.0.1")


def test_sessions_expire_end_and_die_with_a_disabled_account_or_new_password(conn):
    uid = webauth.create_user_sync(conn, "ana", "scrypt$x", "viewer", actor="t", at=NOW)
    _session(conn, uid, "ana", "s1")
    assert webauth.get_session_sync(conn, "s1", NOW + timedelta(minutes=59))["username"] == "ana"
    assert webauth.get_session_sync(conn, "s1", NOW + timedelta(minutes=60)) is None  # expired
    assert webauth.end_session_sync(conn, "s1", username="ana", at=NOW) is True
    assert webauth.get_session_sync(conn, "s1", NOW) is None
    assert webauth.end_session_sync(conn, "s1", username="ana", at=NOW) is False

    _session(conn, uid, "ana", "s2")
    webauth.set_password_sync(conn, "ana", "scrypt$new", actor="t", at=NOW)
    assert webauth.get_session_sync(conn, "s2", NOW) is None
    _session(conn, uid, "ana", "s3")
    webauth.disable_user_sync(conn, "ana", actor="t", at=NOW)
    assert webauth.get_session_sync(conn, "s3", NOW) is None
    with pytest.raises(NotFoundError):
        webauth.disable_user_sync(conn, "nobody", actor="t", at=NOW)


LIMITS = {"window_seconds": 900, "max_failures": 3, "max_per_remote": 9, "backoff_seconds": 30}


def test_login_attempts_are_reserved_per_account_and_address_with_a_growing_wait(conn):
    def begin(user, remote, at):
        return webauth.begin_login_sync(conn, user, remote, at=at, **LIMITS)

    ids = [begin("ana", "10.0.0.1", NOW + timedelta(seconds=i)).attempt_id for i in range(3)]
    assert all(ids) and len(set(ids)) == 3  # each a row, counted before any password check
    refused = begin("ana", "10.0.0.1", NOW + timedelta(seconds=3))
    assert refused.attempt_id is None and refused.why == "account" and refused.retry_after == 29
    assert begin("ana", "10.0.0.2", NOW + timedelta(seconds=3)).attempt_id  # another address: not locked
    fourth = begin("ana", "10.0.0.1", NOW + timedelta(seconds=32))  # the wait is over: one more try
    assert fourth.attempt_id
    assert begin("ana", "10.0.0.1", NOW + timedelta(seconds=33)).retry_after == 59  # then twice as long
    webauth.login_failed_sync(conn, fourth.attempt_id, "ana", "10.0.0.1", at=NOW, prune_before=NOW)
    webauth.login_succeeded_sync(conn, ids[0], "ana", "10.0.0.1")  # she got in: her address starts afresh
    assert begin("ana", "10.0.0.1", NOW + timedelta(seconds=40)).attempt_id
    # Spraying from one address over many accounts meets the address's own limit.
    for i in range(8):
        assert begin(f"user{i}", "10.0.0.9", NOW + timedelta(seconds=i)).attempt_id
    assert begin("user8", "10.0.0.9", NOW + timedelta(seconds=9)).attempt_id
    spray = begin("user9", "10.0.0.9", NOW + timedelta(seconds=10))
    assert spray.attempt_id is None and spray.why == "address"
    assert webauth.prune_failures_sync(conn, NOW + timedelta(hours=1)) > 0
    assert [a for (a,) in conn.execute("SELECT action FROM audit_log WHERE action LIKE 'web.login%'")] \
        == ["web.login.failed"]


# -- the CLI ----------------------------------------------------------------------

def _config(tmp_path: Path, **web) -> Path:
    lines = ["[storage]", f'database = "{tmp_path / "cli.db"}"',
             "[recording]", f'root = "{tmp_path / "rec"}"',
             "[rights]", 'link_secret = "unit-test-link-secret-0123456789abcdefgh"',
             "[web]", *(f"{k} = {json.dumps(v)}" for k, v in web.items())]
    path = tmp_path / "cli.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_web_user_commands(tmp_path):
    cfg = _config(tmp_path)
    added = _cli(cfg, "web-user", "add", "ana", "--role", "admin", stdin=GOOD + "\n")
    assert added.returncode == 0, added.stderr
    assert "ana added with role admin" in added.stdout and GOOD not in added.stdout
    weak = _cli(cfg, "web-user", "add", "bob", "--role", "viewer", stdin="password\n")
    assert weak.returncode == 2 and "refused" in weak.stderr
    dup = _cli(cfg, "web-user", "add", "ana", "--role", "viewer", stdin=GOOD + "\n")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad_role = _cli(cfg, "web-user", "add", "carl", "--role", "root", stdin=GOOD + "\n")
    assert bad_role.returncode == 2
    # There is no way to give the password on the command line.
    argv = _cli(cfg, "web-user", "add", "dan", "--role", "viewer", "--password", GOOD)
    assert argv.returncode == 2 and "unrecognized arguments" in argv.stderr

    listed = json.loads(_cli(cfg, "web-user", "list", "--json").stdout)
    assert [(u["username"], u["role"], u["disabled_at"]) for u in listed] == [("ana", "admin", None)]
    conn = connect_sync(tmp_path / "cli.db")
    try:
        stored = webauth.get_user_sync(conn, "ana")["password_hash"]
        assert stored.startswith("scrypt$") and verify_password(GOOD, stored)
        assert _cli(cfg, "web-user", "passwd", "ana", stdin="another good passphrase\n").returncode == 0
        assert verify_password("another good passphrase", webauth.get_user_sync(conn, "ana")["password_hash"])
        assert _cli(cfg, "web-user", "passwd", "nobody", stdin=GOOD + "\n").returncode == 1
        assert _cli(cfg, "web-user", "disable", "ana").returncode == 0
        assert webauth.get_user_sync(conn, "ana")["disabled_at"] is not None
        assert "disabled" in _cli(cfg, "web-user", "list").stdout
        actors = {a for (a,) in conn.execute("SELECT actor FROM audit_log WHERE action LIKE 'web.user.%'")}
        assert len(actors) == 1 and actors.pop().startswith("cli:")
    finally:
        conn.close()


def test_web_refuses_to_start_without_the_link_secret(tmp_path):
    cfg = tmp_path / "nosecret.toml"
    cfg.write_text(f'[storage]\ndatabase = "{tmp_path / "x.db"}"\n')
    done = _cli(cfg, "web")
    assert done.returncode == 2 and "rights.link_secret" in done.stderr


def test_web_serves_on_the_given_port_until_sigterm(tmp_path):
    port = free_port()  # outside the ephemeral range: no parallel test's connection or listener takes it
    cfg = _config(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "callproof.cli", "--config", str(cfg), "web",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in line, proc.stderr.read() if proc.poll() else line
        opener = build_opener(ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            assert resp.status == 200 and b"Log in" in resp.read()
            assert resp.headers["X-Frame-Options"] == "DENY"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
