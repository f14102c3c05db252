"""The customer-rights functions (docs/customer-rights.md) as the web pages use
them: each runs on a pool connection, and every refusal the operator can act
on (bad input, wrong state, missing recording, unset secret) comes back as
:class:`InputError` with the module's own message, shown on the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callproof.storage import NotFoundError, StorageError, SyncDatabase

from ..config import EXPORT_FORMATS, Config, ConfigError
from ..rights.deadlines import days_remaining, deadline_status
from .i18n import N_

if TYPE_CHECKING:
    from ..rights.codes import CodeCheck
    from ..rights.requests import FiledRequest

__all__ = ["EXPORT_FORMATS", "InputError", "Outcome", "confirm_code", "deadline_of", "deliver_request",
           "export_request", "file_request", "lookup", "open_requests", "refuse_request", "verify_identity"]


class InputError(Exception):
    """Something the operator (or API client) asked for was refused; the message says why.
    ``not_found``: the thing referred to (call, request) does not exist.  A message of this
    module is a catalogue entry with ``%(name)s`` placeholders filled from ``values``
    (``str()`` is the English; ``in_language`` the reader's); one passed on from the rights
    modules is translated by its wording (callproof/web/refusals.py), else shown as written."""

    def __init__(self, message: str, *, not_found: bool = False, values: Mapping[str, Any] | None = None):
        self.message, self.values = message, dict(values or {})
        super().__init__(message % self.values if self.values else message)
        self.not_found = not_found

    def in_language(self, gettext: Callable[[str], str]) -> str:
        if self.values:
            return gettext(self.message) % self.values
        translated = gettext(self.message)
        if translated != self.message:
            return translated
        from .refusals import translated as refusal  # one passed on from the rights modules
        return refusal(self.message, gettext)


@dataclass(frozen=True)
class Outcome:
    """What an action did, for the page to say in the reader's language: a catalogue message
    (English, ``%(name)s`` placeholders) and its values; ``numbers`` are shown in the reader's
    number format, ``states`` by their translated names (views_requests.py)."""

    message: str
    values: Mapping[str, Any] = field(default_factory=dict)
    numbers: tuple[str, ...] = ()
    states: tuple[str, ...] = ()


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


#: how the search results name a recording's state (translated where shown)
RECORDING_TEXT = {"finalised": N_("present"), "deleted": N_("deleted (receipt in audit log)"),
                  "none": N_("no recording"), "recording": N_("recording…"), "empty": N_("empty"),
                  "missing": N_("missing"), "failed": N_("failed")}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """One search result row; stored values stay as stored (the page translates their names)."""
    call, recordings, sms = result["call"], result["recordings"], result["sms"]
    rec = recordings[-1] if recordings else None
    state = rec["state"] if rec else "none"
    return {
        "protocol": call["protocol"], "started_at": call["started_at"], "caller": call["caller_number"],
        "status": call["status"], "consent": result["consent"]["outcome"],
        "recording_state": state, "recording_text": RECORDING_TEXT.get(state, state),
        "held": bool(result["hold"]["held"]) and state != "deleted",
        "sms": sms[0]["state"] if sms else None,
        "requests": [{"request_protocol": r["request_protocol"], "state": r["state"]} for r in result["requests"]],
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
                    note: str | None = None) -> Outcome:
    from ..rights.requests import verify_identity_sync

    try:
        verify_identity_sync(db, config, request_id, actor=actor, now=now, note=note)
    except _refusals() as exc:
        raise _refused(exc) from None
    return Outcome(N_("identity verified; the request is received"))


def refuse_request(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                   reason: str) -> Outcome:
    from ..rights.requests import refuse_request_sync

    if not reason.strip():
        raise InputError(N_("reason: say why the request is refused"))
    try:
        refuse_request_sync(db, config, request_id, reason=reason, actor=actor, now=now)
    except _refusals() as exc:
        raise _refused(exc) from None
    return Outcome(N_("refused"))


def export_request(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                   fmt: str | None = None) -> Outcome:
    from ..rights.export import export_request_sync

    try:
        row = export_request_sync(db, config, request_id, actor=actor, now=now, fmt=fmt)
    except _refusals() as exc:
        raise _refused(exc) from None
    return Outcome(N_("exported as %(format)s (%(size)s bytes, sha256 %(sha256)s…)"),
                   {"format": row.format, "size": row.size_bytes, "sha256": row.sha256[:12]}, numbers=("size",))


def deliver_request(db: SyncDatabase, config: Config, request_id: int, *, actor: str, now: datetime,
                    via: str, to: str | None = None) -> Outcome:
    from ..rights.delivery import deliver_request_sync

    if via not in ("sms", "email"):
        raise InputError(N_("via: deliver by sms or email, not %(via)r"), values={"via": via})
    try:
        row = deliver_request_sync(db, config, request_id, via=via, actor=actor, now=now, to=to)
    except _refusals() as exc:
        raise _refused(exc) from None
    recipient = row.recipient.removeprefix(f"{row.channel}:")
    return Outcome(N_("link sent by %(channel)s to %(recipient)s (%(state)s)"),
                   {"channel": row.channel, "recipient": recipient, "state": row.state}, states=("state",))
