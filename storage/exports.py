"""The ``request_exports`` table: audio files made for a recording request
(callproof/rights/export.py converts; this module records).

Recording an export is one transaction: the row, the ``recording.exported``
audit entry and the request's move to ``exported`` (a ``delivered`` request
stays delivered), after checking that the request is still exportable -- it
may have been refused while the file was being converted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._rows import Row, rows
from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import InvalidStateError
from .requests import get_request_sync, set_state_in_transaction_sync
from .timefmt import to_db_time

__all__ = ["Export", "ExportSummary", "exports_for_request_sync", "get_export_sync",
           "latest_export_sync", "record_export_sync"]


@dataclass(frozen=True, slots=True)
class Export(Row):
    id: int
    request_id: int
    format: str
    path: str
    sha256: str
    size_bytes: int
    created_at: str
    created_by: str
    deleted_at: str | None = None


@dataclass(frozen=True, slots=True)
class ExportSummary(Row):
    """What a request's page shows of an export (no file path)."""

    id: int
    format: str
    sha256: str
    size_bytes: int
    created_at: str
    created_by: str
    deleted_at: str | None = None


def get_export_sync(conn: sqlite3.Connection, export_id: int) -> Export | None:
    return Export.maybe(fetch_one(conn.execute("SELECT * FROM request_exports WHERE id = ?", (export_id,))))


def exports_for_request_sync(conn: sqlite3.Connection, request_id: int) -> list[Export]:
    return rows(Export, fetch_all(conn.execute(
        "SELECT * FROM request_exports WHERE request_id = ? ORDER BY id", (request_id,))))


def export_summaries_sync(conn: sqlite3.Connection, request_id: int) -> list[ExportSummary]:
    return rows(ExportSummary, fetch_all(conn.execute(
        "SELECT id, format, sha256, size_bytes, created_at, created_by, deleted_at FROM request_exports"
        " WHERE request_id = ? ORDER BY id", (request_id,))))


def latest_export_sync(conn: sqlite3.Connection, request_id: int) -> Export | None:
    """The newest export of the request whose file was not deleted."""
    return Export.maybe(fetch_one(conn.execute(
        "SELECT * FROM request_exports WHERE request_id = ? AND deleted_at IS NULL"
        " ORDER BY id DESC LIMIT 1", (request_id,))))


def record_export_sync(
    conn: sqlite3.Connection, request_id: int, *, fmt: str, path: str, sha256: str, size_bytes: int,
    actor: str, at: str | datetime, protocol: str, exportable: Collection[str],
    audit_details: dict[str, Any],
) -> Export:
    """Store the export of ``request_id``, audit ``recording.exported`` (``audit_details``
    plus the export's id) and move a ``received``/``exported`` request to ``exported``.

    InvalidStateError when the request is no longer in one of ``exportable``
    states (nothing is written then)."""
    at = to_db_time(at)
    with immediate(conn):
        current = get_request_sync(conn, request_id)
        if current is None or current["state"] not in exportable:
            raise InvalidStateError(f"request {request_id} became "
                                    f"{current and current['state']!r} during the export")
        export_id = inserted_id(conn.execute(
            "INSERT INTO request_exports (request_id, format, path, sha256, size_bytes,"
            " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_id, fmt, path, sha256, size_bytes, at, actor)))
        append_in_transaction_sync(conn, "recording.exported", actor, at, protocol=protocol,
                                   subject=f"export:{export_id}", details=audit_details)
        if current["state"] in ("received", "exported"):  # 'delivered' stays delivered
            set_state_in_transaction_sync(conn, request_id, "exported", actor=actor, at=at,
                                          details={"export_id": export_id, "format": fmt})
    export = get_export_sync(conn, export_id)
    assert export is not None
    return export
