"""Password hashing for web accounts: scrypt (RFC 7914, ``hashlib.scrypt``).

Why scrypt from the standard library: it is a memory-hard KDF (like argon2),
needs no compiled extra dependency, and OpenSSL's implementation is the one
every Debian system already trusts.  The stored string carries its own
parameters and salt, so the cost can be raised later without breaking old
hashes::

    scrypt$n=32768,r=8,p=1$<salt, base64>$<key, base64>
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from ..config import ConfigError, _check_password

SCHEME = "scrypt"
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2 ** 15, 8, 1   # 32 MiB, ~0.1 s per hash
KEY_BYTES = 32
SALT_BYTES = 16
MAX_PASSWORD_LENGTH = 1024


class WeakPassword(ValueError):
    """The password is refused by the same rules as the config's secrets."""


def check_password_strength(password: str) -> None:
    """At least 12 characters and not a well-known password (callproof.config rules)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password longer than {MAX_PASSWORD_LENGTH} characters refused")
    try:
        _check_password("password", password)
    except ConfigError as exc:
        raise WeakPassword(str(exc).split(": ", 1)[-1]) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kdf(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + (1 << 20), dklen=KEY_BYTES)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """An encoded hash with a fresh random salt (the strength check is the caller's)."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}$n={n},r={r},p={p}${_b64(salt)}${_b64(_kdf(password, salt, n, r, p))}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for a wrong password or
    a malformed/unknown hash (never raises on stored data)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        scheme, params, salt_b64, key_b64 = encoded.split("$")
        if scheme != SCHEME:
            return False
        values = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        if not (2 <= n <= 2 ** 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        salt, expected = base64.b64decode(salt_b64, validate=True), base64.b64decode(key_b64, validate=True)
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(_kdf(password, salt, n, r, p), expected)


@functools.cache
def _dummy_hash() -> str:
    """Checked when the username is unknown, so that answer takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def verify_or_waste_time(password: str, encoded: str | None) -> bool:
    """verify_password, or the same work against a dummy hash when there is no account."""
    if encoded is None:
        verify_password(password, _dummy_hash())
        return False
    return verify_password(password, encoded)
