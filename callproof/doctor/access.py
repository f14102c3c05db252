"""What a user may do to a path, worked out from the modes and owners of the path and of
every folder above it (as the kernel would, without ACLs), so that ``doctor`` run as root
can say what the service user will be able to do."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from callproof.service_user import Account, account, ownership

R, W, X = 4, 2, 1


@dataclass(frozen=True)
class Who:
    name: str
    uid: int
    gids: frozenset[int]


def who(name: str) -> Who:
    """The service user (ServiceUserError when it does not exist)."""
    acct: Account = account(name)
    return Who(acct.name, acct.uid, frozenset(acct.groups) | {acct.gid})


def _allowed(st: os.stat_result, user: Who, want: int) -> bool:
    if user.uid == 0:
        return not (want & X) or stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
    mode = st.st_mode
    if st.st_uid == user.uid:
        bits = (mode >> 6) & 7
    elif st.st_gid in user.gids:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def denied(path: Path, user: Who, want: int) -> str | None:
    """None when ``user`` may open ``path`` for ``want`` (R, W, X bits); else why not
    (the first folder it cannot enter, or the path's own mode)."""
    path = Path(os.path.abspath(path))
    for folder in reversed(path.parents):
        try:
            st = folder.stat()
        except OSError as exc:
            return f"{folder}: {exc.strerror}"
        if not _allowed(st, user, X):
            return f"{user.name} cannot enter {folder} ({ownership(st)})"
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not _allowed(st, user, want):
        need = "".join(c for c, bit in (("r", R), ("w", W), ("x", X)) if want & bit)
        return f"{user.name} may not {need} {path} ({ownership(st)})"
    return None
