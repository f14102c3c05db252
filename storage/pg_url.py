"""``[storage] url``: which PostgreSQL database, and how it is written in a message.

The URL names the server, the user and the database (``postgresql://callproof@db1/callproof``,
query parameters such as ``?sslmode=verify-full`` passed through); the password never
sits in it: it comes from ``[storage] password`` (the secrets file's
``CALLPROOF_STORAGE_PASSWORD``) or libpq's own ``~/.pgpass``.  Every message that
names the database uses :func:`masked`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")

_PASSWORD_IN_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.split(":", 1)[0].lower() in SCHEMES and "://" in target


def check_url(url: str) -> str | None:
    """What is wrong with ``url`` as ``[storage] url`` (None when it is usable)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme.lower() not in SCHEMES:
        return "must be a postgresql:// URL (leave it empty for SQLite at [storage] database)"
    if parts.password is not None or re.search(r"(^|&)password=", parts.query):
        return ("must not hold the password: put it in the secrets file as CALLPROOF_STORAGE_PASSWORD "
                "(or in the service user's ~/.pgpass)")
    if not parts.path.strip("/"):
        return "must name the database (postgresql://user@host/DATABASE)"
    if not parts.username:
        return "must name the user (postgresql://USER@host/database)"
    return None


def conninfo(url: str, password: str = "") -> str:
    """The libpq connection string for ``url`` with ``password`` (when set) added."""
    if not password:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, "password=" + _quote(password)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def masked(text: str) -> str:
    """``text`` with any password in a PostgreSQL URL or ``password=`` parameter replaced by ``***``."""
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)
