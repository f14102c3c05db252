"""Filing and moving customer recording requests (docs/customer-rights.md).

Intake is the same for every channel (CLI, HTTP API, IVR, web page): the call
must exist, the request gets its own protocol and a due time in local calendar
days, and it is ``received`` at once only when the requester is shown to be the
caller (same CPF / customer code, an agent says they checked, or the call's own
number, which counts only while the link would go to that number: caller ID is
spoofable); otherwise it waits as ``needs_identity_check`` for an agent or for the
one-time code sent to the call's number (:mod:`.codes`).  Both cases are audited in
the transaction that stores the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callproof.config import Config
from callproof.numbers import normalise_caller
from callproof.storage import NotFoundError, SyncDatabase
from callproof.storage.requests import CHANNELS, STATES, NewRequest
from callproof.storage.timefmt import parse_db_time, to_db_time

from .codes import send_code_sync
from .deadlines import days_remaining, deadline_status, due_at, local_day_end
from .identity import identity_hash_for

__all__ = [
    "FiledRequest",
    "check_protocol",
    "due_soon_until",
    "file_request_sync",
    "list_requests_sync",
    "normalise_deliver_to",
    "refuse_request_sync",
    "request_metrics_sync",
    "resolve_request_sync",
    "verify_identity_sync",
    "with_deadline",
]

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


@dataclass(frozen=True, slots=True)
class FiledRequest:
    """The outcome of :func:`file_request_sync`."""

    id: int
    request_protocol: str       # the request's own protocol (tell it to the customer)
    call_protocol: str
    state: str                  # 'received' or 'needs_identity_check' (or later, if existing)
    received_at: str            # stored UTC format
    due_at: str                 # stored UTC format
    created: bool               # False: an open request by the same requester already existed
    identity_basis: str | None  # why it was accepted at once: caller_number | cpf | customer_code | agent
    code_sent: bool = False     # a one-time code went by SMS to the call's number (codes.py)


def check_protocol(protocol: str, what: str = "protocol") -> str:
    """``protocol`` itself if it is 17 ASCII digits; ValueError naming ``what`` otherwise."""
    if not (isinstance(protocol, str) and len(protocol) == 17 and protocol.isascii() and protocol.isdigit()):
        raise ValueError(f"{what} must be 17 digits (4-digit year + 13-digit sequence), got {protocol!r}")
    return protocol


def normalise_deliver_to(text: str | None, region: str) -> str | None:
    """``sms:<number>`` (any spelling -> E.164) or ``email:<address>``; ValueError otherwise."""
    if text is None or not text.strip():
        return None
    kind, sep, target = text.strip().partition(":")
    kind = kind.lower()
    if not sep or kind not in ("sms", "email"):
        raise ValueError(f"deliver-to must be sms:<number> or email:<address>, got {text!r}")
    target = target.strip()
    if kind == "sms":
        number = normalise_caller(target, region)
        if number.e164 is None:
            raise ValueError(f"deliver-to sms number {target!r} is not a valid phone number ({number.reason})")
        if not number.sendable:
            raise ValueError(f"deliver-to sms number {number.e164} cannot receive SMS ({number.reason})")
        return f"sms:{number.e164}"
    if len(target) > 254 or not _EMAIL.fullmatch(target):
        raise ValueError(f"deliver-to e-mail address {target!r} is not valid")
    return f"email:{target}"


def _requester_number(text: str | None, region: str) -> str | None:
    if text is None or not text.strip():
        return None
    number = normalise_caller(text, region)
    if number.e164 is None:
        raise ValueError(f"requester number {text!r} is not a valid phone number ({number.reason})")
    return number.e164


def file_request_sync(
    db: SyncDatabase,
    config: Config,
    *,
    call_protocol: str,
    channel: str,
    actor: str,
    now: str | datetime,
    requester_number: str | None = None,
    cpf: str | None = None,
    customer_code: str | None = None,
    deliver_to: str | None = None,
    identity_verified_by: str | None = None,
) -> FiledRequest:
    """File a request for the recording of ``call_protocol``.

    ``requester_number``: the number the request comes from (IVR: the calling
    number) or that the customer gave, any spelling.  ``cpf`` /
    ``customer_code``: compared with the call's keyed hashes.
    ``identity_verified_by``: the agent who checked identity another way.
    Raises ValueError (bad input, named), NotFoundError (no call with that
    protocol), ConfigError (a CPF / code given but no [rights] identity_key).
    """
    db = SyncDatabase.wrap(db)
    check_protocol(call_protocol, "call protocol")
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if not actor or not actor.strip():
        raise ValueError("a request needs who files it (actor)")
    region = config.general.phone_region
    number = _requester_number(requester_number, region)
    deliver = normalise_deliver_to(deliver_to, region)
    cpf_hash = identity_hash_for(config, "cpf", cpf) if cpf else None
    code_hash = identity_hash_for(config, "customer_code", customer_code) if customer_code else None
    verified_by = identity_verified_by.strip() if identity_verified_by and identity_verified_by.strip() else None

    call = db.calls.get_by_protocol(call_protocol)
    if call is None:
        raise NotFoundError(f"no call with protocol {call_protocol}")

    # Caller ID can be spoofed and a number is no secret: on its own, the call's number only
    # ever sends the link to that number (callproof/rights/codes.py).
    call_number = call["caller_number"]
    number_matches = number is not None and number == call_number
    if cpf_hash is not None and cpf_hash == call.get("cpf_hash"):
        basis: str | None = "cpf"
    elif code_hash is not None and code_hash == call.get("customer_code_hash"):
        basis = "customer_code"
    elif verified_by is not None:
        basis = "agent"
    elif number_matches and deliver in (None, f"sms:{call_number}"):
        basis = "caller_number"
    else:
        basis = None
    state = "received" if basis else "needs_identity_check"

    received = to_db_time(now)
    due = due_at(received, config.rights.request_due_days, config.general.tz)
    details: dict[str, Any] = {
        "identity_basis": basis,
        "number_given": number is not None,
        "number_matches_caller": number_matches,
        "cpf_given": cpf_hash is not None,
        "customer_code_given": code_hash is not None,
        "deliver_via": deliver.partition(":")[0] if deliver else None,
    }
    if verified_by:
        details["identity_verified_by"] = verified_by
    row, created = db.requests.create(
        NewRequest(call_protocol=call_protocol, state=state, channel=channel, opened_at=received,
                   due_at=due, created_by=actor.strip(), requester_number=number,
                   requester_identity_hash=cpf_hash or code_hash, deliver_to=deliver, identity_basis=basis),
        year=parse_db_time(received).astimezone(config.general.tz).year,
        audit_action=f"request.{state}", audit_details=details)
    code_sent = False
    if created and state == "needs_identity_check" and number_matches:
        # the requester says they are the caller: let them show it with the phone itself
        code_sent = send_code_sync(db, config, row, call, now=received, actor=actor.strip())
    return FiledRequest(
        id=row["id"], request_protocol=row["request_protocol"], call_protocol=row["protocol"],
        state=row["state"], received_at=row["opened_at"], due_at=row["due_at"], created=created,
        identity_basis=basis if created else None, code_sent=code_sent)


def resolve_request_sync(db: SyncDatabase, ref: str | int) -> dict[str, Any]:
    """A request by id (``'12'``) or by its own 17-digit protocol; NotFoundError otherwise."""
    db = SyncDatabase.wrap(db)
    text = str(ref).strip()
    if len(text) == 17 and text.isascii() and text.isdigit():
        row = db.requests.get_by_protocol(text)
        if row is None:
            raise NotFoundError(f"no recording request with protocol {text}")
        return row
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise ValueError(f"a request is named by its id or its 17-digit protocol, got {text!r}")
    row = db.requests.get(int(text))
    if row is None:
        raise NotFoundError(f"no recording request with id {text}")
    return row


def verify_identity_sync(db: SyncDatabase, config: Config, request_id: int, *,
                         actor: str, now: str | datetime, note: str | None = None) -> dict[str, Any]:
    """An agent confirmed the requester is the caller: ``needs_identity_check`` ->
    ``received``.  The due time stays the one set at intake."""
    db = SyncDatabase.wrap(db)
    details = {"note": note.strip()} if note and note.strip() else None
    row = db.requests.get(request_id)
    if row is not None and row["state"] not in ("needs_identity_check", "refused") \
            and row.get("identity_basis") == "caller_number":
        # accepted on its caller number (so deliverable only there): the agent's check lets the
        # link go to another address too
        db.requests.set_identity_basis(request_id, "agent", actor=actor, at=now, details=details)
        updated = db.requests.get(request_id)
        assert updated is not None  # it was there a moment ago; requests are never deleted
        return updated
    return db.requests.set_state(request_id, "received", actor=actor, at=now, details=details)


def refuse_request_sync(db: SyncDatabase, config: Config, request_id: int, *,
                        reason: str, actor: str, now: str | datetime) -> dict[str, Any]:
    """Close a request without delivery; ``reason`` is stored and audited."""
    return SyncDatabase.wrap(db).requests.set_state(request_id, "refused", actor=actor, at=now, reason=reason)


def with_deadline(row: Mapping[str, Any], config: Config, now: str | datetime) -> dict[str, Any]:
    """``row`` plus ``days_remaining`` and ``deadline`` (overdue / due_soon / on_time;
    ``closed`` for delivered/refused, ``none`` without a due time)."""
    out = dict(row)
    if row.get("closed_at") is not None:
        out["days_remaining"], out["deadline"] = None, "closed"
    elif not row.get("due_at"):
        out["days_remaining"], out["deadline"] = None, "none"
    else:
        tz = config.general.tz
        out["days_remaining"] = days_remaining(row["due_at"], now, tz)
        out["deadline"] = deadline_status(row["due_at"], now, tz, config.rights.due_soon_days)
    return out


def due_soon_until(config: Config, now: str | datetime) -> datetime:
    """The latest due time that still counts as "due soon" at ``now``."""
    tz = config.general.tz
    today = (parse_db_time(now) if isinstance(now, str) else now).astimezone(tz).date()
    return local_day_end(today + timedelta(days=config.rights.due_soon_days), tz)


def request_metrics_sync(db: SyncDatabase, config: Config, *, now: str | datetime) -> dict[str, Any]:
    """Counts of open requests, those due within ``[rights] due_soon_days`` local
    days (not yet overdue) and overdue ones; plus counts per state."""
    db = SyncDatabase.wrap(db)
    counts = db.requests.count_open(now=now, soon_until=due_soon_until(config, now))
    return {**counts, "by_state": db.requests.count_by_state()}


def list_requests_sync(db: SyncDatabase, **filters: Any) -> list[dict[str, Any]]:
    """:meth:`RequestsRepo.list` (storage/requests.py ``list_requests_sync``)."""
    return SyncDatabase.wrap(db).requests.list(**filters)


__all__ += ["STATES"]
