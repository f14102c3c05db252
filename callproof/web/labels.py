"""How the page names the values storage keeps: call statuses, recording, SMS, request
and delivery states, consent outcomes, roles.  The stored value never changes (it is what
storage's state machines and the audit log speak); only its display is translated, through
these catalogue entries.  A value with no entry is shown as stored."""

from __future__ import annotations

from collections.abc import Callable

from .i18n import N_

STATUS_NAMES: dict[str, str] = {
    # calls (storage/call_status.py)
    "consent_playing": N_("announcement playing"),
    "abandoned_in_consent": N_("caller left during the announcement"),
    "abandoned_in_entry": N_("caller left while entering digits"),
    "protocol_reading": N_("protocol being read"),
    "abandoned_in_protocol": N_("caller left during the protocol"),
    "protocol_given": N_("protocol given"),
    "recording": N_("recording"),
    "handed_off": N_("handed off"),
    "completed": N_("completed"),
    "failed": N_("failed"),
    # consent outcomes
    "finished": N_("played in full"),
    "caller_left": N_("caller left"),
    # recordings
    "finalised": N_("finalised"),
    "deleted": N_("deleted"),
    "missing": N_("missing"),
    "empty": N_("empty"),
    # SMS
    "pending": N_("pending"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "logged": N_("logged"),
    "queued": N_("queued"),
    "not_sendable": N_("not sendable"),
    "dead": N_("gave up"),
    # requests and their deliveries
    "needs_identity_check": N_("needs identity check"),
    "received": N_("received"),
    "exported": N_("exported"),
    "delivered": N_("delivered"),
    "refused": N_("refused"),
    "not_found": N_("not found"),
    "filed": N_("filed"),
    "cancelled": N_("cancelled"),
    "scheduled": N_("scheduled"),
    "dialling": N_("dialling"),
    "collecting": N_("collecting"),
    "expired": N_("expired"),
    "revoked": N_("revoked"),
    # request deadlines (callproof/rights/deadlines.py)
    "overdue": N_("overdue"),
    "due_soon": N_("due soon"),
    "on_time": N_("on time"),
}

ROLE_NAMES: dict[str, str] = {"viewer": N_("viewer"), "operator": N_("operator"), "admin": N_("admin")}


def status_label(gettext: Callable[[str], str], value: str | None) -> str:
    """The reader's name for a stored status/state/role value (the value itself if unknown)."""
    if not value:
        return ""
    name = STATUS_NAMES.get(value) or ROLE_NAMES.get(value)
    return gettext(name) if name else value
