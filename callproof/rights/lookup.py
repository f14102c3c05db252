"""Finding a customer's calls: by protocol, by caller number, by CPF or customer code.

The answer per call is what an agent needs to tell the customer what happened
and what can still be done: the call, the consent evidence, the recording (still
there, deleted with its audit receipt, or held and by what), the protocol SMS and
the requests already filed.  Every lookup is written to the audit log with the
kind of selector used (never a CPF or customer code, not even hashed) and the
protocols it revealed.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from callproof.callflow.queue_wait import agent_wait
from callproof.config import Config
from callproof.numbers import normalise_caller
from callproof.storage import SyncDatabase
from callproof.storage.timefmt import parse_db_time, to_db_time

from .identity import identity_hash_for
from .requests import check_protocol, with_deadline

__all__ = ["DEFAULT_LIMIT", "SELECTORS", "lookup_sync", "mask_number", "parse_day_bound"]

SELECTORS = ("protocol", "phone", "cpf", "customer_code")
DEFAULT_LIMIT = 200
_AUDIT_MAX_PROTOCOLS = 50

_CALL_FIELDS = ("id", "protocol", "started_at", "caller_number", "caller_name", "dialled_number",
                "language", "status", "ended_at", "hangup_cause", "handed_off_at", "anonymised_at")
_CONSENT_FIELDS = (("prompt", "consent_prompt"), ("language", "consent_language"),
                   ("sha256", "consent_sha256"), ("started_at", "consent_started_at"),
                   ("finished_at", "consent_finished_at"), ("outcome", "consent_outcome"))
_RECORDING_FIELDS = ("id", "state", "started_at", "finalised_at", "duration_ms", "size_bytes", "sha256",
                     "retention_class", "retention_until", "error")
_REQUEST_FIELDS = ("id", "request_protocol", "state", "channel", "opened_at", "due_at", "closed_at",
                   "refused_reason", "created_by", "updated_by", "updated_at", "deliver_to")


def mask_number(number: str | None) -> str | None:
    """``+5511912345678`` -> ``+551191234****`` (as ``callproof sms list`` shows it)."""
    if not number:
        return number
    return number[:-4] + "****" if len(number) > 6 else "****"


def parse_day_bound(value: str | date | datetime | None, tz: tzinfo, *, end: bool) -> str | None:
    """A range bound in the stored format.

    A ``date`` (or ``YYYY-MM-DD``) is a whole local day: its start for ``from``,
    the start of the next day for ``to`` (so ``--to`` is inclusive).  An aware
    datetime / ISO-8601 string with an offset is taken as is.  ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text)
        except ValueError:
            try:
                return to_db_time(text)
            except ValueError:
                raise ValueError(f"bad date {value!r}: use YYYY-MM-DD (a local day)"
                                 " or ISO-8601 with an offset") from None
    if isinstance(value, datetime):
        return to_db_time(value)
    if isinstance(value, date):
        return to_db_time(datetime.combine(value + timedelta(days=1 if end else 0), time(0), tz))
    raise TypeError(f"a date bound must be a date, datetime or string, got {type(value).__name__}")


def _selector(config: Config, protocol: str | None, phone: str | None, cpf: str | None,
              customer_code: str | None) -> tuple[str, str]:
    """(kind, value to compare) for exactly one selector."""
    given = [(k, v) for k, v in (("protocol", protocol), ("phone", phone), ("cpf", cpf),
                                 ("customer_code", customer_code)) if v not in (None, "")]
    if len(given) != 1:
        raise ValueError("give exactly one of protocol, phone, cpf or customer code"
                         + (f" (got {', '.join(k for k, _ in given)})" if given else ""))
    kind, value = given[0]
    assert value is not None
    if kind == "protocol":
        return kind, check_protocol(value.strip())
    if kind == "phone":
        number = normalise_caller(value, config.general.phone_region)
        if number.e164 is None:
            raise ValueError(f"phone {value!r} is not a valid phone number ({number.reason})")
        return kind, number.e164
    return kind, identity_hash_for(config, kind, value)


