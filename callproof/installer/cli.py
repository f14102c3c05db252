"""``callproof install``: the command the Debian package's postinst runs (docs/install.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import ConfigError
from .layout import SERVICE_USER, Layout
from .steps import InstallError, install


def cmd_install(args: argparse.Namespace) -> int:
    layout = Layout(root=Path(args.root), user=args.user)
    if os.geteuid() != 0 and layout.root == Path("/"):
        print("callproof: install writes /etc/callproof, /etc/asterisk and /var/lib/callproof: run it as root "
              "(sudo callproof install)", file=sys.stderr)
        return 1
    try:
        report = install(layout, prompts=not args.no_prompts)
    except (InstallError, ConfigError, ValueError) as exc:
        print(f"callproof install: {exc}", file=sys.stderr)
        return 1
    for line in report.written:
        print(f"  wrote    {line}")
    for line in report.kept:
        print(f"  kept     {line}")
    for line in report.ready:
        print(f"  ready    {line}")
    for command in report.reloaded:
        print(f"  reloaded asterisk -rx '{command}'")
    for note in report.notes:
        print(f"  note     {note}")
    return 0


def add_install_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("install", help="set this machine's Asterisk up for callproof (run as root; "
                                            "the Debian package runs it)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests install into a folder
    parser.add_argument("--user", default=SERVICE_USER, help="the user Asterisk runs as (default: asterisk)")
    parser.add_argument("--no-prompts", action="store_true", help="do not generate the default prompts")
    parser.set_defaults(func=cmd_install)
