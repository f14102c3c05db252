"""Caller number normalisation: E.164 and "can this number receive an SMS?".

The caller ID is attacker-controlled, so the input is screened before it is
handed to ``phonenumbers``: only ASCII digits, a leading ``+`` and the usual
separators (space, ``-``, ``.``, ``(``, ``)``, ``/``) are accepted, plus the
Brazilian ``0xx11...`` spelling.  Anything else (letters, Unicode digits,
control characters) is ``invalid`` rather than being creatively interpreted
(phonenumbers would otherwise turn Arabic-Indic digits or vanity letters into
a number we might text).

Reasons (``NormalisedNumber.reason``) when not sendable:

=============== ==========================================================
``withheld``    empty, ``None``, ``anonymous``, ``restricted``, ...
``invalid``     not a number, bad characters, too long, not a valid number
``too_short``   too few digits, or a local number without area code
``fixed_line``  valid fixed-line number (for BR phonenumbers can tell)
``toll_free``,  valid but cannot receive SMS (also ``shared_cost``,
``premium_rate`` ``uan``, ``voicemail``, ``pager``)
=============== ==========================================================

Valid mobile, fixed-line-or-mobile, VoIP, personal and unknown-type numbers
are sendable; ``e164`` is set for every valid number, sendable or not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

__all__ = ["NormalisedNumber", "normalise_caller"]

_WITHHELD_WORDS = frozenset(
    {"anonymous", "restricted", "unknown", "withheld", "private", "unavailable", "unavail", "blocked"}
)
_ALLOWED = re.compile(r"\+?[0-9 \t().\-/]*")  # ASCII only; fullmatch
_BR_XX = re.compile(r"^0\s*[xX]{2}")  # "0xx11 91234-5678"
_MAX_INPUT = 64

_NOT_SENDABLE_TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.PAGER: "pager",
}

_PARSE_ERROR_REASONS: dict[int, str] = {
    NumberParseException.TOO_SHORT_NSN: "too_short",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
}

_POSSIBLE_REASONS: dict[int, str | None] = {
    ValidationResult.IS_POSSIBLE: None,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too_short",  # e.g. BR number without area code
    ValidationResult.TOO_SHORT: "too_short",
    ValidationResult.TOO_LONG: "invalid",
    ValidationResult.INVALID_LENGTH: "invalid",
    ValidationResult.INVALID_COUNTRY_CODE: "invalid",
}


@dataclass(frozen=True, slots=True)
class NormalisedNumber:
    e164: str | None  # "+5511912345678", or None when not a valid number
    sendable: bool  # worth sending the protocol SMS to
    reason: str | None  # why not sendable (see module docstring); None when sendable


def _not(reason: str, e164: str | None = None) -> NormalisedNumber:
    return NormalisedNumber(e164=e164, sendable=False, reason=reason)


def normalise_caller(raw: str | None, default_region: str = "BR") -> NormalisedNumber:
    """Normalise an (untrusted) caller number.

    National spellings are read in *default_region* (ISO 3166 alpha-2), so
    with ``BR`` all of ``+55 11 91234-5678``, ``5511912345678``,
    ``011912345678``, ``0xx11 91234-5678``, ``015 11 91234-5678`` (carrier
    code), ``(11) 91234-5678`` and ``11912345678`` give
    ``+5511912345678``.  Never raises for bad input; see the module docstring
    for the reasons.
    """
    if raw is None:
        return _not("withheld")
    if not isinstance(raw, str):
        raise TypeError(f"caller number must be str or None, got {type(raw).__name__}")
    text = raw.strip()
    if not text or text.lower() in _WITHHELD_WORDS:
        return _not("withheld")
    if len(text) > _MAX_INPUT:
        return _not("invalid")
    text = _BR_XX.sub("0", text)
    if not _ALLOWED.fullmatch(text) or not any(c.isdigit() for c in text):
        return _not("invalid")

    region = (default_region or "").upper()
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.NOT_A_NUMBER and sum(c.isdigit() for c in text) < 3:
            return _not("too_short")  # phonenumbers wants at least 2-3 digits to call it a number
        return _not(_PARSE_ERROR_REASONS.get(exc.error_type, "invalid"))

    possible = phonenumbers.is_possible_number_with_reason(number)
    reason = _POSSIBLE_REASONS.get(possible, "invalid")
    if reason is not None:
        return _not(reason)
    if not phonenumbers.is_valid_number(number):
        return _not("invalid")

    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    kind = phonenumbers.number_type(number)
    blocked = _NOT_SENDABLE_TYPES.get(kind)
    if blocked is not None:
        return _not(blocked, e164)
    return NormalisedNumber(e164=e164, sendable=True, reason=None)
