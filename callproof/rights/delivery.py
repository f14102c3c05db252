"""Deliver an exported recording to the customer: a download link by SMS or e-mail.

A delivery issues a new signed link (callproof/rights/links.py) to the latest
export of the request for exactly one recipient, then:

* **SMS**: one ``sms_outbox`` row on the request's own protocol, body from
  ``[rights] sms_link_templates`` in the call's language.  The existing
  outbox sender sends it (retries, receipts); the delivery row is ``queued``
  with the outbox id, in the same transaction as the request's move to
  ``delivered`` and its audit entry.
* **E-mail**: the delivery row is stored ``queued`` first (so a crash while
  talking to the mail server leaves a trace), the mail goes over SMTP
  (``[rights.smtp]``), then the row becomes ``sent`` (request ``delivered``)
  or ``failed`` with the server's error (request stays ``exported``, the
  unused link is revoked).  Nothing is lost: deliver again when the server is back.

Every outcome is audited as ``request.delivery``.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from callproof.config import Config, ConfigError
from callproof.sms.text import DATE_FORMATS
from callproof.storage import NotFoundError, SyncDatabase
from callproof.storage.deliveries import Delivery, DeliveryAudit
from callproof.storage.timefmt import parse_db_time, to_db_time

from .export import latest_export_sync
from .links import IssuedLink, issue_link_sync, redact_link_tokens, revoke_link_sync
from .requests import normalise_deliver_to
from .texts import EMAIL_TEXTS

VIA = ("sms", "email")
DELIVERABLE_STATES = frozenset({"exported", "delivered"})

class DeliveryError(Exception):
    """A delivery refused before anything was sent (no export, wrong state, bad
    recipient...).  ``reason``: ``state``, ``no_export``, ``recipient``, ``config``, ``identity``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def deliver_request_sync(db: SyncDatabase, config: Config, request_id: int, *, via: str,
                         actor: str, now: str | datetime, to: str | None = None) -> Delivery:
    """Send request ``request_id``'s latest export to the customer; returns the
    ``request_deliveries`` row.

    ``via``: ``sms`` or ``email``.  ``to``: the recipient (``sms:<number>``,
    ``email:<address>``, or a bare number / address for ``via``); default: the
    request's ``deliver_to`` when it is for ``via``, else (SMS) the number the
    request came from.  A row with state ``failed`` and ``error`` set is
    returned (not raised) when the mail server refused or could not be
    reached: the attempt is recorded and the request stays ``exported``.
    Raises DeliveryError when nothing was attempted, NotFoundError for an
    unknown request.
    """
    db = SyncDatabase.wrap(db)
    if via not in VIA:
        raise DeliveryError("recipient", f"deliver via 'sms' or 'email', not {via!r}")
    if not actor or not actor.strip():
        raise ValueError("a delivery needs the actor (who sent it)")
    at = to_db_time(now)
    request = db.requests.get(request_id)
    if request is None:
        raise NotFoundError(f"recording request {request_id} does not exist")
    if request["state"] not in DELIVERABLE_STATES:
        hint = " (export it first)" if request["state"] == "received" else ""
        raise DeliveryError("state", f"request {request_id} is {request['state']!r}; only an exported"
                            f" or delivered request can be delivered{hint}")
    export = latest_export_sync(db, request_id)
    if export is None:
        raise DeliveryError("no_export", f"request {request_id} has no export to deliver; export it first")
    recipient = _recipient(config, request, via, to)
    if via == "email" and not config.rights.smtp.sender:
        raise DeliveryError("config", str(ConfigError("rights.smtp.sender",
                                                      "required to deliver recordings by e-mail")))
    call = db.calls.get_by_protocol(request["protocol"])
    own = f"sms:{call['caller_number']}" if call and call.get("caller_number") else None
    if request.get("identity_basis") == "caller_number" and recipient != own:
        raise DeliveryError("identity", f"request {request_id} was accepted on the call's number alone (caller"
                            " ID can be spoofed): its link goes only to that number by SMS, until the"
                            " requester returns the code sent there or an agent verifies identity"
                            " (request verify-identity)")
    language = _language(config, call)
    link = issue_link_sync(db, config, export.id, recipient=recipient, actor=actor, now=at)
    texts = _texts(config, request, call, link, language)
    audit = DeliveryAudit(request_id=request["id"], protocol=request["protocol"], link_id=link.link_id,
                          link_expires_at=link.expires_at, channel=via, recipient=recipient)
    if via == "sms":
        return _deliver_sms(db, config, request, audit, language, texts, actor, at)
    return _deliver_email(db, config, audit, link, language, texts, actor, at)


def get_delivery_sync(db: SyncDatabase, delivery_id: int) -> Delivery | None:
    return SyncDatabase.wrap(db).deliveries.get(delivery_id)


# --------------------------------------------------------------------------