def _holds(db: SyncDatabase, call: dict[str, Any], grace_cutoff: str) -> dict[str, Any]:
    """What keeps this call's recording from the retention sweeper (storage/holds.py rule)."""
    legal = [h.as_dict() for h in db.lookups.active_holds(call["protocol"], call["caller_number"],
                                                          call["started_at"])]
    requests = db.lookups.open_request_ids(call["protocol"], grace_cutoff) if call["protocol"] else []
    return {"held": bool(legal or requests), "legal_holds": legal, "requests": requests}


def _deletion_receipt(db: SyncDatabase, recording_id: int) -> dict[str, Any] | None:
    row = db.lookups.deletion_receipt(recording_id)
    if row is None:
        return None
    return {"audit_id": row.id, "hash": row.hash, "at": row.at, "actor": row.actor, "details": row.details}


_SMS_FIELDS = ("id", "state", "destination", "attempts", "reason", "created_at", "updated_at")


def _describe(db: SyncDatabase, config: Config, call: dict[str, Any], now: str,
              grace_cutoff: str) -> dict[str, Any]:
    recordings = []
    for rec in db.recordings.for_call(call["id"]):
        item = {k: rec.get(k) for k in _RECORDING_FIELDS}
        item["deletion_receipt"] = _deletion_receipt(db, rec["id"]) if rec["state"] == "deleted" else None
        recordings.append(item)
    sms = []
    if call["protocol"]:
        for row in db.lookups.sms_for_protocol(call["protocol"]):
            sms.append({**{k: row[k] for k in _SMS_FIELDS}, "destination": mask_number(row.destination)})
    requests = []
    if call["protocol"]:
        for req in db.requests.for_call(call["protocol"]):
            decorated = with_deadline(req, config, now)
            requests.append({**{k: req.get(k) for k in _REQUEST_FIELDS},
                             "days_remaining": decorated["days_remaining"],
                             "deadline": decorated["deadline"]})
    return {
        "call": {k: call.get(k) for k in _CALL_FIELDS},
        "consent": {name: call.get(col) for name, col in _CONSENT_FIELDS},
        "time_to_agent": agent_wait(call),
        "recordings": recordings,
        "hold": _holds(db, call, grace_cutoff),
        "sms": sms,
        "requests": requests,
    }


def lookup_sync(
    db: SyncDatabase,
    config: Config,
    *,
    actor: str,
    protocol: str | None = None,
    phone: str | None = None,
    cpf: str | None = None,
    customer_code: str | None = None,
    date_from: str | date | datetime | None = None,
    date_to: str | date | datetime | None = None,
    now: str | datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """The calls matching one selector (newest first, at most ``limit``), each
    described as in the module docstring; audited as ``lookup``.

    ``phone``: any common spelling (read in ``[general] phone_region``).
    ``date_from`` / ``date_to``: local days (inclusive) or aware times.
    ValueError names a bad selector or date; ConfigError when a CPF / customer
    code is given but ``[rights] identity_key`` is not set."""
    db = SyncDatabase.wrap(db)
    if not actor or not actor.strip():
        raise ValueError("a lookup needs who is looking (actor)")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10000:
        raise ValueError(f"limit must be between 1 and 10000, got {limit!r}")
    kind, param = _selector(config, protocol, phone, cpf, customer_code)
    tz = config.general.tz
    start = parse_day_bound(date_from, tz, end=False)
    stop = parse_day_bound(date_to, tz, end=True)
    if start and stop and not start < stop:
        raise ValueError(f"date range is empty: from {start} is not before to {stop}")
    calls = db.lookups.find_calls(kind, param, start=start, stop=stop, limit=limit)
    now_db = to_db_time(now) if now is not None else to_db_time(datetime.now(tz))
    grace_cutoff = to_db_time(parse_db_time(now_db) - timedelta(days=config.retention.request_grace_days))
    results = [_describe(db, config, call, now_db, grace_cutoff) for call in calls]
    found = [r["call"]["protocol"] for r in results if r["call"]["protocol"]]
    details: dict[str, Any] = {"by": kind, "count": len(results), "protocols": found[:_AUDIT_MAX_PROTOCOLS]}
    if start or stop:
        details.update({"from": start, "to": stop})
    db.audit.append("lookup", actor.strip(), now_db, protocol=param if kind == "protocol" else None,
                subject=f"lookup:{kind}", details=details)
    return results
