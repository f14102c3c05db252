"""Commands started as root act as the service user, or are refused with one line; a
permission problem is one line naming the file, its owner and the fix, never a traceback."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import pytest

from callproof import cli
from callproof.service_user import (
    EXIT_NO_PERMISSION,
    ServiceUserError,
    account,
    drop_to_service_user,
    permission_message,
)


def test_an_unknown_service_user_is_refused_naming_the_key():
    with pytest.raises(ServiceUserError, match=r"'no-such-user-x' \(\[general\] service_user\) does not exist"):
        account("no-such-user-x")


def test_not_root_nothing_is_dropped(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert drop_to_service_user("no-such-user-x") is None


def test_a_permission_error_names_the_file_owner_and_fix(tmp_path):
    locked = tmp_path / "cp.db.retention.lock"
    locked.write_text("")
    exc = PermissionError(13, "Permission denied", str(locked))
    message = permission_message(exc, "asterisk")
    assert message is not None and message.startswith(f"callproof: permission denied: {locked}: Permission denied (")
    assert "sudo -u asterisk callproof" in message and "\n" not in message


def test_sqlite_cannot_open_names_the_database(tmp_path):
    message = permission_message(sqlite3.OperationalError("unable to open database file"), "asterisk",
                                 tmp_path / "cp.db")
    assert message is not None and f"{tmp_path / 'cp.db'}: unable to open database file" in message
    assert permission_message(sqlite3.OperationalError("no such table: x"), "asterisk") is None
    assert permission_message(ValueError("x"), "asterisk") is None


def test_main_turns_a_permission_error_into_one_line(tmp_path, monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "exports"))

    parser = cli.build_parser()
    args = parser.parse_args(["hold", "list"])
    args.func = denied
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: args})())
    assert cli.main([]) == EXIT_NO_PERMISSION
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"permission denied: {tmp_path / 'exports'}" in err
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
def test_root_becomes_the_service_user_for_good():
    with tempfile.TemporaryDirectory(prefix="callproof-drop-", dir="/var/tmp") as where:  # nobody can reach it
        os.chmod(where, 0o777)
        _drop_and_write(Path(where))


def _drop_and_write(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # the child drops; the test process stays root
        try:
            drop_to_service_user("nobody")
            (tmp_path / "made").write_text("x")
            os._exit(0 if os.getuid() == os.geteuid() != 0 and os.getgroups() == [os.getgid()] else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "made").stat().st_uid == account("nobody").uid


@pytest.mark.parametrize("argv", [["install"], ["doctor"], ["dialplan", "install", "/x"]])
def test_commands_that_write_etc_or_check_the_user_stay_root(argv, monkeypatch):
    """`callproof install` runs from the package's postinst as root: dropping to the service
    user first made it refuse ('run it as root'), and dpkg -i failed."""
    args = cli.build_parser().parse_args(argv)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    dropped = []
    monkeypatch.setattr(cli, "drop_to_service_user", lambda name: dropped.append(name))
    cli._become_service_user(args)
    assert dropped == []


def test_ownership_names_owner_group_and_mode(tmp_path):
    import pwd

    from callproof.service_user import ownership

    f = tmp_path / "f"
    f.write_text("x")
    os.chmod(f, 0o640)
    owner = pwd.getpwuid(os.getuid()).pw_name
    assert ownership(f.stat()).startswith(f"{owner}:")
    assert ownership(f.stat()).endswith(" 0640")


def test_ownership_shows_numeric_ids_without_a_name(tmp_path):
    from callproof.service_user import ownership

    f = tmp_path / "f"
    f.write_text("x")
    os.chown(f, 54321, 54322)  # ids with no passwd/group entry
    os.chmod(f, 0o600)
    assert ownership(f.stat()) == "54321:54322 0600"
