"""The CPF / customer code an admin's dialplan captured for a call (e.g. in an
earlier IVR), turned into the keyed hashes stored on the call row.

The dialplan sets ``CALLPROOF_CPF`` and/or ``CALLPROOF_CUSTOMER_CODE`` before
entering callproof; the call flow (``callproof/callflow/flow.py``, on ARI and AGI)
reads them at call start when ``[rights] identity_key``
is set, and store only :func:`callproof.rights.identity.identity_hash` of each
-- matchable by ``callproof lookup --cpf``, not readable in a database dump.
An invalid value is logged as a warning naming the problem (never the value)
and not stored; the call goes on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callproof.logs import event

if TYPE_CHECKING:
    from callproof.config import Config

__all__ = ["CPF_VARIABLE", "CUSTOMER_CODE_VARIABLE", "CallIdentity", "capture_wanted", "hash_call_identity"]

log = logging.getLogger("callproof.identity")

CPF_VARIABLE = "CALLPROOF_CPF"
CUSTOMER_CODE_VARIABLE = "CALLPROOF_CUSTOMER_CODE"
_KINDS = (("cpf", CPF_VARIABLE), ("customer_code", CUSTOMER_CODE_VARIABLE))
_DIGIT_RUN = re.compile(r"[0-9]{3,}")


@dataclass(frozen=True, slots=True)
class CallIdentity:
    cpf_hash: str | None = None
    customer_code_hash: str | None = None

    def __bool__(self) -> bool:
        return self.cpf_hash is not None or self.customer_code_hash is not None


def capture_wanted(config: Config) -> bool:
    """Reading the variables costs round trips to Asterisk: only with a key to hash them."""
    return bool(config.rights.identity_key)


def _problem(exc: Exception) -> str:
    """The validation message with any run of digits removed: a message must never
    carry (part of) the value it complains about."""
    return _DIGIT_RUN.sub("…", str(exc))[:200]


def hash_call_identity(config: Config, *, cpf: str | None, customer_code: str | None,
                       channel: str) -> CallIdentity:
    """Keyed hashes of the captured values; an empty, missing or invalid value gives None."""
    key = config.rights.identity_key
    if not key:
        return CallIdentity()
    # Imported here: python-stdnum (CPF check digits) is only needed when capture is on,
    # and the classic AGI script imports this module on every call.
    from callproof.rights.identity import identity_hash

    hashes: dict[str, str | None] = {}
    for (kind, variable), text in zip(_KINDS, (cpf, customer_code), strict=True):
        hashes[kind] = None
        if text is None or not text.strip():
            continue
        try:
            hashes[kind] = identity_hash(key, kind, text)
        except ValueError as exc:
            event(log, "call.identity_invalid", logging.WARNING, channel=channel, variable=variable,
                  problem=_problem(exc))
    return CallIdentity(cpf_hash=hashes["cpf"], customer_code_hash=hashes["customer_code"])
