"""Writing the installed files: atomically, with the mode and owner they must have."""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, text: str, *, mode: int, user_id: int | None = None,
               group_id: int | None = None) -> None:
    """Replace ``path`` by ``text`` in one rename; the mode and owner are set before it
    appears, so a secret is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.callproof-install")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        chown(tmp, user_id, group_id)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def chown(path: Path, user_id: int | None, group_id: int | None) -> None:
    """chown when an owner is given and differs (an unprivileged test run gives none)."""
    if user_id is None and group_id is None:
        return
    stat = path.stat()
    uid = stat.st_uid if user_id is None else user_id
    gid = stat.st_gid if group_id is None else group_id
    if (uid, gid) != (stat.st_uid, stat.st_gid):
        os.chown(path, uid, gid)


def make_dir(path: Path, *, mode: int, user_id: int | None = None, group_id: int | None = None) -> None:
    """``path`` exists as a folder with this mode and owner (made, or corrected)."""
    path.mkdir(parents=True, exist_ok=True)
    chown(path, user_id, group_id)
    os.chmod(path, mode)
