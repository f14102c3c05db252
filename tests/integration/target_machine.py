"""A throw-away "admin's server" for the package test: a copy of the sandbox's Debian sid
root file system with Asterisk 22, with a network of its own.

The copy is an overlay (the cached rootfs below, this run's changes in ``work/upper``), so
the shared cache is never written.  One holder process owns a mount namespace (the overlay,
``/proc``, the device nodes, a fresh ``/run``) and a network namespace (its own loopback:
Asterisk's stock ports 8088 and 5038, callproof's 8089 and 4573 collide with nothing on
the host).  Every command then runs in both namespaces and chrooted into the copy:
``dpkg``, Asterisk, the systemd units' commands as the asterisk user.  There is no systemd
in a chroot: the test reads the units' commands from the unit files the package installed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from callproof.sandbox.namespaces import die_with_parent

_HOLDER = r"""
set -eu
lower=$1; upper=$2; work=$3; merged=$4
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
for dev in null zero full random urandom; do
    [ -e "$merged/dev/$dev" ] || touch "$merged/dev/$dev"
    mount --bind "/dev/$dev" "$merged/dev/$dev"
done
mount -t tmpfs -o mode=0755 tmpfs "$merged/run"
mount -t tmpfs -o mode=1777 tmpfs "$merged/tmp"
ip link set lo up
echo ready
exec sleep 86400
"""


@dataclass
class Unit:
    """The [Service] lines of a systemd unit that a test needs to run its commands."""

    user: str
    group: str
    umask: int
    environment: dict[str, str]
    environment_files: list[str]
    exec_start_pre: list[list[str]]
    exec_start: list[str]


def parse_unit(text: str) -> Unit:
    service: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            service.setdefault(key.strip(), []).append(value.strip())
    environment = dict(item.split("=", 1) for value in service.get("Environment", [])
                       for item in shlex.split(value))
    return Unit(
        user=service["User"][-1], group=service["Group"][-1], umask=int(service.get("UMask", ["0022"])[-1], 8),
        environment=environment,
        environment_files=[f.lstrip("-") for f in service.get("EnvironmentFile", [])],
        exec_start_pre=[shlex.split(c) for c in service.get("ExecStartPre", [])],
        exec_start=shlex.split(service["ExecStart"][-1]),
    )


def parse_environment_file(text: str) -> dict[str, str]:
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


@dataclass
class TargetMachine:
    lower: Path
    work: Path
    _holder: subprocess.Popen[bytes] | None = None
    _started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def merged(self) -> Path:
        return self.work / "merged"

    def __enter__(self) -> TargetMachine:
        for sub in ("upper", "overlay-work", "merged"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        self._holder = subprocess.Popen(
            [*die_with_parent(), "unshare", "--mount", "--net", "--propagation", "private", "--",
             "/bin/sh", "-c", _HOLDER, "target-machine", str(self.lower), str(self.work / "upper"),
             str(self.work / "overlay-work"), str(self.merged)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if line.strip() != b"ready":
            self._holder.kill()
            raise RuntimeError(f"the target machine did not come up: {line!r} "
                               f"{self._holder.stderr.read().decode(errors='replace') if self._holder.stderr else ''}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in reversed(self._started):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in reversed(self._started):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()

    # -- running things in the machine ------------------------------------------

    def _ids(self, user: str, group: str) -> tuple[int, int]:
        uid = gid = None
        for line in (self.merged_path("/etc/passwd")).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                uid = int(fields[2])
        for line in (self.merged_path("/etc/group")).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                gid = int(fields[2])
        assert uid is not None and gid is not None, f"no user {user} / group {group} in the machine"
        return uid, gid

    @property
    def pid(self) -> int:
        """A process inside the machine's namespaces (``nsenter --target``)."""
        assert self._holder is not None
        return self._holder.pid

    def merged_path(self, path: str) -> Path:
        """``path`` of the machine, seen from the host; only the holder's namespace mounts
        the overlay, so the host reads it through the holder's root."""
        assert self._holder is not None
        return Path(f"/proc/{self._holder.pid}/root") / str(self.merged).lstrip("/") / path.lstrip("/")

    def command(self, argv: Sequence[str], *, user: str | None = None, group: str | None = None,
                umask: int | None = None) -> list[str]:
        assert self._holder is not None
        chroot = ["chroot"]
        if user is not None:
            uid, gid = self._ids(user, group or user)
            chroot += [f"--userspec={uid}:{gid}", f"--groups={gid}"]
        inner = list(argv)
        if umask is not None:
            inner = ["/bin/sh", "-c", f'umask {umask:04o}; exec "$@"', "sh", *inner]
        return ["nsenter", f"--target={self._holder.pid}", "--mount", "--net", *chroot, str(self.merged), *inner]

    def run(self, argv: Sequence[str], *, user: str | None = None, group: str | None = None,
            env: Mapping[str, str] | None = None, input: bytes | None = None, timeout: float = 300,
            umask: int | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "LANG": "C.UTF-8", **(env or {})}
        done = subprocess.run(self.command(argv, user=user, group=group, umask=umask), env=environment,
                              input=input, capture_output=True, timeout=timeout)
        result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                             done.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode} in the machine:\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def start(self, argv: Sequence[str], log: Path, *, user: str | None = None, group: str | None = None,
              env: Mapping[str, str] | None = None, umask: int | None = None) -> subprocess.Popen[bytes]:
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "LANG": "C.UTF-8", **(env or {})}
        with open(log, "ab") as out:
            process = subprocess.Popen([*die_with_parent(), *self.command(argv, user=user, group=group, umask=umask)],
                                       env=environment, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self._started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """SIGTERM, as systemd stops a unit; SIGKILL if it does not end."""
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._started.remove(process)

    def start_unit(self, unit_file: str, log: Path, *, secrets_override: Mapping[str, str] | None = None
                   ) -> subprocess.Popen[bytes]:
        """Run a shipped unit as systemd would: its ExecStartPre= commands, then ExecStart=,
        with its User=, Group=, UMask=, Environment= and EnvironmentFile= lines."""
        unit = parse_unit(self.merged_path(unit_file).read_text())
        env = dict(unit.environment)
        for path in unit.environment_files:
            with contextlib.suppress(FileNotFoundError):
                env.update(parse_environment_file(self.merged_path(path).read_text()))
        env.update(secrets_override or {})
        for pre in unit.exec_start_pre:
            self.run(pre, user=unit.user, group=unit.group, env=env, umask=unit.umask)
        return self.start(unit.exec_start, log, user=unit.user, group=unit.group, env=env, umask=unit.umask)

    def run_unit_once(self, unit_file: str) -> subprocess.CompletedProcess[str]:
        """A Type=oneshot unit's command, to the end."""
        unit = parse_unit(self.merged_path(unit_file).read_text())
        env = dict(unit.environment)
        for path in unit.environment_files:
            with contextlib.suppress(FileNotFoundError):
                env.update(parse_environment_file(self.merged_path(path).read_text()))
        return self.run(unit.exec_start, user=unit.user, group=unit.group, env=env, umask=unit.umask,
                        check=False)

    def wait_until(self, what: str, probe, timeout: float = 120, every: float = 0.5):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def uid_gid_names(machine: TargetMachine, path: str) -> tuple[str, str, int, int]:
    """owner, group, mode and size of ``path`` in the machine."""
    out = machine.run(["stat", "-c", "%U %G %a %s", path]).stdout.split()
    return out[0], out[1], int(out[2], 8), int(out[3])


def environ_without_python() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
