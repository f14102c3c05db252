"""Customer identifiers: CPF and customer codes, and their keyed hashes.

A CPF or customer code is personal data: the database keeps only
``identity_hash`` (HMAC-SHA256 with ``[rights] identity_key``), which can be
matched against a value the customer gives again but cannot be read back from
a database dump (an unkeyed hash of an 11-digit CPF would be brute-forced in
seconds).  The ``kind`` is part of the hashed message, so a customer code that
happens to look like a CPF never matches a CPF.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from typing import TYPE_CHECKING

from stdnum.br import cpf as _cpf
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength

if TYPE_CHECKING:
    from callproof.config import Config

__all__ = [
    "IDENTITY_KINDS",
    "MAX_CUSTOMER_CODE_LENGTH",
    "identity_hash",
    "identity_hash_for",
    "mask_cpf",
    "normalise_cpf",
    "normalise_customer_code",
]

IDENTITY_KINDS = ("cpf", "customer_code")
MAX_CUSTOMER_CODE_LENGTH = 64
_CPF_SPELLING = re.compile(r"[0-9 .\-]+")  # ASCII digits and the usual punctuation only


def normalise_cpf(text: str) -> str:
    """``'123.456.789-09'`` or ``'12345678909'`` -> ``'12345678909'``.

    Raises ValueError saying what is wrong (characters, length, check digits).
    Only ASCII digits, spaces, dots and dashes are accepted: python-stdnum
    would happily read other Unicode digits, which no customer types on purpose.
    """
    if not isinstance(text, str):
        raise TypeError(f"CPF must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("CPF is empty")
    if len(stripped) > 32 or not _CPF_SPELLING.fullmatch(stripped):
        raise ValueError("CPF may contain only digits, dots, dashes and spaces (e.g. 123.456.789-09)")
    digits = _cpf.compact(stripped)
    if len(digits) != 11:
        raise ValueError(f"CPF must have 11 digits, got {len(digits)}")
    if len(set(digits)) == 1:
        raise ValueError("CPF with all digits equal is not a real CPF")
    try:
        return _cpf.validate(digits)
    except InvalidChecksum:
        raise ValueError("CPF check digits are wrong (typo?)") from None
    except (InvalidFormat, InvalidLength):  # pragma: no cover - screened above
        raise ValueError("CPF is not in a valid format") from None


def mask_cpf(cpf: str) -> str:
    """``'12345678909'`` -> ``'***.456.789-**'`` (enough for an agent to compare, not to reuse)."""
    return f"***.{cpf[3:6]}.{cpf[6:9]}-**"


def normalise_customer_code(text: str) -> str:
    """A deployment's customer code, trimmed; ValueError if empty, too long or not printable.

    The code is compared exactly (case and inner spaces matter) after trimming and
    Unicode NFC normalisation, so the same code typed on two systems hashes the same.
    """
    if not isinstance(text, str):
        raise TypeError(f"customer code must be a string, got {type(text).__name__}")
    code = unicodedata.normalize("NFC", text.strip())
    if not code:
        raise ValueError("customer code is empty")
    if len(code) > MAX_CUSTOMER_CODE_LENGTH:
        raise ValueError(f"customer code longer than {MAX_CUSTOMER_CODE_LENGTH} characters")
    if not code.isprintable():
        raise ValueError("customer code contains control or other non-printable characters")
    return code


def identity_hash(key: str, kind: str, value: str) -> str:
    """HMAC-SHA256 (hex) of a CPF or customer code under ``key``.

    ``value`` is normalised first (so ``123.456.789-09`` and ``12345678909`` give
    the same hash); ``kind`` is the domain separation.  ValueError for a bad
    value or kind, or an empty key.
    """
    if kind not in IDENTITY_KINDS:
        raise ValueError(f"identity kind must be one of {', '.join(IDENTITY_KINDS)}, got {kind!r}")
    if not key:
        raise ValueError("identity_hash needs a key ([rights] identity_key)")
    normalised = normalise_cpf(value) if kind == "cpf" else normalise_customer_code(value)
    message = f"callproof-identity-v1\x00{kind}\x00{normalised}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def identity_hash_for(config: Config, kind: str, value: str) -> str:
    """:func:`identity_hash` with the configured key (ConfigError names it when unset)."""
    from callproof.config import require_secret

    return identity_hash(require_secret(config, "rights.identity_key"), kind, value)
