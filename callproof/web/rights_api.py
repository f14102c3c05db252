"""The customer-rights functions (docs/customer-rights.md) as the web pages use
them: each runs on a pool connection, and every refusal the operator can act
on (bad input, wrong state, missing recording, unset secret) comes back as
:class:`InputError` with the module's own message, shown on the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callproof.storage import NotFoundError, StorageError, SyncDatabase

from ..config import EXPORT_FORMATS, Config, ConfigError
from ..rights.deadlines import days_remaining, deadline_status

if TYPE_CHECKING:
    from ..rights.codes import CodeCheck
    from ..rights.requests import FiledRequest

__all__ = ["EXPORT_FORMATS", "InputError", "confirm_code", "deadline_of", "deliver_request", "export_request",
           "file_request", "lookup", "open_requests", "refuse_request", "verify_identity"]


class InputError(Exception):
    """Something the operator (or API client) asked for was refused; the message says why.
    ``not_found``: the thing referred to (call, request) does not exist."""

    def __init__(self, message: str, *, not_found: bool = False):
        super().__init__(message)
        self.not_found = not_found


def _refusals() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [ValueError, StorageError, ConfigError]
    try:
        from ..rights.export import ExportError
        kinds.append(ExportError)
    except ImportError:
        pass
    try:
        from ..rights.delivery import DeliveryError
        kinds.append(DeliveryError)
    except ImportError:
        pass
    return tuple(kinds)


def _refused(exc: BaseException) -> InputError:
    return InputError(str(exc) or type(exc).__name__, not_found=isinstance(exc, NotFoundError))


def deadline_of(row: Mapping[str, Any], config: Config, now: datetime) -> dict[str, Any]:
    """``days_remaining`` and ``deadline`` (overdue / due_soon / on_time / closed / none)."""
    if row.get("closed_at") is not None:
        return {"days_remaining": None, "deadline": "closed"}
    if not row.get("due_at"):
        return {"days_remaining": None, "deadline": "none"}
    tz = config.general.tz
    return {"days_remaining": days_remaining(row["due_at"], now, tz),
            "deadline": deadline_status(row["due_at"], now, tz, config.rights.due_soon_days)}


def open_requests(db: SyncDatabase) -> list[dict[str, Any]]:
    """Open requests, soonest due first."""
    return db.requests.list(open_only=True)


def lookup(db: SyncDatabase, config: Config, *, actor: str, form: dict[str, str],
           now: datetime) -> list[dict[str, Any]]:
    """``lookup_sync`` from the search form (one of protocol / phone / cpf /
    customer code, dates as YYYY-MM-DD local days), one summary row per call."""
    from ..rights.lookup import lookup_sync

    kwargs: dict[str, Any] = {k: form[k] for k in ("protocol", "phone", "cpf", "customer_code") if form.get(k)}
    try:
        results = lookup_sync(db, config, actor=actor, date_from=form.get("from") or None,
                              date_to=form.get("to") or None, now=now, **kwargs)
    except _refusals() as exc:
        raise _refused(exc) from None
    return [_summary(r) for r in results]


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    call, recordings, sms = result["call"], result["recordings"], result["sms"]
    rec = recordings[-1] if recordings else None
    state = rec["state"] if rec else "none"
    text = {"finalised": "present", "deleted": "deleted (receipt in audit log)", "none": "no recording",
            "recording": "recording…"}.get(state, state)
    if result["hold"]["held"] and state != "deleted":
        text += ", held"
    reqs = result["requests"]
    return {
        "protocol": call["protocol"], "started_at": call["started_at"], "caller": call["caller_number"],
        "status": call["status"], "consent": result["consent"]["outcome"] or "—",
        "recording_state": state, "recording_text": text,
        "sms": sms[0]["state"] if sms else "—",
        "requests": ", ".join(f"{r['request_protocol']} ({r['state']})" for r in reqs) if reqs else "—",
    }


def file_request(db: SyncDatabase, config: Config, *, call_protocol: str, channel: str, actor: str,
                 now: str | datetime, requester_number: str | None = None, cpf: str | None = None,
                 customer_code: str | None = None, deliver_to: str | None = None,
                 identity_verified_by: str | None = None) -> FiledRequest:
    """``file_request_sync``; returns its FiledRequest."""
    from ..rights.requests import file_request_sync

    try:
        return file_request_sync(db, config, call_protocol=call_protocol, channel=channel, actor=actor, now=now,
                                 requester_number=requester_number, cpf=cpf, customer_code=customer_code,
                                 deliver_to=deliver_to, identity_verified_by=identity_verified_by)
    except _refusals() as exc:
        raise _refused(exc) from None


def confirm_code(db: SyncDatabase, config: Config, request_protocol: str, code: str, *, actor: str,
                 now: datetime) -> CodeCheck:
    """``confirm_code_sync`` for the request named by its own protocol."""
    from ..rights.codes import confirm_code_sync
    from ..rights.requests import resolve_request_sync

    try:
        row = resolve_request_sync(db, request_protocol)
        return confirm_code_sync(db, config, row["id"], code, actor=actor, now=now)
    except _refusals() as exc:
        raise _refused(exc) from None


def verify_identity(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                    note: str | None = None) -> str:
    from ..rights.requests import verify_identity_sync

    try:
        verify_identity_sync(db, config, request_id, actor=actor, now=now, note=note)
    except _refusals() as exc:
        raise _refused(exc) from None
    return "identity verified; the request is received"


def refuse_request(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                   reason: str) -> str:
    from ..rights.requests import refuse_request_sync

    if not reason.strip():
        raise InputError("reason: say why the request is refused")
    try:
        refuse_request_sync(db, config, request_id, reason=reason, actor=actor, now=now)
    except _refusals() as exc:
        raise _refused(exc) from None
    return "refused"


def export_request(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                   fmt: str | None = None) -> str:
    from ..rights.export import export_request_sync

    try:
        row = export_request_sync(db, config, request_id, actor=actor, now=now, fmt=fmt)
    except _refusals() as exc:
        raise _refused(exc) from None
    return f"exported as {row.format} ({row.size_bytes} bytes, sha256 {row.sha256[:12]}…)"


def deliver_request(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                    via: str, to: str | None = None) -> str:
    from ..rights.delivery import deliver_request_sync

    if via not in ("sms", "email"):
        raise InputError(f"via: deliver by sms or email, not {via!r}")
    try:
        row = deliver_request_sync(db, config, request_id, via=via, actor=actor, now=now, to=to)
    except _refusals() as exc:
        raise _refused(exc) from None
    recipient = row.recipient.removeprefix(f"{row.channel}:")
    return f"link sent by {row.channel} to {recipient} ({row.state})"
