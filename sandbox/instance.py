"""``Sandbox``: one throw-away Asterisk 22 running from the provisioned rootfs.

Every piece of per-run state (config, spool, logs, astdb, control socket) is
under a host ``run_dir``; ARI and AMI listen on free loopback ports with random
credentials, so any number of sandboxes can run side by side on one rootfs.

Filesystem layout seen by Asterisk
----------------------------------
Paths are identical inside and outside the chroot: ``run_dir`` and every
``bind_paths`` entry are bind-mounted into the rootfs at the same absolute path,
so a recording Asterisk writes at ``/x/y.wav`` is read by the host at
``/x/y.wav``.  The chroot also gets its own ``/proc`` and the host's
``/dev/{null,zero,full,random,urandom}``.  Its ``/tmp`` is the rootfs's
(visible to the host at ``<rootfs>/tmp``).  Mount points are created in the
rootfs as empty directories and left there.  The mounts live in a mount
namespace of Asterisk's own (see ``namespaces``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .asterisk_config import write_etc
from .calls import ari_request
from .errors import SandboxError, require_root, require_tool, tail
from .namespaces import (
    all_pids,
    die_with_parent,
    host_mounts_under,
    mounts_under,
    namespace_of,
    private_namespace_of,
)
from .ports import free_port
from .rootfs import ASTERISK_BIN, marker_is_current

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

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
    ``run_dir`` per sandbox: ``start()`` kills an Asterisk still running from it.
    ``bind_paths`` are further host directories made visible inside the chroot
    at the same path (for prompts, recordings, ...).
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
        system_name: str = "",
    ) -> None:
        self.rootfs = Path(rootfs).resolve()
        self.run_dir = Path(run_dir).resolve()
        self.dialplan_dir = Path(dialplan_dir).resolve() if dialplan_dir is not None else None
        self.extra_dialplan = extra_dialplan
        self.bind_paths = [Path(p).resolve() for p in bind_paths]
        if system_name and not re.fullmatch(r"[A-Za-z0-9-]{1,32}", system_name):
            raise SandboxError(f"system_name: letters, digits and '-' only, not {system_name!r}")
        self.system_name = system_name  # asterisk.conf systemname: empty = none (one node)
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
        return mounts_under(Path(f"/proc/{self.pid}/mountinfo"), Path("/"))

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
        require_root("starting the Asterisk sandbox")
        require_tool("unshare", "install it with: apt-get install util-linux")
        require_tool("nsenter", "install it with: apt-get install util-linux")
        if not marker_is_current(self.rootfs):
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
        for point in sorted(host_mounts_under(self.rootfs), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True)
        left = host_mounts_under(self.rootfs)
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
        self.http_port = free_port()
        self.ami_port = free_port()
        while self.ami_port == self.http_port:
            self.ami_port = free_port()
        write_etc(self)

    def _spawn(self) -> None:
        binds = sorted({self.run_dir, *self.bind_paths}, key=lambda p: len(p.parts))
        command = [
            *die_with_parent(),
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
                    f"last lines of {self.console_log}:\n{tail(self.console_log)}"
                )
            if self._namespace is None:
                self._namespace = private_namespace_of(self._process.pid)
            ari_ok = ari_ok or self._ari_answers()
            ami_ok = ami_ok or (ari_ok and self._ami_accepts_login())
            if ari_ok and ami_ok:
                self._asterisk_rx("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"Asterisk did not become ready in time (ARI {'up' if ari_ok else 'down'}, "
                    f"AMI {'up' if ami_ok else 'down'}); last lines of {self.console_log}:\n"
                    f"{tail(self.console_log)}"
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
        return asterisk_rx(self._process.pid, self.asterisk_conf, command, timeout)

    def _end_namespace(self) -> None:
        """Kill what is still in the sandbox's mount namespace, so the kernel drops its mounts.

        Only processes that are both in that namespace (never ours: see
        ``private_namespace_of``) and chrooted into the rootfs are touched.
        """
        if self._namespace is None or self._namespace == namespace_of(os.getpid()):
            return
        deadline = time.monotonic() + 10
        stray: list[int] = []
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
        for pid in all_pids():
            if pid == os.getpid() or namespace_of(pid) != self._namespace:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/root") == str(self.rootfs):
                    found.append(pid)
        return found



def asterisk_rx(pid: int, asterisk_conf: Path, command: str, timeout: float) -> str:
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
