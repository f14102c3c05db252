"""Caller-ID sanitising and recording file names (security-critical).

The caller ID arrives over SIP and is attacker-controlled: anything may be in
it (``../``, ``;rm -rf /``, ``$(reboot)``, NUL, newlines, non-ASCII digits,
megabytes of text).  The only part of it that ever reaches a file name is the
output of :func:`safe_caller_part`, which is **guaranteed** to match::

    ^[0-9]{1,32}$|^anonymous$

i.e. 1 to 32 ASCII digits (never ``+``, never Unicode digits such as
Arabic-Indic ``٣``), or the literal word ``anonymous``.  Recording paths are
then built only from that, a validated 17-digit protocol number and the
start time, and :func:`recording_path` checks again that the final path stays
inside the recordings root.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from pathlib import Path, PurePosixPath

__all__ = [
    "ANONYMOUS",
    "CALLER_PART_RE",
    "PROTOCOL_RE",
    "recording_path",
    "recording_relpath",
    "safe_caller_part",
]

ANONYMOUS = "anonymous"

#: Every value :func:`safe_caller_part` returns matches this (use ``fullmatch``).
CALLER_PART_RE = re.compile(r"[0-9]{1,32}|anonymous")

#: A protocol number: exactly 17 ASCII digits (use ``fullmatch``).
PROTOCOL_RE = re.compile(r"[0-9]{17}")

# What carriers / Asterisk put in CALLERID(num) when the number is withheld.
_WITHHELD_WORDS = frozenset(
    {"anonymous", "restricted", "unknown", "withheld", "private", "unavailable", "unavail", "blocked"}
)
_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")  # a literal range: Unicode digits are *not* matched
_MAX_CALLER_LEN = 32


def safe_caller_part(raw: str | None, max_len: int = 32) -> str:
    """Reduce an untrusted caller ID to something safe in a file name.

    Keeps only the ASCII digits ``0``-``9`` (``+``, spaces, punctuation,
    letters and Unicode digits are dropped) and truncates to the first
    *max_len* digits.  ``None``, empty, a withheld marker (``anonymous``,
    ``restricted``, ``unknown``, ``withheld``, ``private``, ``unavailable``, any
    case) or a value with no ASCII digit at all gives ``"anonymous"``.

    The result always matches ``^[0-9]{1,32}$|^anonymous$``
    (:data:`CALLER_PART_RE`); *max_len* must be 1..32 so that stays true.
    """
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= _MAX_CALLER_LEN:
        raise ValueError(f"max_len must be an int in 1..{_MAX_CALLER_LEN}, got {max_len!r}")
    if raw is None:
        return ANONYMOUS
    if not isinstance(raw, str):
        raise TypeError(f"caller ID must be str or None, got {type(raw).__name__}")
    if raw.strip().lower() in _WITHHELD_WORDS:
        return ANONYMOUS
    digits = _NOT_ASCII_DIGIT.sub("", raw)[:max_len]
    result = digits or ANONYMOUS
    # Defence in depth: the construction above cannot fail this, but a future
    # edit might; never hand out something unchecked.
    if not CALLER_PART_RE.fullmatch(result):  # pragma: no cover
        raise AssertionError(f"unsafe caller part produced: {result!r}")
    return result


def _check_protocol(protocol: str) -> str:
    if not isinstance(protocol, str) or not PROTOCOL_RE.fullmatch(protocol):
        raise ValueError(f"protocol must be exactly 17 ASCII digits, got {protocol!r}")
    return protocol


def recording_relpath(
    protocol: str,
    caller_raw: str | None,
    started_at: datetime,
    *,
    tz: tzinfo,
) -> PurePosixPath:
    """Relative path of a call's recording::

        YYYY/MM/DD/<protocol>_<caller>_<YYYYmmdd-HHMMSS>.wav

    All date/time parts are *started_at* converted to *tz*, the deployment
    time zone (e.g. ``ZoneInfo("America/Sao_Paulo")``), so the folders match
    the local calendar day the call happened.  *started_at* must be
    timezone-aware; *protocol* must be exactly 17 ASCII digits; *caller_raw*
    goes through :func:`safe_caller_part`.  Raises :class:`ValueError`.
    """
    _check_protocol(protocol)
    if not isinstance(started_at, datetime):
        raise TypeError(f"started_at must be a datetime, got {type(started_at).__name__}")
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError("started_at must be timezone-aware")
    if not isinstance(tz, tzinfo):
        raise TypeError(f"tz must be a tzinfo (e.g. ZoneInfo), got {type(tz).__name__}")
    local = started_at.astimezone(tz)
    caller = safe_caller_part(caller_raw)
    name = f"{protocol}_{caller}_{local:%Y%m%d-%H%M%S}.wav"
    return PurePosixPath(f"{local:%Y}", f"{local:%m}", f"{local:%d}", name)


def recording_path(root: Path, relpath: PurePosixPath | str) -> Path:
    """Absolute path of *relpath* under *root*, refusing anything that escapes.

    *root* and the joined path are resolved (symlinks followed) and the result
    must lie strictly inside the resolved root, otherwise :class:`ValueError`.
    An absolute *relpath* or one with ``..`` components is rejected outright.
    Note a symlinked sub-folder pointing outside the root is rejected too:
    mount storage at the root itself instead.
    """
    rel = PurePosixPath(relpath)
    text = str(relpath)
    if not text or "\x00" in text or rel.is_absolute() or ".." in rel.parts or rel == PurePosixPath("."):
        raise ValueError(f"recording path must be a plain relative path, got {text!r}")
    base = Path(root).resolve()
    candidate = (base / Path(*rel.parts)).resolve()
    if candidate == base or not candidate.is_relative_to(base):
        raise ValueError(f"recording path {text!r} escapes the recordings root {base}")
    return candidate
