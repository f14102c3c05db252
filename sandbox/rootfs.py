"""The cached Debian sid root filesystem with Asterisk 22 in it: build once, verify, reuse.

Debian bookworm ships no Asterisk, Debian sid ships Asterisk 22.  ``provision()``
builds a minimal sid root filesystem with Asterisk once (debootstrap, about a
minute) and caches it outside the repository (``$CALLPROOF_SANDBOX_CACHE`` or
``~/.cache/callproof/sandbox``).  Any number of sandboxes, in any number of
processes, then run from that one rootfs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import SandboxError, require_root, require_tool, tail
from .namespaces import die_with_parent, remove_tree

DEBIAN_SUITE = "sid"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "CALLPROOF_SANDBOX_MIRROR"
CACHE_ENV = "CALLPROOF_SANDBOX_CACHE"
ROOTFS_NAME = "rootfs-asterisk22"
MARKER_NAME = ".callproof-sandbox.json"
ASTERISK_MAJOR = 22
ASTERISK_BIN = "/usr/sbin/asterisk"

#: Debian packages installed into the rootfs.  ``asterisk-core-sounds-es`` (not
#: only ``-es-gsm``) is what creates the ``sounds/es`` link, without which
#: ``CHANNEL(language)=es`` finds no prompt.
PACKAGES = (
    "asterisk",
    "asterisk-core-sounds-en",
    "asterisk-core-sounds-en-gsm",
    "asterisk-core-sounds-es",
    "asterisk-core-sounds-es-gsm",
    # classic AGI scripts (agi_scripts/): Asterisk runs them inside the chroot,
    # and they sign each call's evidence record with Debian's cryptography (the
    # virtual environment's build is for another Python)
    "python3",
    "python3-cryptography",
    # ... and reach PostgreSQL with Debian's psycopg 3 when [storage] url is set
    # (packaging/deb/control.in recommends it: PostgreSQL is optional)
    "python3-psycopg",
    # the Debian dependencies of the callproof package (packaging/deb/control), so that
    # tests/integration/test_deb_install.py installs the .deb into a copy of this rootfs
    # with dpkg -i and no network; keep the two lists in step
    "espeak-ng",
    "python3-aiohttp",
    "python3-aiosqlite",
    "python3-audioop-lts",
    "python3-babel",
    "python3-fpdf",
    "python3-jinja2",
    "python3-panoramisk",
    "python3-pydub",
    "python3-six",
    "python3-stdnum",
    "python3-tqdm",
    "python3-venv",
)

#: Packages debootstrap must be named explicitly because it does not resolve
#: virtual packages: python3-cryptography depends on
#: ``python3-cffi-backend-api-min``, which only python3-cffi-backend provides.
#: They follow from ``PACKAGES``, so the marker does not list them.
VIRTUAL_DEPENDENCY_PROVIDERS = ("python3-cffi-backend",)


def default_cache_dir() -> Path:
    """Where the rootfs is cached: ``$CALLPROOF_SANDBOX_CACHE`` or ``~/.cache/callproof/sandbox``.

    Outside the repository on purpose: it is ~400 MB of Debian, shared by every
    checkout and kept across test runs.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "callproof" / "sandbox"


def provision(cache_dir: Path | None = None, log: Callable[[str], Any] = print) -> Path:
    """Return the path of a ready Asterisk 22 rootfs, building it on first use.

    Safe to call again and from several processes at once: builds are
    serialised by a file lock, happen in a temporary directory next to the
    target and are renamed into place only once complete and verified, and the
    rootfs counts as built only when its marker file lists the current
    ``PACKAGES`` (a changed list triggers a rebuild).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache.expanduser().resolve()
    rootfs = cache / ROOTFS_NAME
    require_root("provisioning the Asterisk sandbox")
    if marker_is_current(rootfs):
        verify_asterisk(rootfs)
        return rootfs
    require_tool("debootstrap", "install it with: apt-get install debootstrap")
    require_tool("unshare", "install it with: apt-get install util-linux")
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache / ".provision.lock", log) as lock_fd:
        if marker_is_current(rootfs):  # built by another process while we waited
            verify_asterisk(rootfs)
            return rootfs
        _remove_leftovers(cache, log)
        _build_rootfs(cache, rootfs, log, lock_fd)
    return rootfs



def marker_is_current(rootfs: Path) -> bool:
    """True when ``rootfs`` was completely built with the current package list."""
    try:
        marker = json.loads((rootfs / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("suite") == DEBIAN_SUITE and marker.get("packages") == sorted(PACKAGES)


@contextlib.contextmanager
def _exclusive_lock(path: Path, log: Callable[[str], Any]) -> Iterator[int]:
    """flock ``path``; yields the locked fd (children given it keep the lock while they live)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"sandbox: waiting for another process provisioning in {path.parent}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        # No explicit LOCK_UN: closing our descriptor releases the lock only
        # once no (orphaned) child holds a copy of it.
        yield handle.fileno()


