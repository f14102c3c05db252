"""One-time codes sent by SMS to a call's number, and a request's identity basis.

A code proves the requester holds the phone of the call (caller ID alone can be
spoofed and a number is no secret).  Only a salted SHA-256 of the code is stored; the
SMS row, the code row and the audit entry are written in one transaction, and so are a
code's use, the request's move to ``received`` and their audit entries.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._sqlutil import fetch_one, immediate, inserted_id
from .audit import append_in_transaction_sync
from .errors import NotFoundError
from .protocols import _SQL_SMS
from .requests import get_request_sync, set_state_in_transaction_sync
from .timefmt import to_db_time

__all__ = ["IDENTITY_BASES", "check_code_sync", "codes_sent_since_sync", "queue_code_sync",
           "queue_notice_sync", "set_identity_basis_sync"]

IDENTITY_BASES = ("caller_number", "cpf", "customer_code", "sms_code", "agent")


def _digest(salt: str, code: str) -> str:
    return hashlib.sha256(f"callproof-request-code-v1\x00{salt}\x00{code}".encode()).hexdigest()


def _queue_sms(conn: sqlite3.Connection, protocol: str, destination: str, language: str, body: str,
               at: str) -> int:
    return inserted_id(conn.execute(
        _SQL_SMS, (protocol, None, destination, language, body, "pending", None, at, at, at)))


def _queue_request_sms(conn: sqlite3.Connection, request_id: int, *, destination: str, language: str,
                       body: str, at: str, actor: str, action: str,
                       then: Callable[[dict[str, Any], int], dict[str, Any]] | None = None) -> int:
    """What every SMS about a request does, inside the caller's write transaction: load the
    request (NotFoundError if gone), queue the SMS on the request's own protocol, and audit
    ``action`` with its outbox id and what ``then(request, outbox_id)`` wrote. The outbox id."""
    request = get_request_sync(conn, request_id)
    if request is None:
        raise NotFoundError(f"recording request {request_id} does not exist")
    outbox_id = _queue_sms(conn, request["request_protocol"] or request["protocol"], destination, language, body, at)
    details = {**(then(request, outbox_id) if then else {}), "outbox_id": outbox_id}
    append_in_transaction_sync(conn, action, actor, at, protocol=request["protocol"],
                               subject=f"request:{request_id}", details=details)
    return outbox_id


def queue_code_sync(conn: sqlite3.Connection, request_id: int, *, code: str, salt: str, destination: str,
                    language: str, body: str, at: str | datetime, expires_at: str | datetime,
                    actor: str) -> int:
    """The code's SMS (outbox, on the request's own protocol), its row and the audit entry
    ``request.code_sent`` (never the code), in one transaction.  Returns the code row's id."""
    at, expires = to_db_time(at), to_db_time(expires_at)
    made: list[int] = []

    def code_row(request: dict[str, Any], outbox_id: int) -> dict[str, Any]:
        made.append(inserted_id(conn.execute(
            "INSERT INTO request_codes (request_id, protocol, destination, salt, code_hash, outbox_id,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, request["protocol"], destination, salt, _digest(salt, code), outbox_id, at, expires))))
        return {"code_id": made[0], "expires_at": expires}

    with immediate(conn):
        _queue_request_sms(conn, request_id, destination=destination, language=language, body=body, at=at,
                           actor=actor, action="request.code_sent", then=code_row)
    return made[0]


def codes_sent_since_sync(conn: sqlite3.Connection, call_protocol: str, since: str | datetime) -> int:
    """How many codes went to the number of call ``call_protocol`` since ``since``."""
    row = conn.execute("SELECT count(*) FROM request_codes WHERE protocol = ? AND created_at >= ?",
                       (call_protocol, to_db_time(since))).fetchone()
    return int(row[0])


def check_code_sync(conn: sqlite3.Connection, request_id: int, code: str, *, at: str | datetime,
                    max_attempts: int, actor: str) -> tuple[str, int]:
    """Compare ``code`` with the request's latest code.  Returns ``(outcome, tries_left)``:
    ``verified`` (request -> ``received``, basis ``sms_code``), ``wrong``, ``expired``,
    ``spent`` (used, or too many wrong tries), ``no_code``, ``not_waiting`` (the request
    does not wait for an identity check).  Every try is audited; the code never is."""
    at = to_db_time(at)
    with immediate(conn):
        request = get_request_sync(conn, request_id)
        if request is None:
            raise NotFoundError(f"recording request {request_id} does not exist")
        if request["state"] != "needs_identity_check":
            return "not_waiting", 0
        row = fetch_one(conn.execute("SELECT * FROM request_codes WHERE request_id = ? ORDER BY id DESC LIMIT 1",
                                     (request_id,)))
        if row is None:
            return "no_code", 0
        left = max_attempts - row["attempts"]
        if row["used_at"] is not None or left <= 0:
            outcome, left = "spent", 0
        elif at > row["expires_at"]:
            outcome, left = "expired", 0
        elif hmac.compare_digest(_digest(row["salt"], code), row["code_hash"]):
            conn.execute("UPDATE request_codes SET used_at = ? WHERE id = ?", (at, row["id"]))
            set_state_in_transaction_sync(conn, request_id, "received", actor=actor, at=at,
                                          details={"identity_basis": "sms_code", "code_id": row["id"]})
            return "verified", left
        else:
            conn.execute("UPDATE request_codes SET attempts = attempts + 1 WHERE id = ?", (row["id"],))
            outcome, left = "wrong", left - 1
        append_in_transaction_sync(conn, f"request.code_{outcome}", actor, at, protocol=request["protocol"],
                                   subject=f"request:{request_id}",
                                   details={"code_id": row["id"], "tries_left": left})
    return outcome, left


def set_identity_basis_sync(conn: sqlite3.Connection, request_id: int, basis: str, *, actor: str,
                            at: str | datetime, details: dict | None = None) -> None:
    """Record a stronger identity basis on a request that is past intake (an agent checked
    the requester of a request accepted on its caller number); audited."""
    if basis not in IDENTITY_BASES:
        raise ValueError(f"identity basis must be one of {', '.join(IDENTITY_BASES)}, got {basis!r}")
    at = to_db_time(at)
    with immediate(conn):
        request = get_request_sync(conn, request_id)
        if request is None:
            raise NotFoundError(f"recording request {request_id} does not exist")
        conn.execute("UPDATE recording_requests SET identity_basis = ?, updated_by = ?, updated_at = ?"
                     " WHERE id = ?", (basis, actor, at, request_id))
        append_in_transaction_sync(conn, "request.identity_verified", actor, at, protocol=request["protocol"],
                                   subject=f"request:{request_id}",
                                   details={"identity_basis": basis, "state": request["state"], **(details or {})})


def queue_notice_sync(conn: sqlite3.Connection, request_id: int, *, destination: str, language: str,
                      body: str, at: str | datetime, actor: str) -> int:
    """An SMS telling the call's number that a request was filed (its own protocol), with its
    audit entry ``request.notice_sent``.  Returns the outbox id."""
    with immediate(conn):
        return _queue_request_sms(conn, request_id, destination=destination, language=language, body=body,
                                  at=to_db_time(at), actor=actor, action="request.notice_sent")
