"""Is a password or secret strong enough?  A small, dependency-free check: a deny list
(the well-known words, also under digits, symbols and l33t spelling), enough length,
enough different characters, no keyboard or alphabet runs, no repeated unit, and not
the account's own user name.  It refuses what people type when asked for a secret
(``aaaaaaaaaaaa``, ``password1234``, 32 times ``a``), not every guessable one.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise

from .errors import ConfigError

# Passwords that appear in Asterisk samples, tutorials and our own docs, and the words
# most leaked passwords are made of.
WELL_KNOWN_PASSWORDS = frozenset(
    {
        "", "asterisk", "password", "secret", "admin", "changeme", "change-me",
        "callproof", "1234", "12345", "123456", "mysecret", "amp111", "passw0rd",
        "ari", "ami", "test", "default", "letmein", "welcome", "qwerty", "senha",
        "contrasena", "root", "administrator", "master", "login", "abc", "iloveyou",
        "monkey", "dragon", "football", "sunshine", "princess", "trustno",
    }
)
MIN_PASSWORD_LENGTH = 12
MIN_SECRET_LENGTH = 32
MIN_PASSWORD_DISTINCT = 5
MIN_SECRET_DISTINCT = 8
MIN_SECRET_BITS_PER_CHAR = 2.5   # token_hex(16) never measured under 2.7 in 200,000 draws

_LEET = str.maketrans("0134579@$!|", "oieastgasil")
_RUNS = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _core(text: str) -> str:
    """The letters of ``text`` after undoing l33t spelling: ``P@ssw0rd!2026`` -> ``password``."""
    return "".join(c for c in text.lower().translate(_LEET) if c.isalpha())


def _mostly_runs(text: str) -> bool:
    """True when two thirds of neighbouring characters are the same or next to each other
    on the keyboard or in the alphabet (``abcd1234efgh``, ``qwertyuiop``).  "The same" is
    case-sensitive (``Pp`` is no repeat): of a million generated ``token_urlsafe(12)``
    passwords and ``token_hex(16)`` tokens none came out here, where a one-half threshold
    and case-folded repeats refused one password in 7,000 and one token in 25,000."""
    if len(text) < 2:
        return True
    steps = 0
    for a, b in pairwise(text):
        la, lb = a.lower(), b.lower()
        if a == b or any(abs(run.find(la) - run.find(lb)) == 1 for run in _RUNS if la in run and lb in run):
            steps += 1
    return steps * 3 > (len(text) - 1) * 2


def _repeated_unit(text: str) -> bool:
    """``abab…``, ``0123…0123…``: the text is a shorter string written again and again."""
    return len(text) > 1 and text in (text + text)[1:-1]


def _bits_per_char(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


_WORDS = sorted((w for w in WELL_KNOWN_PASSWORDS if len(w) >= 5), key=len, reverse=True)


def _deny_listed(value: str) -> bool:
    """A well-known word, alone, under digits/symbols/l33t, or making up most of ``value``."""
    low = value.strip().lower()
    if low in WELL_KNOWN_PASSWORDS or _core(value) in WELL_KNOWN_PASSWORDS:
        return True
    residue = low.translate(_LEET)
    for word in _WORDS:
        residue = residue.replace(word, "")
    return len(residue) * 2 < len(low)


def check_password(key: str, password: str, *, username: str = "") -> None:
    """ConfigError naming ``key`` if ``password`` is weak (see the module's rules)."""
    if _deny_listed(password):
        raise ConfigError(key, "empty or well-known password refused (also with digits or symbols"
                               " around it); set a strong secret")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(key, f"password shorter than {MIN_PASSWORD_LENGTH} characters refused")
    user = username.strip().lower()
    if user and (password.lower() in (user, user[::-1])
                 or (len(user) >= 3 and len(password.lower().replace(user, "")) < 8)):
        raise ConfigError(key, "password is (or is made of) the user name; set a strong secret")
    if (len(set(password)) < MIN_PASSWORD_DISTINCT or _repeated_unit(password)
            or _mostly_runs(password)):
        raise ConfigError(key, "password has too little variety (repeated characters, keyboard or"
                               " alphabet runs); set a strong secret")


def check_secret(key: str, value: str) -> None:
    """A set secret (HMAC key, API token) must be long and random-looking; empty means
    'feature off' and is accepted here (commands needing it say so)."""
    if not value:
        return
    hint = f"must be a random secret of at least {MIN_SECRET_LENGTH} characters (e.g. openssl rand -hex 32)"
    if _deny_listed(value) or len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(key, hint)
    if (len(set(value)) < MIN_SECRET_DISTINCT or _bits_per_char(value) < MIN_SECRET_BITS_PER_CHAR
            or _repeated_unit(value) or _mostly_runs(value)):
        raise ConfigError(key, f"{hint}; this one is too regular (repeated characters, runs or a repeated"
                               " pattern)")
