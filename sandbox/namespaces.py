"""Mount-namespace and mount-table helpers for the chroot sandbox.

Why a mount namespace
---------------------
Asterisk is started as ``unshare --mount --propagation private -- sh -c
'<mount ...>; exec chroot ... asterisk'``.  All mounts live in a namespace
owned by the Asterisk process, so the kernel removes them when the last
process in it exits -- after ``stop()``, after a crash, after ``kill -9`` of
Asterisk or of the Python process that started it.  The host mount table
never sees them, so a killed earlier run cannot leave a stale mount behind and
two sandboxes sharing one rootfs cannot trip over each other's mounts (the
tests run one sandbox per pytest-xdist worker, all on one rootfs).
``Sandbox.start()`` still unmounts anything a *host-namespace* tool (a manual
``mount --bind`` while debugging, an older version of this package) left under
the rootfs, and ``stop()`` ends any stray process left in the namespace, so
that the namespace -- and with it every mount -- is really gone (only
processes that are in that namespace *and* chrooted into the rootfs, and never
while the namespace id could still be the caller's own).  When started
from the main thread the child also gets ``PR_SET_PDEATHSIG`` so it does not
outlive a killed test run (``setpriv --pdeathsig``; not from other threads:
the signal fires when the *thread* that started it exits).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from .errors import SandboxError


def remove_tree(path: Path) -> None:
    """rmtree, but never through a mount point (that would delete the host's files)."""
    for mount_point in sorted(host_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], capture_output=True)
    remaining = host_mounts_under(path)
    if remaining:
        raise SandboxError(f"refusing to delete {path}: still mounted: {', '.join(remaining)}")
    shutil.rmtree(path, ignore_errors=True)


def host_mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this process's mount namespace."""
    return mounts_under(Path("/proc/self/mountinfo"), path)


def mounts_under(mountinfo: Path, path: Path) -> list[str]:
    prefix = str(path).rstrip("/")
    found: list[str] = []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        # mountinfo escapes space, tab, newline and backslash as octal \ooo
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found



def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def die_with_parent() -> list[str]:
    """Command prefix that SIGTERMs the child when the thread that spawned it dies.

    ``setpriv --pdeathsig`` (util-linux) instead of a ``preexec_fn``: no Python
    code between fork and exec, which is not safe in threaded processes.  Only
    from the main thread (the signal fires when the spawning *thread* exits);
    the setting survives the exec chain down to Asterisk, which never setuids.
    """
    if not in_main_thread() or shutil.which("setpriv") is None:
        return []
    return ["setpriv", "--pdeathsig", "TERM", "--"]


def private_namespace_of(pid: int) -> str | None:
    """The mount namespace of ``pid`` once it has left ours (None before ``unshare`` ran)."""
    namespace = namespace_of(pid)
    return namespace if namespace is not None and namespace != namespace_of(os.getpid()) else None


def namespace_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]

