"""Commands started as root act as the service user (``[general] service_user``, default
``asterisk``): every file they create (database, WAL, lock file, exports, history) is the
service's, so a command typed as root before the service ever started no longer leaves a
root-owned database the service cannot open.

:func:`drop_to_service_user` changes the real and effective user and groups for the rest
of the process (after the configuration and its root-only secrets file were read);
if the user does not exist the command is refused with one line saying what to do.
Not root: nothing changes.  :func:`permission_message` turns a PermissionError (or
SQLite's "unable to open database file") into one line naming the file and the fix.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from callproof.storage import is_unopenable

#: Exit status of a command refused for a permission problem (sysexits EX_NOPERM).
EXIT_NO_PERMISSION = 77


class ServiceUserError(Exception):
    """Running as root, and the service user cannot be taken on."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def account(name: str) -> Account:
    """The user ``name`` with its groups; ServiceUserError when there is no such user."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ServiceUserError(
            f"the service user {name!r} ([general] service_user) does not exist: install Asterisk "
            f"(it creates 'asterisk'), create the user, or set [general] service_user; or run the "
            f"command as that user (sudo -u USER callproof ...)") from None
    return Account(name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(name, pw.pw_gid)), pw.pw_dir)


def drop_to_service_user(name: str) -> Account | None:
    """As root: become ``name`` (groups, gid, then uid: for good, not only the effective ids).
    Returns the account, or None when not root (nothing to do)."""
    if os.geteuid() != 0:
        return None
    acct = account(name)
    if acct.uid == 0:
        return acct  # a deployment that really runs the service as root: nothing to drop
    os.setgroups(list(acct.groups))
    os.setgid(acct.gid)
    os.setuid(acct.uid)
    os.environ["HOME"] = acct.home
    os.environ["USER"] = os.environ["LOGNAME"] = acct.name
    return acct


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # pragma: no cover - a uid without a passwd entry
        return str(os.geteuid())


def _owner(path: Path) -> str:
    """'user:group' of the nearest existing path (the file, or the folder it would be made in)."""
    for candidate in (path, *path.parents):
        try:
            st = candidate.stat()
        except OSError:
            continue
        return f"{candidate} is {ownership(st)}"
    return f"{path} not found"


def ownership(st: os.stat_result) -> str:
    """'user:group mode' of a stat result (numeric ids when they have no name), as messages show it."""
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group} {st.st_mode & 0o7777:04o}"


def permission_message(exc: BaseException, service_user: str, database: Path | None = None) -> str | None:
    """One line for a permission problem (None for any other exception)."""
    if isinstance(exc, PermissionError):
        target = Path(exc.filename) if exc.filename else None
    elif is_unopenable(exc):
        target = database
    else:
        return None
    where = f"{target}: " if target is not None else ""
    who = current_user()
    state = f" ({_owner(target)})" if target is not None else ""
    fix = (f"run it as {service_user} (sudo -u {service_user} callproof ...) or as root (callproof then "
           f"acts as {service_user})" if who != service_user else
           f"give {service_user} access: chown {service_user}: {target or 'the file'}")
    return f"callproof: permission denied: {where}{exc.strerror if isinstance(exc, OSError) else exc}" \
           f"{state}; running as {who}; {fix}"
