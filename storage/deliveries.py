"""The ``request_deliveries`` table: a download link sent to the customer by
SMS (through ``sms_outbox``) or e-mail (callproof/rights/delivery.py decides
what is sent; this module records it).

Every change writes ``request.delivery`` in its own transaction; a delivery
that reaches the customer moves the request to ``delivered`` in the same one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._rows import Row, rows
from ._sqlutil import fetch_all, fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .protocols import _SQL_SMS
from .requests import get_request_sync, set_state_in_transaction_sync
from .timefmt import to_db_time

__all__ = ["Delivery", "DeliveryAudit", "deliveries_for_request_sync", "finish_email_sync",
           "get_delivery_sync", "queue_email_sync", "queue_sms_sync"]


@dataclass(frozen=True, slots=True)
class Delivery(Row):
    id: int
    request_id: int
    link_id: int
    channel: str
    recipient: str
    state: str
    outbox_id: int | None
    error: str | None
    created_at: str
    created_by: str
    sent_at: str | None


@dataclass(frozen=True, slots=True)
class DeliveryAudit:
    """What every ``request.delivery`` entry of one delivery names."""

    request_id: int
    protocol: str          # the call's protocol (the audit entry's protocol)
    link_id: int
    link_expires_at: str
    channel: str
    recipient: str


def _audit(conn: sqlite3.Connection, a: DeliveryAudit, delivery_id: int, outcome: str, actor: str, at: str,
           *, outbox_id: int | None = None, error: str | None = None) -> None:
    details: dict[str, Any] = {"delivery_id": delivery_id, "request_id": a.request_id,
                               "channel": a.channel, "recipient": a.recipient, "outcome": outcome,
                               "link_id": a.link_id, "link_expires_at": a.link_expires_at}
    if outbox_id is not None:
        details["outbox_id"] = outbox_id
    if error is not None:
        details["error"] = error
    append_in_transaction_sync(conn, "request.delivery", actor, at, protocol=a.protocol,
                               subject=f"request:{a.request_id}", details=details)


def _insert(conn: sqlite3.Connection, a: DeliveryAudit, actor: str, at: str,
            outbox_id: int | None = None, redacted_body: str | None = None) -> int:
    return inserted_id(conn.execute(
        "INSERT INTO request_deliveries (request_id, link_id, channel, recipient, state, outbox_id,"
        " created_at, created_by, redacted_body) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        (a.request_id, a.link_id, a.channel, a.recipient, outbox_id, at, actor, redacted_body)))


def get_delivery_sync(conn: sqlite3.Connection, delivery_id: int) -> Delivery | None:
    return Delivery.maybe(fetch_one(conn.execute("SELECT * FROM request_deliveries WHERE id = ?",
                                                 (delivery_id,))))


def deliveries_for_request_sync(conn: sqlite3.Connection, request_id: int) -> list[Delivery]:
    return rows(Delivery, fetch_all(conn.execute(
        "SELECT * FROM request_deliveries WHERE request_id = ? ORDER BY id", (request_id,))))


def queue_sms_sync(conn: sqlite3.Connection, a: DeliveryAudit, *, sms_protocol: str, destination: str,
                   language: str, body: str, actor: str, at: str | datetime,
                   redacted_body: str | None = None) -> Delivery:
    """One ``sms_outbox`` row (the outbox sender sends it), the ``queued`` delivery,
    its audit entry and the request's move to ``delivered``: one transaction.

    ``redacted_body``: the body without its download token; a trigger
    (migration 0008) puts it in ``sms_outbox.body`` once the SMS is sent."""
    at = to_db_time(at)
    with immediate(conn):
        outbox_id = inserted_id(conn.execute(
            _SQL_SMS, (sms_protocol, None, destination, language, body, "pending", None, at, at, at)))
        delivery_id = _insert(conn, a, actor, at, outbox_id, redacted_body)
        _audit(conn, a, delivery_id, "queued", actor, at, outbox_id=outbox_id)
        set_state_in_transaction_sync(conn, a.request_id, "delivered", actor=actor, at=at,
                                      details={"delivery_id": delivery_id, "via": "sms"})
    return _get(conn, delivery_id)


def queue_email_sync(conn: sqlite3.Connection, a: DeliveryAudit, *, actor: str, at: str | datetime) -> int:
    """The ``queued`` e-mail delivery, stored before talking to the mail server."""
    at = to_db_time(at)
    with immediate(conn):
        delivery_id = _insert(conn, a, actor, at)
        _audit(conn, a, delivery_id, "queued", actor, at)
    return delivery_id


def finish_email_sync(conn: sqlite3.Connection, a: DeliveryAudit, delivery_id: int, *, error: str | None,
                      actor: str, at: str | datetime, deliverable: frozenset[str]) -> Delivery:
    """``sent`` (request ``delivered`` if it is still in one of ``deliverable``) or
    ``failed`` with the server's ``error`` (request unchanged)."""
    at = to_db_time(at)
    with immediate(conn):
        if error is None:
            conn.execute("UPDATE request_deliveries SET state = 'sent', sent_at = ? WHERE id = ?",
                         (at, delivery_id))
            _audit(conn, a, delivery_id, "sent", actor, at)
            # The mail is out whatever happened meanwhile: record it even if the
            # request was refused while we talked to the server (it stays refused).
            current = get_request_sync(conn, a.request_id)
            if current is not None and current["state"] in deliverable:
                set_state_in_transaction_sync(conn, a.request_id, "delivered", actor=actor, at=at,
                                              details={"delivery_id": delivery_id, "via": "email"})
        else:
            conn.execute("UPDATE request_deliveries SET state = 'failed', error = ? WHERE id = ?",
                         (error, delivery_id))
            _audit(conn, a, delivery_id, "failed", actor, at, error=error)
    return _get(conn, delivery_id)


def _get(conn: sqlite3.Connection, delivery_id: int) -> Delivery:
    row = get_delivery_sync(conn, delivery_id)
    assert row is not None
    return row
