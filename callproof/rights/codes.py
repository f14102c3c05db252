"""Showing that a requester holds the call's phone: a one-time code by SMS.

Caller ID can be spoofed and a phone number is no secret, so "the number given is the
call's number" only ever lets a request's link go to that number.  A request that wants
the recording elsewhere (``deliver_to`` another number or an e-mail address) while its
only evidence is that number waits as ``needs_identity_check``, and a six-digit code is
sent by SMS, through the outbox, to the call's number.  Returning the code (``POST
/api/requests/<request protocol>/code``) makes the request ``received`` with the basis
``sms_code``; an agent's ``verify-identity`` does the same with the basis ``agent``.

At most :data:`MAX_CODES_PER_CALL_PER_DAY` codes go to one call's number in 24 hours
(someone who knows a protocol and its number cannot flood that phone); a code lives
``[rights] code_lifetime_minutes`` and allows ``[rights] code_max_attempts`` wrong tries.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callproof.config import Config
from callproof.numbers import normalise_caller
from callproof.sms.text import DATE_FORMATS
from callproof.storage import SyncDatabase
from callproof.storage.timefmt import parse_db_time, to_db_time

__all__ = ["MAX_CODES_PER_CALL_PER_DAY", "CodeCheck", "confirm_code_sync", "notify_call_number_sync",
           "send_code_sync", "sendable_number"]

MAX_CODES_PER_CALL_PER_DAY = 3
CODE_DIGITS = 6

# Plain GSM-7 text (no accents): one SMS part in every language.
CODE_TEXTS = {
    "pt_BR": "{company}: codigo {code} para confirmar o pedido {request_protocol} da gravacao do protocolo"
             " {protocol}. Valido por {minutes} min. Nao informe este codigo a ninguem.",
    "es": "{company}: codigo {code} para confirmar la solicitud {request_protocol} de la grabacion del"
          " protocolo {protocol}. Valido {minutes} min. No comparta este codigo.",
    "en": "{company}: code {code} confirms request {request_protocol} for the recording of protocol"
          " {protocol}. Valid for {minutes} min. Do not share this code.",
    "ca": "{company}: codi {code} per confirmar la peticio {request_protocol} de l'enregistrament del"
          " protocol {protocol}. Valid {minutes} min. No compartiu aquest codi.",
    "eu": "{company}: {code} kodea, {protocol} protokoloaren grabazioaren {request_protocol} eskaera"
          " berresteko. {minutes} min balio du. Ez eman kode hau inori.",
    "gl": "{company}: codigo {code} para confirmar a solicitude {request_protocol} da gravacion do"
          " protocolo {protocol}. Valido {minutes} min. Non comparta este codigo.",
}
NOTICE_TEXTS = {
    "pt_BR": "{company}: pedido {request_protocol} da gravacao do protocolo {protocol} registrado em {date}."
             " Prazo: {due}.",
    "es": "{company}: solicitud {request_protocol} de la grabacion del protocolo {protocol} registrada el"
          " {date}. Plazo: {due}.",
    "en": "{company}: request {request_protocol} for the recording of protocol {protocol} registered on"
          " {date}. Due: {due}.",
    "ca": "{company}: peticio {request_protocol} de l'enregistrament del protocol {protocol} registrada el"
          " {date}. Termini: {due}.",
    "eu": "{company}: {protocol} protokoloaren grabazioaren {request_protocol} eskaera erregistratu da."
          " Data: {date}. Epea: {due}.",
    "gl": "{company}: solicitude {request_protocol} da gravacion do protocolo {protocol} rexistrada o"
          " {date}. Prazo: {due}.",
}


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """The outcome of :func:`confirm_code_sync`."""

    outcome: str      # verified | wrong | expired | spent | no_code | not_waiting
    tries_left: int
    state: str        # the request's state afterwards


def sendable_number(call: dict[str, Any], config: Config) -> str | None:
    """The call's caller number in E.164 when an SMS can reach it, else None."""
    number = normalise_caller(call.get("caller_number") or "", config.general.phone_region)
    return number.e164 if number.e164 and number.sendable else None


def _language(config: Config, call: dict[str, Any]) -> str:
    language = call.get("language")
    return language if language in config.general.languages else config.general.default_language


def _local(config: Config, when: str, language: str, *, with_time: bool = False) -> str:
    local = parse_db_time(when).astimezone(config.general.tz)
    return local.strftime(DATE_FORMATS.get(language, "%Y-%m-%d") + (" %H:%M" if with_time else ""))


def send_code_sync(db: SyncDatabase, config: Config, request: dict[str, Any], call: dict[str, Any], *,
                   now: str | datetime, actor: str) -> bool:
    """Queue a new code for ``request`` to the call's number; False (nothing sent) when that
    number cannot receive SMS or already got its codes for today."""
    db = SyncDatabase.wrap(db)
    destination = sendable_number(call, config)
    if destination is None:
        return False
    at = parse_db_time(to_db_time(now))
    if db.requests.codes_sent_since(call["protocol"], at - timedelta(days=1)) >= MAX_CODES_PER_CALL_PER_DAY:
        return False
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    language = _language(config, call)
    minutes = config.rights.code_lifetime_minutes
    body = CODE_TEXTS.get(language, CODE_TEXTS["en"]).format(
        company=config.general.company_name, code=code, request_protocol=request["request_protocol"],
        protocol=request["protocol"], minutes=minutes)
    db.requests.queue_code(request["id"], code=code, salt=secrets.token_hex(16), destination=destination,
                           language=language, body=body, at=at, expires_at=at + timedelta(minutes=minutes),
                           actor=actor)
    return True


def confirm_code_sync(db: SyncDatabase, config: Config, request_id: int, code: str, *,
                      now: str | datetime, actor: str) -> CodeCheck:
    """Check a code the requester gave back (digits only; spaces and dashes ignored)."""
    db = SyncDatabase.wrap(db)
    given = "".join(c for c in str(code) if c not in " -")
    if not (given.isascii() and given.isdigit() and len(given) == CODE_DIGITS):
        raise ValueError(f"the code is {CODE_DIGITS} digits")
    outcome, left = db.requests.check_code(request_id, given, at=now, max_attempts=config.rights.code_max_attempts,
                                           actor=actor)
    row = db.requests.get(request_id)
    return CodeCheck(outcome=outcome, tries_left=left, state=row["state"] if row else "unknown")


def notify_call_number_sync(db: SyncDatabase, config: Config, request: dict[str, Any], call: dict[str, Any], *,
                            now: str | datetime, actor: str) -> bool:
    """Tell the call's number, by SMS, that a request was filed and its own protocol (the
    request IVR says the same to every caller, so this is how the customer learns it)."""
    db = SyncDatabase.wrap(db)
    destination = sendable_number(call, config)
    if destination is None:
        return False
    language = _language(config, call)
    body = NOTICE_TEXTS.get(language, NOTICE_TEXTS["en"]).format(
        company=config.general.company_name, request_protocol=request["request_protocol"],
        protocol=request["protocol"], date=_local(config, request["opened_at"], language),
        due=_local(config, request["due_at"], language, with_time=True))
    db.requests.queue_notice(request["id"], destination=destination, language=language, body=body, at=now,
                             actor=actor)
    return True
