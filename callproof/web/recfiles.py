"""Which file on disk a web request may read.

Nothing from the URL becomes a path: the route only accepts a 17-digit
protocol, the path comes from the ``recordings`` (or ``request_exports``)
table, and it must resolve -- symlinks followed -- to a regular file inside
the configured root.  A row pointing elsewhere (an edited database, a
symlink planted in the tree) is refused and logged, never served.
"""

from __future__ import annotations

import logging
import os
import re
import stat

log = logging.getLogger(__name__)

PROTOCOL = re.compile(r"[0-9]{17}")


class UnsafeFile(Exception):
    """The stored path does not resolve to a regular file under the allowed root."""


def is_protocol(text: str) -> bool:
    return isinstance(text, str) and PROTOCOL.fullmatch(text) is not None


def file_inside(root: str | os.PathLike[str], stored_path: str) -> str:
    """The real path of ``stored_path`` if it is a regular file inside ``root``;
    UnsafeFile (or FileNotFoundError) otherwise."""
    if not isinstance(stored_path, str) or not stored_path or "\x00" in stored_path \
            or not os.path.isabs(stored_path):
        raise UnsafeFile(f"stored path {stored_path!r} is not an absolute path")
    real_root = os.path.realpath(root)
    real = os.path.realpath(stored_path)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise UnsafeFile(f"{stored_path!r} resolves to {real!r}, outside {real_root!r}")
    st = os.stat(real)  # FileNotFoundError when it is gone
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{real!r} is not a regular file")
    return real
