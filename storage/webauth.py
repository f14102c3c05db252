"""SQL for the ops web page's accounts: ``web_users``, ``web_sessions`` and
``web_login_failures`` (schema 0004).

Only hashes are stored: the password as an encoded KDF string
(callproof/web/passwords.py) and the session cookie as its sha256, so a
database dump gives neither a password nor a usable session.  Changes to
accounts write an audit entry in the same transaction.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import AlreadyExistsError, NotFoundError
from .timefmt import parse_db_time, to_db_time

ROLES = ("viewer", "operator", "admin")
#: the languages an account may choose (migration 0016's CHECK; callproof/web/i18n.py ships them)
LOCALES = ("en", "pt_BR", "es")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_username(username: str) -> str:
    """The username unchanged, or ValueError saying what is allowed."""
    if not isinstance(username, str) or not USERNAME.fullmatch(username) or not username.isascii():
        raise ValueError(f"username {username!r}: 1-64 characters, ASCII letters, digits and . _ @ - "
                         "(starting with a letter or digit)")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    return role


# -- users --------------------------------------------------------------------

def create_user_sync(conn: sqlite3.Connection, username: str, password_hash: str, role: str, *,
                     actor: str, at: str | datetime) -> int:
    """Insert an account; AlreadyExistsError when the name is taken."""
    check_username(username)
    check_role(role)
    with immediate(conn):
        if conn.execute("SELECT 1 FROM web_users WHERE username = ?", (username,)).fetchone():
            raise AlreadyExistsError(f"web user {username!r} already exists")
        cur = conn.execute(
            "INSERT INTO web_users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
            (username, password_hash, role, to_db_time(at)))
        append_in_transaction_sync(conn, "web.user.created", actor, at, subject=f"web_user:{username}",
                                   details={"role": role})
        return inserted_id(cur)


def get_user_sync(conn: sqlite3.Connection, username: str) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM web_users WHERE username = ?", (username,)))


def list_users_sync(conn: sqlite3.Connection) -> list[dict]:
    """Every account without its password hash, by name."""
    return fetch_all(conn.execute(
        "SELECT id, username, role, created_at, disabled_at FROM web_users ORDER BY username"))


def _end_user_sessions(conn: sqlite3.Connection, user_id: int, at: str) -> int:
    return conn.execute("UPDATE web_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
                        (at, user_id)).rowcount


def disable_user_sync(conn: sqlite3.Connection, username: str, *, actor: str, at: str | datetime) -> None:
    """Disable the account and end its sessions at once.  NotFoundError if unknown;
    disabling a disabled account changes nothing."""
    at = to_db_time(at)
    with immediate(conn):
        user = get_user_sync(conn, username)
        if user is None:
            raise NotFoundError(f"no web user {username!r}")
        if user["disabled_at"] is not None:
            return
        conn.execute("UPDATE web_users SET disabled_at = ? WHERE id = ?", (at, user["id"]))
        ended = _end_user_sessions(conn, user["id"], at)
        append_in_transaction_sync(conn, "web.user.disabled", actor, at, subject=f"web_user:{username}",
                                   details={"sessions_ended": ended})


def set_password_sync(conn: sqlite3.Connection, username: str, password_hash: str, *,
                      actor: str, at: str | datetime) -> None:
    """Replace the password hash and end the account's sessions (a changed
    password must log out whoever held the old one)."""
    at = to_db_time(at)
    with immediate(conn):
        user = get_user_sync(conn, username)
        if user is None:
            raise NotFoundError(f"no web user {username!r}")
        conn.execute("UPDATE web_users SET password_hash = ? WHERE id = ?", (password_hash, user["id"]))
        ended = _end_user_sessions(conn, user["id"], at)
        append_in_transaction_sync(conn, "web.user.password_changed", actor, at,
                                   subject=f"web_user:{username}", details={"sessions_ended": ended})


def set_locale_sync(conn: sqlite3.Connection, username: str, locale: str | None, *,
                    actor: str, at: str | datetime) -> bool:
    """The account's page language (None: follow the browser), audited as
    ``web.user.locale_changed`` with the old and new value.  False when it was already that;
    NotFoundError if the account is unknown, ValueError for a locale not shipped."""
    if locale is not None and locale not in LOCALES:
        raise ValueError(f"locale {locale!r}: one of {', '.join(LOCALES)} (or none: the browser's)")
    with immediate(conn):
        user = get_user_sync(conn, username)
        if user is None:
            raise NotFoundError(f"no web user {username!r}")
        if user["locale"] == locale:
            return False
        conn.execute("UPDATE web_users SET locale = ? WHERE id = ?", (locale, user["id"]))
        append_in_transaction_sync(conn, "web.user.locale_changed", actor, at, subject=f"web_user:{username}",
                                   details={"from": user["locale"], "to": locale})
        return True


# -- sessions -------------------------------------------------------------------

def create_session_sync(conn: sqlite3.Connection, *, id_hash: str, user_id: int, username: str,
                        csrf_token: str, at: str | datetime, expires_at: str | datetime,
                        remote: str | None) -> None:
    """Store a new session (by the sha256 of its cookie) and audit the login."""
    with immediate(conn):
        conn.execute(
            "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (id_hash, user_id, csrf_token, to_db_time(at), to_db_time(expires_at)))
        append_in_transaction_sync(conn, "web.login", f"web:{username}", at,
                                   details={"remote": remote})


def get_session_sync(conn: sqlite3.Connection, id_hash: str, now: str | datetime) -> dict | None:
    """The live session with its user (id, username, role), or None when it is
    unknown, ended, expired, or its account is disabled."""
    return fetch_one(conn.execute(
        "SELECT s.id_hash, s.csrf_token, s.created_at, s.expires_at,"
        " u.id AS user_id, u.username, u.role, u.locale"
        " FROM web_sessions s JOIN web_users u ON u.id = s.user_id"
        " WHERE s.id_hash = ? AND s.ended_at IS NULL AND s.expires_at > ? AND u.disabled_at IS NULL",
        (id_hash, to_db_time(now))))


def end_session_sync(conn: sqlite3.Connection, id_hash: str, *, username: str,
                     at: str | datetime) -> bool:
    """Log out: end the session and audit it.  False if it was not live."""
    with immediate(conn):
        ended = conn.execute("UPDATE web_sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL",
                             (to_db_time(at), id_hash)).rowcount
        if ended:
            append_in_transaction_sync(conn, "web.logout", f"web:{username}", at)
        return bool(ended)


# -- failed logins --------------------------------------------------------------
#
# A login attempt is reserved before its password is checked: counting the recent
# failures and writing the attempt's own row are one BEGIN IMMEDIATE transaction,
# so concurrent attempts cannot all read the same count (the row counts as a
# failure until the password proves right).  Counted per account *and* client
# address (an attacker elsewhere cannot lock the owner out) and per address over
# all accounts (spraying); past the limit the next attempt waits a time that
# doubles with each further failure, up to the window, instead of a fixed lock.

@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """``attempt_id``: the reserved failure row, or None when refused unchecked
    (then ``retry_after`` seconds, and ``why``: ``account`` or ``address``)."""

    attempt_id: int | None
    retry_after: int = 0
    why: str = ""


def _wait(conn: sqlite3.Connection, where: str, params: tuple, *, since: str, at: datetime,
          limit: int, window: int, backoff: int) -> int:
    """Seconds still to wait for the failures selected by ``where`` (0: may try)."""
    failures, last = conn.execute(
        f"SELECT count(*), max(at) FROM web_login_failures WHERE {where} AND at >= ?",
        (*params, since)).fetchone()
    if failures < limit:
        return 0
    wait = min(window, backoff * 2 ** min(failures - limit, 30))
    remaining = (parse_db_time(last) - at).total_seconds() + wait
    return max(0, math.ceil(remaining))


def begin_login_sync(conn: sqlite3.Connection, username: str, remote: str | None, *, at: datetime,
                     window_seconds: int, max_failures: int, max_per_remote: int,
                     backoff_seconds: int) -> LoginAttempt:
    """Reserve one login attempt (a failure row) unless the account+address, or
    the address, must wait; see above."""
    username = username[:64]
    at_db = to_db_time(at)
    at = parse_db_time(at_db)
    since = to_db_time(at - timedelta(seconds=window_seconds))
    with immediate(conn):
        wait = _wait(conn, "username = ? AND remote IS ?", (username, remote), since=since, at=at,
                     limit=max_failures, window=window_seconds, backoff=backoff_seconds)
        if wait:
            return LoginAttempt(None, wait, "account")
        if remote is not None:
            wait = _wait(conn, "remote = ?", (remote,), since=since, at=at, limit=max_per_remote,
                         window=window_seconds, backoff=backoff_seconds)
            if wait:
                return LoginAttempt(None, wait, "address")
        return LoginAttempt(inserted_id(conn.execute(
            "INSERT INTO web_login_failures (username, remote, at) VALUES (?, ?, ?)",
            (username, remote, at_db))))


def login_failed_sync(conn: sqlite3.Connection, attempt_id: int, username: str, remote: str | None, *,
                      at: str | datetime, prune_before: str | datetime) -> None:
    """The reserved attempt was a wrong password: its row stays, audited
    ``web.login.failed``; failures older than the window are forgotten (the
    audit log keeps them)."""
    with immediate(conn):
        append_in_transaction_sync(conn, "web.login.failed", "web:anonymous", at,
                                   subject=f"web_user:{username[:64]}",
                                   details={"remote": remote, "attempt": attempt_id})
        conn.execute("DELETE FROM web_login_failures WHERE at < ?", (to_db_time(prune_before),))


def login_succeeded_sync(conn: sqlite3.Connection, attempt_id: int, username: str, remote: str | None) -> None:
    """The reserved attempt was right: it and the account's failures from this
    address are no longer failures (the session's audit entry is the login)."""
    with immediate(conn):
        conn.execute("DELETE FROM web_login_failures WHERE id = ? OR (username = ? AND remote IS ?)",
                     (attempt_id, username[:64], remote))


def prune_failures_sync(conn: sqlite3.Connection, before: str | datetime) -> int:
    """Forget failures older than the throttling window (the audit log keeps them)."""
    with immediate(conn):
        return conn.execute("DELETE FROM web_login_failures WHERE at < ?", (to_db_time(before),)).rowcount
