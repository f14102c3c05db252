"""``python -m callproof.sandbox``: provision, start a sandbox Asterisk by hand, reach its CLI."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path

from callproof.dialplan import directory as dialplan_directory

from .asterisk_config import write_private
from .errors import SandboxError
from .instance import Sandbox, asterisk_rx
from .rootfs import CACHE_ENV, default_cache_dir, provision

DESCRIPTION = "A real Asterisk 22 in a Debian sid chroot, for the demo and the integration tests."


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
        write_private(sandbox.run_dir / "connection.json", json.dumps(info, indent=2) + "\n")
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
    print(asterisk_rx(pid, run_dir / "etc" / "asterisk.conf", " ".join(args.words), timeout=60), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callproof.sandbox", description=DESCRIPTION)
    parser.add_argument("--cache-dir", type=Path,
                        help=f"rootfs cache (default ${CACHE_ENV} or ~/.cache/callproof/sandbox)")
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

