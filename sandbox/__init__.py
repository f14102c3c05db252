"""A real Asterisk 22 in a Debian sid chroot, for the demo and the integration tests.

Debian bookworm ships no Asterisk, Debian sid ships Asterisk 22.  This module

* ``provision()`` builds a minimal sid root filesystem with Asterisk once and
  caches it outside the repository (``$CALLPROOF_SANDBOX_CACHE`` or
  ``~/.cache/callproof/sandbox``);
* ``Sandbox`` runs one throw-away Asterisk from that rootfs, with every piece of
  per-run state (config, spool, logs, astdb, control socket) under a host
  ``run_dir``, ARI and AMI on free loopback ports and random credentials;
* ``originate_call()`` drives a test/demo call into a dialplan context the way a
  customer's call would arrive, optionally recording what the customer hears.

Everything is stdlib and synchronous, and needs root (``chroot``, ``mount``).

Filesystem layout seen by Asterisk
----------------------------------
Paths are identical inside and outside the chroot: ``run_dir`` and every
``bind_paths`` entry are bind-mounted into the rootfs at the same absolute path,
so a recording Asterisk writes at ``/x/y.wav`` is read by the host at
``/x/y.wav``.  The chroot also gets its own ``/proc`` and the host's
``/dev/{null,zero,full,random,urandom}``.  Its ``/tmp`` is the rootfs's
(visible to the host at ``<rootfs>/tmp``).  Mount points are created in the
rootfs as empty directories and left there.

Why a mount namespace
---------------------
Asterisk is started as ``unshare --mount --propagation private -- sh -c
'<mount ...>; exec chroot ... asterisk'``.  All mounts live in a namespace
owned by the Asterisk process, so the kernel removes them when the last
process in it exits -- after ``stop()``, after a crash, after ``kill -9`` of
Asterisk or of the Python process that started it.  The host mount table
never sees them, so a killed earlier run cannot leave a stale mount behind and
two sandboxes sharing one rootfs cannot trip over each other's mounts.
``start()`` still unmounts anything a *host-namespace* tool (a manual
``mount --bind`` while debugging, an older version of this module) left under
the rootfs, and ``stop()`` ends any stray process left in the namespace, so
that the namespace -- and with it every mount -- is really gone (only
processes that are in that namespace *and* chrooted into the rootfs, and never
while the namespace id could still be the caller's own).  When started
from the main thread the child also gets ``PR_SET_PDEATHSIG`` so it does not
outlive a killed test run (``setpriv --pdeathsig``; not from other threads:
the signal fires when the *thread* that started it exits).

Behaviour verified against Asterisk 22.10.1 (Debian sid)
-------------------------------------------------------
* Start-up with ``autoload=yes`` takes about half a second.  ``NOLOAD_PATTERNS``
  skips what is not needed, mostly modules that refuse to load without their
  own config (PJSIP, IAX2, CDR/CEL backends, realtime drivers, voicemail,
  queues, calendar, XMPP, ...).  Not skippable: ``res_ari`` needs
  ``res_websocket_client``, ``res_rtp_asterisk`` (ARI external media) needs
  ``res_pjproject``, ``func_aes`` needs ``res_crypto``.
* With ``-f`` and without ``-c`` the console log channel goes to stdout, i.e.
  ``run_dir/asterisk.console.log``; ``core stop now`` or SIGTERM end Asterisk in
  under a second.
* ``sounds/es`` exists only with ``asterisk-core-sounds-es`` (which sets the
  alternative); ``-es-gsm`` alone installs the files without the link.
* Originating ``Local/s@X`` with ``context=callproof-sandbox-caller`` gives
  ``;1`` (returned by ARI; runs ``callproof-sandbox-caller``, the customer)
  and ``;2`` (runs ``s@X``, what a real inbound call would run).  Plain
  channel variables given at originate time are set on ``;1`` and copied to
  ``;2`` by the Local driver; function-style ones (``CALLERID(num)``) act on
  ``;1`` only.
* Caller ID: ``;2``'s caller ID is ``;1``'s *connected line*, which ARI fills
  from the ``callerId`` query parameter parsed as ``"name" <number>``
  (``ast_callerid_parse``).  So ``callerId=abc`` gives name ``abc`` and an
  empty number, ``"x" <123>`` gives name ``x`` / number ``123``, ``+55 11
  9999-0000`` becomes ``+551199990000``, backslashes vanish, ``<>`` gives
  nothing and 500 digits are cut to ~256.  ``CALLERID(num)`` as an originate
  variable sets ``;1`` only: ``;2`` sees an empty number.  Hence
  ``originate_call`` enters through ``[callproof-sandbox-entry]``, which
  ``Set()``s ``CALLERID(num)`` from a copied channel variable: the entry
  context then sees the caller ID byte for byte (quotes, ``;``, ``,``,
  ``$(...)``, ``${...}``, ``$[...]``, ``../``, newlines, unicode, 500 chars,
  empty) -- substituted values are not evaluated again.
* ARI events: an app connected with ``subscribeAll=true`` receives
  ``PlaybackStarted``/``PlaybackFinished`` of playbacks another app started on
  a channel it owns, in order, plus ``ChannelUserevent``, ``ChannelVarset``,
  ``ChannelDialplan``, ``ChannelCallerId``, ``Dial``, ``ChannelHangupRequest``,
  ``ChannelDestroyed`` of every channel; not ``StasisStart``/``StasisEnd``,
  which stay with the owning app.  Without ``subscribeAll`` it receives
  nothing of those channels.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import fnmatch
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from callproof.dialplan import directory as dialplan_directory

__all__ = [
    "PACKAGES",
    "Sandbox",
    "SandboxError",
    "ari_request",
    "default_cache_dir",
    "originate_call",
    "provision",
    "wait_for_hangup",
]

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
    # classic AGI scripts (agi_scripts/): Asterisk runs them inside the chroot
    "python3",
)

#: Modules that are not loaded (``noload``) although ``autoload=yes``: not
#: needed here, and most refuse to load, or complain, without their own config.
NOLOAD_PATTERNS = (
    # other channel technologies and their stacks
    "chan_pjsip.so", "res_pjsip*.so", "func_pjsip_*.so",
    "chan_iax2.so", "chan_dahdi.so", "chan_mobile.so", "chan_unistim.so",
    "chan_motif.so", "chan_console.so", "chan_alsa.so", "chan_oss.so",
    "chan_websocket.so", "chan_audiosocket.so", "app_audiosocket.so", "res_audiosocket.so",
    "res_xmpp.so", "res_hep*.so", "res_stir_shaken.so", "res_geolocation.so",
    "res_stun_monitor.so", "res_resolver_unbound.so", "res_srtp.so",
    # CDR / CEL backends and realtime / database drivers
    "cdr_*.so", "cel_*.so", "res_cdrel_custom.so", "res_config_*.so",
    "res_odbc*.so", "func_odbc.so", "res_realtime.so", "pbx_realtime.so",
    "res_pgsql.so", "res_curl.so", "func_curl.so", "res_config_curl.so",
    # features the sandbox does not use
    "app_voicemail*.so", "app_minivm.so", "app_festival.so",
    "app_alarmreceiver.so", "app_followme.so", "app_amd.so", "app_queue.so",
    "app_confbridge.so", "app_page.so", "app_agent_pool.so", "res_parking.so",
    "app_adsiprog.so", "app_getcpeid.so", "res_adsi.so", "app_jack.so",
    "res_calendar*.so", "res_phoneprov.so", "res_snmp.so", "res_statsd.so",
    "res_prometheus.so", "res_aeap.so", "res_speech_aeap.so",
    "res_http_media_cache.so", "res_fax*.so",
    "res_smdi.so", "res_corosync.so", "res_clialiases.so",
    "pbx_dundi.so", "pbx_lua.so", "pbx_ael.so", "res_ael_share.so",
)

#: Stock config files copied from the rootfs's /etc/asterisk (tone zones are
#: needed for Ringing/Busy/Congestion and Playtones).
STOCK_CONFIGS = ("indications.conf",)

#: Config files that only need to exist, to keep the console log readable.
QUIET_CONFIGS = {
    "cdr.conf": "[general]\nenable = no\n",
    "cel.conf": "[general]\nenable = no\n",
    "features.conf": "",
    "acl.conf": "",
    "udptl.conf": "",
    "ccss.conf": "",
    "musiconhold.conf": "",
    "stasis.conf": "",
    "pjproject.conf": "",  # res_rtp_asterisk (ARI external media) needs res_pjproject
    "websocket_client.conf": "",  # res_ari needs res_websocket_client
}

SANDBOX_DIALPLAN = """\
[callproof-sandbox-caller]
; the "customer" half of a Local channel: records what the caller hears until hang-up
exten => s,1,Answer()
 same => n,Set(SANDBOX_MAX_SECONDS=${IF($[${LEN(${SANDBOX_MAX_SECONDS})} = 0]?60:${SANDBOX_MAX_SECONDS})})
 same => n,GotoIf($[${LEN(${SANDBOX_RECORD})} = 0]?listen)
 ; k: keep the file on hang-up, q: no beep, x: DTMF does not end the recording
 same => n,Record(${SANDBOX_RECORD},0,${SANDBOX_MAX_SECONDS},kqx)
 same => n,Hangup()
 same => n(listen),Wait(${SANDBOX_MAX_SECONDS})
 same => n,Hangup()

