"""The ``download_links`` table: one signed, expiring link to one export for one
recipient (tokens and the rules for refusing them: callproof/rights/links.py).

The row is the authority: revocation, expiry and the download budget are
read here, and counting a download is one guarded UPDATE so a revocation or a
concurrent last download that happens between the caller's checks and the
count still wins.  Each change writes its audit entry in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._rows import Row
from ._sqlutil import fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import InvalidStateError, NotFoundError
from .timefmt import to_db_time

__all__ = ["DownloadLink", "count_download_sync", "get_link_sync", "insert_link_sync",
           "record_refusal_sync", "revoke_link_sync"]


@dataclass(frozen=True, slots=True)
class DownloadLink(Row):
    """A ``download_links`` row with the protocol of the call and the request it serves."""

    id: int
    export_id: int
    recipient: str
    issued_at: str
    issued_by: str
    expires_at: str
    revoked_at: str | None
    max_downloads: int | None
    download_count: int
    call_protocol: str
    request_id: int


_SELECT = ("SELECT l.*, q.protocol AS call_protocol, e.request_id FROM download_links l"
           " JOIN request_exports e ON e.id = l.export_id"
           " JOIN recording_requests q ON q.id = e.request_id WHERE l.id = ?")


def get_link_sync(conn: sqlite3.Connection, link_id: int) -> DownloadLink | None:
    return DownloadLink.maybe(fetch_one(conn.execute(_SELECT, (link_id,))))


def insert_link_sync(conn: sqlite3.Connection, export_id: int, *, recipient: str, actor: str,
                     at: str | datetime, expires_at: str | datetime, max_downloads: int | None) -> int:
    """A new link to a not-deleted export; audited ``link.issued``.  NotFoundError /
    InvalidStateError for a missing / deleted export."""
    at, expires_at = to_db_time(at), to_db_time(expires_at)
    with immediate(conn):
        export = fetch_one(conn.execute(
            "SELECT e.request_id, e.deleted_at, q.protocol AS call_protocol FROM request_exports e"
            " JOIN recording_requests q ON q.id = e.request_id WHERE e.id = ?", (export_id,)))
        if export is None:
            raise NotFoundError(f"export {export_id} does not exist")
        if export["deleted_at"] is not None:
            raise InvalidStateError(f"export {export_id} was deleted at {export['deleted_at']}")
        link_id = inserted_id(conn.execute(
            "INSERT INTO download_links (export_id, recipient, issued_at, issued_by, expires_at,"
            " max_downloads) VALUES (?, ?, ?, ?, ?, ?)",
            (export_id, recipient, at, actor, expires_at, max_downloads)))
        append_in_transaction_sync(
            conn, "link.issued", actor, at, protocol=export["call_protocol"], subject=f"link:{link_id}",
            details={"export_id": export_id, "request_id": export["request_id"], "recipient": recipient,
                     "expires_at": expires_at, "max_downloads": max_downloads})
    return link_id


def revoke_link_sync(conn: sqlite3.Connection, link_id: int, *, actor: str, at: str | datetime,
                     reason: str | None = None) -> None:
    """Revoke a link; audited ``link.revoked``.  NotFoundError / InvalidStateError
    for a missing / already revoked link."""
    at = to_db_time(at)
    with immediate(conn):
        link = get_link_sync(conn, link_id)
        if link is None:
            raise NotFoundError(f"download link {link_id} does not exist")
        if link.revoked_at is not None:
            raise InvalidStateError(f"download link {link_id} was already revoked at {link.revoked_at}")
        conn.execute("UPDATE download_links SET revoked_at = ? WHERE id = ?", (at, link_id))
        append_in_transaction_sync(
            conn, "link.revoked", actor, at, protocol=link.call_protocol, subject=f"link:{link_id}",
            details={"export_id": link.export_id, "recipient": link.recipient, "reason": reason})


def count_download_sync(conn: sqlite3.Connection, link_id: int, *, at: str | datetime, actor: str,
                        details: dict[str, Any],
                        refused: Callable[[DownloadLink | None], dict[str, Any]]
                        ) -> tuple[bool, DownloadLink | None]:
    """Count one download if the link is still usable at ``at``; ``(counted, link after)``.

    Audited in the same transaction: ``recording.downloaded`` with ``details``
    plus ``download`` / ``max_downloads`` when counted, else ``download.refused``
    with the details ``refused(link)`` gives (the caller decides why a link
    that changed meanwhile is refused)."""
    at = to_db_time(at)
    with immediate(conn):
        counted = conn.execute(
            "UPDATE download_links SET download_count = download_count + 1 WHERE id = ?"
            " AND revoked_at IS NULL AND expires_at > ?"
            " AND (max_downloads IS NULL OR download_count < max_downloads)", (link_id, at)).rowcount
        link = get_link_sync(conn, link_id)
        if counted and link is not None:
            append_in_transaction_sync(
                conn, "recording.downloaded", actor, at, protocol=link.call_protocol,
                subject=f"link:{link_id}",
                details={**details, "download": link.download_count, "max_downloads": link.max_downloads})
            return True, link
        append_in_transaction_sync(conn, "download.refused", actor, at,
                                   protocol=link.call_protocol if link else None,
                                   subject=f"link:{link_id}", details=refused(link))
    return False, link


def record_refusal_sync(conn: sqlite3.Connection, *, actor: str, at: str | datetime,
                        protocol: str | None, link_id: int | None, details: dict[str, Any]) -> None:
    """Audit one refused download (``download.refused``)."""
    at = to_db_time(at)
    with immediate(conn):
        append_in_transaction_sync(conn, "download.refused", actor, at, protocol=protocol,
                                   subject=None if link_id is None else f"link:{link_id}", details=details)
