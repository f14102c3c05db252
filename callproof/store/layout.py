"""A recording's name in the shared store: ``YYYY/MM/DD/<protocol>-<id>.<ext>[.age]``.

Built only from what storage wrote and checked (the day of ``started_at``, a 17-digit
protocol, the row id) and a file extension reduced to letters and digits: never from a
caller-controlled string (a recording's local name holds the caller's digits).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_PROTOCOL = re.compile(r"[0-9]{17}")
_EXT = re.compile(r"[a-z0-9]{1,8}")
AGE_SUFFIX = ".age"


def store_name(row: dict) -> str:
    """The store-relative path of ``row``'s file (the age file when it is encrypted)."""
    day = _DAY.match(str(row.get("started_at") or ""))
    folder = "/".join(day.groups()) if day else "undated"
    protocol = row.get("protocol") or ""
    stem = f"{protocol}-{int(row['id'])}" if _PROTOCOL.fullmatch(protocol) else f"recording-{int(row['id'])}"
    ext = PurePosixPath(str(row.get("path") or "")).suffix.lstrip(".").lower()
    ext = ext if _EXT.fullmatch(ext) else "wav"
    name = f"{stem}.{ext}" + (AGE_SUFFIX if row.get("encryption") == "encrypted" else "")
    return f"{folder}/{name}"