[callproof-sandbox-entry]
; the "network" in front of the entry context: sets the caller ID verbatim
; (originate's callerId is parsed as "name" <number>), then enters it
exten => s,1,Set(CALLERID(num)=${SANDBOX_CALLER_NUM})
 same => n,Set(CALLERID(name)=${SANDBOX_CALLER_NAME})
 same => n,Goto(${SANDBOX_ENTRY_CONTEXT},${SANDBOX_ENTRY_EXTEN},1)

[callproof-sandbox-playback]
; a known audio source for self-tests and demos: plays ${SANDBOX_PLAYBACK} (default hello-world)
exten => s,1,Answer()
 same => n,Playback(${IF($[${LEN(${SANDBOX_PLAYBACK})} = 0]?hello-world:${SANDBOX_PLAYBACK})})
 same => n,Hangup()

[callproof-sandbox-agents]
; the agents' queue: the hand-off target; tells observers what arrived, then ends
exten => s,1,Answer()
 same => n,UserEvent(CallproofHandoff,Protocol: ${CALLPROOF_PROTOCOL},Recording: ${CALLPROOF_RECORDING},Status: ${CALLPROOF_STATUS},Reason: ${CALLPROOF_REASON},Channel: ${CHANNEL},Uniqueid: ${UNIQUEID})
 ; the "agent" talks: a tone, so the call recording has real audio in it
 same => n,Playtones(440/300,0/200)
 same => n,Wait(${IF($[${LEN(${SANDBOX_AGENT_SECONDS})} = 0]?1:${SANDBOX_AGENT_SECONDS})})
 same => n,StopPlaytones()
 same => n,Hangup()
exten => _X.,1,Goto(s,1)
exten => i,1,Goto(s,1)
"""

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


class SandboxError(RuntimeError):
    """The sandbox could not be provisioned, started or used."""


# --------------------------------------------------------------------------
# provisioning
# --------------------------------------------------------------------------


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
    _require_root("provisioning the Asterisk sandbox")
    if _marker_is_current(rootfs):
        _verify_asterisk(rootfs)
        return rootfs
    _require_tool("debootstrap", "install it with: apt-get install debootstrap")
    _require_tool("unshare", "install it with: apt-get install util-linux")
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache / ".provision.lock", log) as lock_fd:
        if _marker_is_current(rootfs):  # built by another process while we waited
            _verify_asterisk(rootfs)
            return rootfs
        _remove_leftovers(cache, log)
        _build_rootfs(cache, rootfs, log, lock_fd)
    return rootfs


def _require_root(purpose: str) -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            f"{purpose} needs root (debootstrap, chroot and mount); run as root, "
            "e.g. in the CI container or with sudo"
        )


def _require_tool(name: str, hint: str) -> None:
    if shutil.which(name) is None:
        raise SandboxError(f"'{name}' is not installed; {hint}")


def _marker_is_current(rootfs: Path) -> bool:
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
            _remove_tree(path)
    rootfs = cache / ROOTFS_NAME
    if rootfs.exists():
        log(f"sandbox: {rootfs} is incomplete or was built with other packages; rebuilding")
        _remove_tree(rootfs)


def _build_rootfs(cache: Path, rootfs: Path, log: Callable[[str], Any], lock_fd: int) -> None:
    build = Path(tempfile.mkdtemp(prefix=ROOTFS_NAME + ".building-", dir=cache))
    try:
        _debootstrap(build, cache / "debootstrap.log", log, lock_fd)
        _trim_rootfs(build)
        version = _verify_asterisk(build)
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
        _remove_tree(build)
        raise


def _debootstrap(target: Path, log_file: Path, log: Callable[[str], Any], lock_fd: int) -> None:
    """Run debootstrap in its own mount namespace, so its /proc and /sys mounts die with it.

    It inherits the provisioning lock: should this process be killed, the next
    ``provision()`` waits until debootstrap and its children are gone before
    it removes their half-built tree.  It is also told to stop when this
    process dies (see ``_die_with_parent``).
    """
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    command = [
        *_die_with_parent(),
        "unshare", "--mount", "--propagation", "private", "--",
        "debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
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
            f"last lines of {log_file}:\n{_tail(log_file)}"
        )
    log(f"sandbox: debootstrap done in {time.monotonic() - started:.0f} s")


def _trim_rootfs(rootfs: Path) -> None:
    """Drop the downloaded .debs and apt lists: ~160 MB nobody needs at run time."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages"):
        for path in rootfs.glob(pattern):
            path.unlink()