def _recipient(config: Config, request: dict, via: str, to: str | None) -> str:
    target = to if to is not None and to.strip() else None
    wanted = request["deliver_to"]
    if target is None and wanted and wanted.startswith(f"{via}:"):
        target = wanted
    if target is None and via == "sms" and request["requester_number"]:
        target = f"sms:{request['requester_number']}"  # the number the request came from
    if target is None:
        asked = f" (it asks for {wanted})" if wanted else ""
        raise DeliveryError("recipient", f"request {request['id']} has no {via} deliver-to{asked};"
                            f" say where to send it (e.g. {via}:...)")
    target = target.strip()
    if not target.lower().startswith(("sms:", "email:")):
        target = f"{via}:{target}"
    try:
        recipient = normalise_deliver_to(target, config.general.phone_region)
    except ValueError as exc:
        raise DeliveryError("recipient", str(exc)) from None
    assert recipient is not None  # target is not blank
    kind = recipient.partition(":")[0]
    if kind != via:
        raise DeliveryError("recipient", f"cannot deliver via {via} to {recipient}; give a"
                            f" {via} recipient")
    return recipient


def _language(config: Config, call: dict | None) -> str:
    language = (call or {}).get("language")
    return language if language in config.general.languages else config.general.default_language


def _local(config: Config, when: str, language: str) -> str:
    local = parse_db_time(when).astimezone(config.general.tz)
    return local.strftime(f"{DATE_FORMATS.get(language, '%Y-%m-%d')} %H:%M")


def _texts(config: Config, request: dict, call: dict | None, link: IssuedLink,
           language: str) -> dict[str, str]:
    return {
        "company": config.general.company_name,
        "protocol": request["protocol"],
        "request_protocol": request["request_protocol"] or "-",
        "url": link.url,
        "expires": _local(config, link.expires_at, language),
        "call_time": _local(config, call["started_at"], language) if call else "-",
        "max_downloads": str(config.rights.link_max_downloads),
    }


def _deliver_sms(db: SyncDatabase, config: Config, request: dict[str, Any], audit: DeliveryAudit,
                 language: str, texts: dict[str, str], actor: str, at: str) -> Delivery:
    template = config.rights.sms_link_templates.get(language) \
        or config.rights.sms_link_templates[config.general.default_language]
    body = template.format(company=texts["company"], protocol=texts["protocol"], url=texts["url"],
                           expires=texts["expires"])
    # Kept in the outbox only until it is sent: then the row holds this instead (a database
    # copy must not hand out working links).
    redacted = template.format(company=texts["company"], protocol=texts["protocol"],
                               url=redact_link_tokens(texts["url"]), expires=texts["expires"])
    # The request's own protocol (a service contact); a bare retention hook row has none.
    sms_protocol = request["request_protocol"] or request["protocol"]
    return db.deliveries.queue_sms(audit, sms_protocol=sms_protocol, destination=audit.recipient.partition(":")[2],
                                   language=language, body=body, actor=actor, at=at,
                                   redacted_body=redacted)


def _deliver_email(db: SyncDatabase, config: Config, audit: DeliveryAudit, link: IssuedLink, language: str,
                   texts: dict[str, str], actor: str, at: str) -> Delivery:
    delivery_id = db.deliveries.queue_email(audit, actor=actor, at=at)
    error = send_email(config, build_email(config, audit.recipient.partition(":")[2], language, texts))
    row = db.deliveries.finish_email(audit, delivery_id, error=error, actor=actor, at=at,
                                     deliverable=DELIVERABLE_STATES)
    if error is not None:  # never received: the link must not stay usable
        revoke_link_sync(db, link.link_id, actor=actor, now=at, reason="e-mail delivery failed")
    return row


# --------------------------------------------------------------------------
# e-mail

def build_email(config: Config, address: str, language: str, texts: dict[str, str]) -> EmailMessage:
    """The plain-text mail with the link, in the customer's language."""
    words = EMAIL_TEXTS.get(language) or EMAIL_TEXTS["en"]
    smtp = config.rights.smtp
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = address
    msg["Subject"] = words["subject"].format(**texts)
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(words["body"].format(**texts))
    return msg


def send_email(config: Config, msg: EmailMessage) -> str | None:
    """Send over ``[rights.smtp]``; None on success, else the error in words
    (server, port and what went wrong) for the delivery row."""
    s = config.rights.smtp
    where = f"SMTP server {s.host}:{s.port}"
    context = ssl.create_default_context()
    try:
        if s.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        with client:
            if s.starttls:
                client.starttls(context=context)
            if s.username:
                client.login(s.username, s.password)
            refused = client.send_message(msg)
        if refused:
            return f"{where} refused recipient(s): {', '.join(sorted(refused))}"
        return None
    except smtplib.SMTPRecipientsRefused as exc:
        return f"{where} refused the recipient: {_smtp_reply(exc.recipients)}"
    except smtplib.SMTPAuthenticationError as exc:
        return f"{where} refused the login of {s.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}"
    except smtplib.SMTPResponseException as exc:
        return f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
    except smtplib.SMTPException as exc:
        return f"{where}: {exc}"
    except ssl.SSLError as exc:
        return f"{where}: TLS failed: {exc.reason or exc}"
    except TimeoutError:
        return f"{where} did not answer within {s.timeout_seconds:g} s"
    except OSError as exc:
        return f"{where} unreachable: {exc.strerror or exc}"


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _smtp_reply(recipients: dict) -> str:
    return "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in recipients.items())