def _remove_leftovers(cache: Path, log: Callable[[str], Any]) -> None:
    """Remove half-built trees of interrupted builds and an outdated rootfs (lock held)."""
    for path in sorted(cache.glob(ROOTFS_NAME + ".*")):
        if path.is_dir():
            log(f"sandbox: removing leftover {path}")
            remove_tree(path)
    rootfs = cache / ROOTFS_NAME
    if rootfs.exists():
        log(f"sandbox: {rootfs} is incomplete or was built with other packages; rebuilding")
        remove_tree(rootfs)


def _build_rootfs(cache: Path, rootfs: Path, log: Callable[[str], Any], lock_fd: int) -> None:
    build = Path(tempfile.mkdtemp(prefix=ROOTFS_NAME + ".building-", dir=cache))
    try:
        _debootstrap(build, cache / "debootstrap.log", log, lock_fd)
        _trim_rootfs(build)
        version = verify_asterisk(build)
        marker = {
            "suite": DEBIAN_SUITE,
            "packages": sorted(PACKAGES),
            "asterisk_version": version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (build / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        build.chmod(0o755)  # mkdtemp made it 0700; the chroot's / must be searchable
        build.rename(rootfs)
        log(f"sandbox: Asterisk {version} ready in {rootfs}")
    except BaseException:
        remove_tree(build)
        raise


def _debootstrap(target: Path, log_file: Path, log: Callable[[str], Any], lock_fd: int) -> None:
    """Run debootstrap in its own mount namespace, so its /proc and /sys mounts die with it.

    It inherits the provisioning lock: should this process be killed, the next
    ``provision()`` waits until debootstrap and its children are gone before
    it removes their half-built tree.  It is also told to stop when this
    process dies (see ``die_with_parent``).
    """
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    command = [
        *die_with_parent(),
        "unshare", "--mount", "--propagation", "private", "--",
        "debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES + VIRTUAL_DEPENDENCY_PROVIDERS),
        DEBIAN_SUITE, str(target), mirror,
    ]
    log(f"sandbox: debootstrap {DEBIAN_SUITE} with Asterisk into {target} (about a minute)")
    started = time.monotonic()
    with open(log_file, "wb") as out:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, pass_fds=(lock_fd,)
        )
    if result.returncode != 0:
        raise SandboxError(
            f"debootstrap failed (exit {result.returncode}, mirror {mirror}); "
            f"last lines of {log_file}:\n{tail(log_file)}"
        )
    log(f"sandbox: debootstrap done in {time.monotonic() - started:.0f} s")


def _trim_rootfs(rootfs: Path) -> None:
    """Drop the downloaded .debs and apt lists: ~160 MB nobody needs at run time."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages"):
        for path in rootfs.glob(pattern):
            path.unlink()


def verify_asterisk(rootfs: Path) -> str:
    """Return the version ``asterisk -V`` reports inside ``rootfs``; fail unless it is 22.x."""
    try:
        result = subprocess.run(
            ["chroot", str(rootfs), ASTERISK_BIN, "-V"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"cannot run {ASTERISK_BIN} -V in {rootfs}: {exc}") from exc
    output = (result.stdout + result.stderr).strip()
    match = re.match(r"Asterisk (\S+)", output)
    if result.returncode != 0 or not match:
        raise SandboxError(f"'{ASTERISK_BIN} -V' failed in {rootfs}: {output or result.returncode}")
    version = match.group(1)
    if not version.startswith(f"{ASTERISK_MAJOR}."):
        raise SandboxError(
            f"the sandbox needs Asterisk {ASTERISK_MAJOR}.x but {rootfs} has {version}; "
            f"remove {rootfs} (Debian {DEBIAN_SUITE} may have moved on) and adapt the module"
        )
    return version