def _verify_asterisk(rootfs: Path) -> str:
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


def _remove_tree(path: Path) -> None:
    """rmtree, but never through a mount point (that would delete the host's files)."""
    for mount_point in sorted(_host_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], capture_output=True)
    remaining = _host_mounts_under(path)
    if remaining:
        raise SandboxError(f"refusing to delete {path}: still mounted: {', '.join(remaining)}")
    shutil.rmtree(path, ignore_errors=True)


def _host_mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this process's mount namespace."""
    return _mounts_under(Path("/proc/self/mountinfo"), path)


def _mounts_under(mountinfo: Path, path: Path) -> list[str]:
    prefix = str(path).rstrip("/")
    found = []
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


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


# --------------------------------------------------------------------------
# per-run configuration
# --------------------------------------------------------------------------


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (Asterisk binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _modules_dir(rootfs: Path) -> str:
    """The module directory inside the chroot (multiarch path, e.g. /usr/lib/x86_64-linux-gnu/...)."""
    candidates = sorted(rootfs.glob("usr/lib/*/asterisk/modules")) or sorted(
        rootfs.glob("usr/lib/asterisk/modules")
    )
    if not candidates:
        raise SandboxError(f"no Asterisk module directory in {rootfs}; re-run provision()")
    return "/" + str(candidates[0].relative_to(rootfs))


def _asterisk_conf(run_dir: Path, modules_dir: str) -> str:
    d = {
        "astcachedir": run_dir / "cache",
        "astetcdir": run_dir / "etc",
        "astmoddir": modules_dir,
        "astvarlibdir": run_dir / "lib",
        "astdbdir": run_dir / "lib",
        "astkeydir": run_dir / "lib",
        "astdatadir": "/usr/share/asterisk",  # core sounds, ARI docs, XML docs
        "astagidir": run_dir / "agi-bin",  # per run: tests install the classic AGI script here
        "astspooldir": run_dir / "spool",
        "astrundir": run_dir / "run",
        "astlogdir": run_dir / "log",
        "astsbindir": "/usr/sbin",
    }
    directories = "".join(f"{key} => {value}\n" for key, value in d.items())
    return (
        "[directories]\n" + directories + "\n[options]\n"
        "verbose = 3\n"
        "defaultlanguage = en\n"
        "documentation_language = en_US\n"
        "hideconnect = yes\n"
    )


def _modules_conf(rootfs: Path, modules_dir: str) -> str:
    available = sorted(p.name for p in (rootfs / modules_dir.lstrip("/")).glob("*.so"))
    skipped = [m for m in available if any(fnmatch.fnmatch(m, p) for p in NOLOAD_PATTERNS)]
    return "[modules]\nautoload = yes\n" + "".join(f"noload => {m}\n" for m in skipped)


def _logger_conf() -> str:
    # With -f and without -c, the "console" channel goes to Asterisk's stdout,
    # i.e. run_dir/asterisk.console.log.
    return (
        "[general]\ndateformat = %F %T.%3q\n\n"
        "[logfiles]\nconsole => notice,warning,error,verbose,dtmf\n"
    )


def _http_conf(port: int) -> str:
    return (
        "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n"
        f"bindport = {port}\nenablestatic = no\nservername = callproof-sandbox\n"
    )


def _ari_conf(username: str, password: str) -> str:
    return (
        "[general]\nenabled = yes\npretty = no\n\n"
        f"[{username}]\ntype = user\nread_only = no\n"
        f"password = {password}\npassword_format = plain\n"
    )


_AMI_CLASSES = "system,call,log,verbose,command,agent,user,config,dtmf,reporting,cdr,dialplan,originate"


def _manager_conf(port: int, username: str, secret: str) -> str:
    return (
        "[general]\nenabled = yes\n"
        f"port = {port}\nbindaddr = 127.0.0.1\ndisplayconnects = no\n\n"
        f"[{username}]\nsecret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
        f"read = {_AMI_CLASSES}\nwrite = {_AMI_CLASSES}\nwritetimeout = 5000\n"
    )


def _extensions_conf(included: Iterable[str], extra_dialplan: str) -> str:
    includes = "".join(f'#include "{name}"\n' for name in included)
    return (
        # no [globals] here: pbx_config reads only the first one, which may be the project's
        "[general]\nstatic = yes\nwriteprotect = yes\nclearglobalvars = no\n\n"
        + SANDBOX_DIALPLAN
        + "\n; the project's dialplan, included the way an admin would\n"
        + includes
        + "\n"
        + extra_dialplan
        + ("\n" if extra_dialplan and not extra_dialplan.endswith("\n") else "")
    )


def _write_private(path: Path, text: str) -> None:
    """Write a config file readable by nobody but root and its group (it may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o640)


# --------------------------------------------------------------------------
# the running sandbox
# --------------------------------------------------------------------------

# Runs as root in the new (private) mount namespace, then becomes Asterisk.
# Arguments: rootfs, asterisk.conf, then the host paths to bind at the same path.
_START_SCRIPT = r"""
set -eu
root=$1; conf=$2; shift 2
mount -t proc proc "$root/proc"
for dev in null zero full random urandom; do
    [ -e "$root/dev/$dev" ] || touch "$root/dev/$dev"
    mount --bind "/dev/$dev" "$root/dev/$dev"
done
for path in "$@"; do
    mkdir -p "$root$path"
    mount --bind "$path" "$root$path"
done
umask 027
exec chroot "$root" /usr/sbin/asterisk -C "$conf" -f -n
"""

class Sandbox:
    """One running Asterisk 22 for one run; a context manager (start on enter, stop on exit).

    ``run_dir`` receives everything of the run: ``etc/`` (generated config),
    ``spool/``, ``lib/``, ``log/``, ``run/`` (control socket) and
    ``asterisk.console.log``.  ``dialplan_dir``'s ``*.conf`` files are copied
    into ``etc/callproof/`` and ``#include``d from ``extensions.conf`` after the
    sandbox's own contexts; ``extra_dialplan`` is appended after them.  Use one
    ``run_dir`` per sandbox: ``start()`` kills an Asterisk still running from it.  ``bind_paths`` are further host directories made
    visible inside the chroot at the same path (for prompts, recordings, ...).
    """

    ari_username = "callproof-ari"
    ami_username = "callproof-ami"
    ami_host = "127.0.0.1"

    def __init__(
        self,
        rootfs: Path,
        run_dir: Path,
        dialplan_dir: Path | None = None,
        extra_dialplan: str = "",
        bind_paths: Iterable[Path] = (),
    ) -> None:
        self.rootfs = Path(rootfs).resolve()
        self.run_dir = Path(run_dir).resolve()
        self.dialplan_dir = Path(dialplan_dir).resolve() if dialplan_dir is not None else None
        self.extra_dialplan = extra_dialplan
        self.bind_paths = [Path(p).resolve() for p in bind_paths]
        self.ari_password = secrets.token_urlsafe(18)
        self.ami_password = secrets.token_urlsafe(18)
        self.http_port: int | None = None
        self.ami_port: int | None = None
        self.version: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._namespace: str | None = None
        self._check_paths()

    # -- attributes ------------------------------------------------------

    @property
    def ari_url(self) -> str:
        """Base URL of Asterisk's HTTP server, e.g. ``http://127.0.0.1:PORT/`` (ARI under ``ari/``)."""
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def etc_dir(self) -> Path:
        return self.run_dir / "etc"

    @property
    def asterisk_conf(self) -> Path:
        return self.etc_dir / "asterisk.conf"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "asterisk.console.log"

    @property
    def pid(self) -> int | None:
        """PID of the Asterisk process (it is the process ``start()`` spawned, after exec)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def mounts(self) -> list[str]:
        """Mount points as Asterisk sees them inside the chroot ([] when not running).

        They exist only in the sandbox's mount namespace, never in the host's.
        """
        if not self.running:
            return []
        return _mounts_under(Path(f"/proc/{self.pid}/mountinfo"), Path("/"))

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> Sandbox:
        """Write the run's config, start Asterisk and wait until ARI and AMI both answer."""
        if self.running:
            return self
        _require_root("starting the Asterisk sandbox")
        _require_tool("unshare", "install it with: apt-get install util-linux")
        _require_tool("nsenter", "install it with: apt-get install util-linux")
        if not _marker_is_current(self.rootfs):
            raise SandboxError(f"{self.rootfs} is not a provisioned sandbox rootfs; call provision() first")
        self._clean_stale_host_mounts()
        self._kill_stale_asterisk()
        self._write_config()
        self._spawn()
        try:
            self._wait_until_ready(time.monotonic() + timeout)
            self.version = self._read_version()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop Asterisk (``core stop now``, then SIGTERM, then SIGKILL); idempotent.

        The mounts go away with the mount namespace, i.e. once no process is
        left in it, which this method makes sure of.
        """
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                with contextlib.suppress(SandboxError, OSError, subprocess.SubprocessError):
                    self._asterisk_rx("core stop now", timeout=5)
                _wait_or_kill(process, timeout)
        finally:
            self._end_namespace()
            self._process = None
            self._namespace = None

    def cli(self, command: str, timeout: float = 30) -> str:
        """Run an Asterisk CLI command (``asterisk -rx``) and return its output."""
        if not self.running:
            raise SandboxError("the sandbox is not running")
        return self._asterisk_rx(command, timeout=timeout)

    # -- internals -------------------------------------------------------

    def _check_paths(self) -> None:
        socket_path = self.run_dir / "run" / "asterisk.ctl"
        if len(str(socket_path).encode()) > _MAX_SOCKET_PATH:
            raise SandboxError(f"run_dir {self.run_dir} is too long for Asterisk's control socket path")
        for path in [self.run_dir, *self.bind_paths]:
            if path == Path("/") or path == self.rootfs or self.rootfs in path.parents:
                raise SandboxError(f"cannot bind {path} into the sandbox rootfs {self.rootfs}")
            # Mount points are created as <rootfs><path>: a symlink on the way
            # (e.g. /var/run -> /run, absolute) would resolve on the host.
            probe = self.rootfs
            for part in path.parts[1:]:
                probe = probe / part
                if probe.is_symlink():
                    raise SandboxError(
                        f"cannot bind {path}: {probe} is a symlink inside the rootfs; use another directory"
                    )

    def _clean_stale_host_mounts(self) -> None:
        """Unmount what host-namespace tools left under the rootfs (never ours: see module doc)."""
        for point in sorted(_host_mounts_under(self.rootfs), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True)
        left = _host_mounts_under(self.rootfs)
        if left:
            raise SandboxError(f"stale mounts under {self.rootfs} could not be removed: {', '.join(left)}")

    def _kill_stale_asterisk(self) -> None:
        """End an Asterisk still running from an earlier, killed run with this run_dir."""
        pid_file = self.run_dir / "run" / "asterisk.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.asterisk_conf).encode() not in cmdline:
            return  # the PID was reused by something else
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _write_config(self) -> None:
        for sub in ("etc", "spool", "lib", "lib/keys", "log", "run", "cache", "agi-bin"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.run_dir / "run" / "asterisk.pid").unlink(missing_ok=True)
        self.etc_dir.chmod(0o750)
        self.http_port = _free_port()
        self.ami_port = _free_port()
        while self.ami_port == self.http_port:
            self.ami_port = _free_port()
        modules_dir = _modules_dir(self.rootfs)
        included = self._copy_dialplan()
        files = {
            "asterisk.conf": _asterisk_conf(self.run_dir, modules_dir),
            "modules.conf": _modules_conf(self.rootfs, modules_dir),
            "logger.conf": _logger_conf(),
            "http.conf": _http_conf(self.http_port),
            "ari.conf": _ari_conf(self.ari_username, self.ari_password),
            "manager.conf": _manager_conf(self.ami_port, self.ami_username, self.ami_password),
            "extensions.conf": _extensions_conf(included, self.extra_dialplan),
            **QUIET_CONFIGS,
        }
        for name in STOCK_CONFIGS:
            stock = self.rootfs / "etc" / "asterisk" / name
            if stock.is_file():
                files[name] = stock.read_text()
        for name, text in files.items():
            _write_private(self.etc_dir / name, text)

    def _copy_dialplan(self) -> list[str]:
        """Copy ``dialplan_dir/*.conf`` to ``etc/callproof/``; return the include paths.

        A subfolder, as the project's dialplan tells admins to do
        (``#include callproof/callproof.conf``), so no project file can
        overwrite a config file of the sandbox's own.
        """
        target = self.etc_dir / "callproof"
        shutil.rmtree(target, ignore_errors=True)
        if self.dialplan_dir is None or not self.dialplan_dir.is_dir():
            return []
        target.mkdir(mode=0o750)
        included = []
        for source in sorted(self.dialplan_dir.glob("*.conf")):
            _write_private(target / source.name, source.read_text())
            included.append(f"callproof/{source.name}")
        return included

    def _spawn(self) -> None:
        binds = sorted({self.run_dir, *self.bind_paths}, key=lambda p: len(p.parts))
        command = [
            *_die_with_parent(),
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", _START_SCRIPT, "callproof-sandbox",
            str(self.rootfs), str(self.asterisk_conf), *map(str, binds),
        ]
        with open(self.console_log, "ab") as console:
            console.write(f"==== callproof sandbox start {time.strftime('%F %T')} ====\n".encode())
            console.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal must not hit Asterisk directly
            )

    def _wait_until_ready(self, deadline: float) -> None:
        ari_ok = ami_ok = False
        while True:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process is not None else None
                raise SandboxError(
                    f"Asterisk exited (code {code}) during start-up; "
                    f"last lines of {self.console_log}:\n{_tail(self.console_log)}"
                )
            if self._namespace is None:
                self._namespace = _private_namespace_of(self._process.pid)
            ari_ok = ari_ok or self._ari_answers()
            ami_ok = ami_ok or (ari_ok and self._ami_accepts_login())
            if ari_ok and ami_ok:
                self._asterisk_rx("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"Asterisk did not become ready in time (ARI {'up' if ari_ok else 'down'}, "
                    f"AMI {'up' if ami_ok else 'down'}); last lines of {self.console_log}:\n"
                    f"{_tail(self.console_log)}"
                )
            time.sleep(0.1)

    def _ari_answers(self) -> bool:
        try:
            info = ari_request(self, "GET", "asterisk/info", timeout=2)
        except (SandboxError, OSError):
            return False
        return isinstance(info, dict) and "system" in info

    def _ami_accepts_login(self) -> bool:
        try:
            return _ami_login(self.ami_host, self.ami_port, self.ami_username, self.ami_password)
        except OSError:
            return False

    def _read_version(self) -> str:
        output = self.cli("core show version")
        match = re.search(r"Asterisk (\S+)", output)
        if not match:
            raise SandboxError(f"unexpected 'core show version' output: {output!r}")
        return match.group(1)

    def _asterisk_rx(self, command: str, timeout: float) -> str:
        if self._process is None:
            raise SandboxError("the sandbox is not running")
        return _asterisk_rx(self._process.pid, self.asterisk_conf, command, timeout)

    def _end_namespace(self) -> None:
        """Kill what is still in the sandbox's mount namespace, so the kernel drops its mounts.

        Only processes that are both in that namespace (never ours: see
        ``_private_namespace_of``) and chrooted into the rootfs are touched.
        """
        if self._namespace is None or self._namespace == _namespace_of(os.getpid()):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stray = self._processes_in_namespace()
            if not stray:
                return
            for pid in stray:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        raise SandboxError(f"processes left in the sandbox's mount namespace: {stray}")

    def _processes_in_namespace(self) -> list[int]:
        found = []
        for pid in _all_pids():
            if pid == os.getpid() or _namespace_of(pid) != self._namespace:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/root") == str(self.rootfs):
                    found.append(pid)
        return found


def _asterisk_rx(pid: int, asterisk_conf: Path, command: str, timeout: float) -> str:
    """``asterisk -rx`` inside the mount namespace and chroot of Asterisk ``pid`` (nsenter --root)."""
    result = subprocess.run(
        ["nsenter", f"--target={pid}", "--mount", "--root", "--wd",
         ASTERISK_BIN, "-C", str(asterisk_conf), "-rx", command],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
    )
    output = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        raise SandboxError(
            f"asterisk -rx {command!r} failed (exit {result.returncode}): "
            f"{(output + result.stderr.decode(errors='replace')).strip()}"
        )
    return output


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _die_with_parent() -> list[str]:
    """Command prefix that SIGTERMs the child when the thread that spawned it dies.

    ``setpriv --pdeathsig`` (util-linux) instead of a ``preexec_fn``: no Python
    code between fork and exec, which is not safe in threaded processes.  Only
    from the main thread (the signal fires when the spawning *thread* exits);
    the setting survives the exec chain down to Asterisk, which never setuids.
    """
    if not _in_main_thread() or shutil.which("setpriv") is None:
        return []
    return ["setpriv", "--pdeathsig", "TERM", "--"]


def _private_namespace_of(pid: int) -> str | None:
    """The mount namespace of ``pid`` once it has left ours (None before ``unshare`` ran)."""
    namespace = _namespace_of(pid)
    return namespace if namespace is not None and namespace != _namespace_of(os.getpid()) else None


def _namespace_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _ami_login(host: str, port: int | None, username: str, secret: str, timeout: float = 2) -> bool:
    """True when AMI accepts this login (plain stdlib socket; logs off again)."""
    if port is None:
        return False
    with socket.create_connection((host, port), timeout=timeout) as sock:
        stream = sock.makefile("rb")
        banner = stream.readline()
        if not banner.startswith(b"Asterisk Call Manager"):
            return False
        sock.sendall(
            f"Action: Login\r\nActionID: sandbox-probe\r\nUsername: {username}\r\n"
            f"Secret: {secret}\r\nEvents: off\r\n\r\n".encode()
        )
        response = []
        while (line := stream.readline()) not in (b"\r\n", b""):
            response.append(line.strip())
        with contextlib.suppress(OSError):
            sock.sendall(b"Action: Logoff\r\n\r\n")
        return b"Response: Success" in response


# --------------------------------------------------------------------------
# driving calls
# --------------------------------------------------------------------------


def ari_request(
    sandbox: Sandbox,
    method: str,
    path: str,
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    timeout: float = 10,
) -> Any:
    """Call ARI (``/ari/<path>``) with the sandbox's credentials; return the decoded JSON (or None).

    Query parameters are URL-encoded, ``body`` is sent as JSON; an HTTP error
    raises ``SandboxError`` carrying Asterisk's message.
    """
    url = urllib.parse.urljoin(sandbox.ari_url, "ari/" + path.lstrip("/"))
    if params:
        url += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    token = base64.b64encode(f"{sandbox.ari_username}:{sandbox.ari_password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SandboxError(f"ARI {method} {path} failed: HTTP {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        raise SandboxError(f"ARI {method} {path} failed: {exc.reason}") from exc
    return json.loads(payload) if payload.strip() else None


def originate_call(
    sandbox: Sandbox,
    caller_id: str,
    *,
    entry_context: str = "callproof-entry",
    record_path: str | None = None,
    max_seconds: int = 60,
    variables: Mapping[str, str] | None = None,
    caller_name: str = "",
    extension: str = "s",
    formats: str | None = None,
) -> dict:
    """Start a "customer" call into ``entry_context`` and return the ARI channel JSON of its ``;1`` side.

    The ``;2`` side runs ``s@entry_context`` with ``CALLERID(num)`` equal to
    ``caller_id`` byte for byte, whatever it contains (see the module
    docstring for why the ``callerId`` parameter cannot do that).  The ``;1``
    side runs ``callproof-sandbox-caller``: it records what the customer hears
    into ``record_path`` (an absolute path with a format extension, e.g.
    ``.wav``, under ``run_dir`` or a ``bind_paths`` entry) or just listens, and
    hangs up after ``max_seconds``.  ``variables`` are set on the call (both
    sides).  ``formats`` (e.g. ``"ulaw"``) is ARI's originate parameter: without
    it the Local channels are created with every audio format and run at
    slin192, so every 8 kHz frame played is resampled to 192 kHz (about 3/4 of
    Asterisk's CPU in a call of bench/bench_calls.py); a trunk call is ulaw/alaw.
    """
    channel_vars = dict(variables or {})
    channel_vars.update(
        SANDBOX_CALLER_NUM=caller_id,
        SANDBOX_CALLER_NAME=caller_name,
        SANDBOX_ENTRY_CONTEXT=entry_context,
        SANDBOX_ENTRY_EXTEN=extension,
        SANDBOX_MAX_SECONDS=str(int(max_seconds)),
    )
    if record_path is not None:
        target = Path(record_path)
        if not target.is_absolute() or not target.suffix:
            raise ValueError(f"record_path must be absolute and end in a format extension: {record_path!r}")
        shared = [sandbox.run_dir, *sandbox.bind_paths]
        if not any(root == target.parent or root in target.parents for root in shared):
            raise ValueError(f"record_path {record_path!r} is not under run_dir or a bind_paths entry")
        target.parent.mkdir(parents=True, exist_ok=True)
        channel_vars["SANDBOX_RECORD"] = str(target)
    params = {
        "endpoint": "Local/s@callproof-sandbox-entry",
        "context": "callproof-sandbox-caller",
        "extension": "s",
        "priority": "1",
        "timeout": "30",
    }
    if formats:
        params["formats"] = formats
    return ari_request(sandbox, "POST", "channels", params=params, body={"variables": channel_vars})


def wait_for_hangup(sandbox: Sandbox, channel_id: str, timeout: float = 60) -> None:
    """Wait until ARI no longer knows ``channel_id`` (the channel hung up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ari_request(sandbox, "GET", f"channels/{urllib.parse.quote(channel_id, safe='')}")
        except SandboxError as exc:
            if "HTTP 404" in str(exc):
                return
            raise
        time.sleep(0.1)
    raise SandboxError(f"channel {channel_id} still up after {timeout} s")


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def _connection_info(sandbox: Sandbox) -> dict[str, str]:
    return {
        "CALLPROOF_ARI_URL": sandbox.ari_url,
        "CALLPROOF_ARI_USERNAME": sandbox.ari_username,
        "CALLPROOF_ARI_PASSWORD": sandbox.ari_password,
        "CALLPROOF_AMI_HOST": sandbox.ami_host,
        "CALLPROOF_AMI_PORT": str(sandbox.ami_port),
        "CALLPROOF_AMI_USERNAME": sandbox.ami_username,
        "CALLPROOF_AMI_PASSWORD": sandbox.ami_password,
        "CALLPROOF_SANDBOX_RUN_DIR": str(sandbox.run_dir),
    }


def _cmd_start(args: argparse.Namespace) -> int:
    rootfs = provision(args.cache_dir)
    run_dir = _cli_run_dir(args)
    dialplan_dir = args.dialplan_dir or dialplan_directory()
    sandbox = Sandbox(rootfs, run_dir, dialplan_dir=dialplan_dir, bind_paths=args.bind)
    # Stop cleanly on Ctrl-C and on SIGTERM, even where SIGINT was inherited as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    with sandbox:
        info = _connection_info(sandbox)
        _write_private(sandbox.run_dir / "connection.json", json.dumps(info, indent=2) + "\n")
        print(f"Asterisk {sandbox.version} ready in {time.monotonic() - started:.1f} s")
        for key, value in info.items():
            print(f"  {key}={value}")
        print(f"console log: {sandbox.console_log}")
        print(f"Asterisk CLI: python -m callproof.sandbox --run-dir {run_dir} cli core show channels")
        print("Ctrl-C stops it.", flush=True)
        try:
            while sandbox.running:
                time.sleep(0.5)
            print("Asterisk exited", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping")
    return 0


def _cli_run_dir(args: argparse.Namespace) -> Path:
    """The run dir of the sandbox the CLI's ``start`` runs: --run-dir or <cache>/run."""
    if args.run_dir:
        return Path(args.run_dir).resolve()
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    return cache.expanduser().resolve() / "run"


def _cmd_shell_info(args: argparse.Namespace) -> int:
    run_dir = _cli_run_dir(args)
    try:
        info = json.loads((run_dir / "connection.json").read_text())
    except OSError:
        print(f"no sandbox started with 'start' in {run_dir}", file=sys.stderr)
        return 1
    for key, value in info.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _cmd_cli(args: argparse.Namespace) -> int:
    run_dir = _cli_run_dir(args)
    try:
        pid = int((run_dir / "run" / "asterisk.pid").read_text())
    except (OSError, ValueError):
        print(f"no sandbox running in {run_dir}", file=sys.stderr)
        return 1
    print(_asterisk_rx(pid, run_dir / "etc" / "asterisk.conf", " ".join(args.words), timeout=60), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callproof.sandbox", description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, help=f"rootfs cache (default ${CACHE_ENV} or ~/.cache/callproof/sandbox)")
    parser.add_argument("--run-dir", type=Path, help="the CLI sandbox's run dir (default <cache>/run)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("provision", help="build the cached Asterisk 22 rootfs")
    start = sub.add_parser("start", help="run a sandbox Asterisk until Ctrl-C")
    start.add_argument("--dialplan-dir", type=Path, help="dialplan *.conf to include (default: the repo's dialplan/)")
    start.add_argument("--bind", type=Path, action="append", default=[], help="extra host dir visible inside")
    sub.add_parser("shell-info", help="print export lines for the sandbox that 'start' runs")
    cli = sub.add_parser("cli", help="run an Asterisk CLI command in the sandbox that 'start' runs")
    cli.add_argument("words", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "provision":
            started = time.monotonic()
            print(provision(args.cache_dir))
            print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
            return 0
        if args.command == "start":
            return _cmd_start(args)
        if args.command == "cli":
            return _cmd_cli(args)
        return _cmd_shell_info(args)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
