"""CLI: ``callproof web`` (serve the ops page) and ``callproof web-user ...``.

Passwords are read from the terminal (asked twice) or, when stdin is not a
terminal, from its first line -- never from the command line, where ``ps``
and the shell history would show them.  There is no default account.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable

from ..actors import login_name
from ..config import Config, ConfigError, require_secret

Load = Callable[[argparse.Namespace], Config]


def _actor() -> str:
    return f"cli:{login_name()}"


def read_password(prompt: str = "Password: ") -> str:
    """From the terminal (twice, must match) or the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Repeat: ") != first:
            raise ValueError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _new_password_hash() -> str:
    from .passwords import check_password_strength, hash_password
    password = read_password()
    check_password_strength(password)
    return hash_password(password)


def cmd_web(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from ..encryption.keyring import KeyringError
    from ..logs import setup_logging
    from .app import load_keyring, serve

    try:
        # The web page issues download links; without this secret /d/ links cannot be checked.
        require_secret(config, "rights.link_secret")
    except ConfigError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 2
    try:  # encrypted recordings and exports are served decrypted: not without the private keys
        keyring = load_keyring(config)
    except KeyringError as exc:
        print(f"callproof: [encryption] is enabled and the web side needs the private keyring: {exc}",
              file=sys.stderr)
        return 2
    setup_logging(config.logging.level, config.logging.format)
    host = args.host or config.web.host
    port = config.web.port if args.port is None else args.port
    asyncio.run(serve(config, host, port, keyring=keyring,
                      ready=lambda where: print(f"callproof web listening on {where}", flush=True)))
    return 0


def cmd_user_add(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import AlreadyExistsError, open_sync, utc_now
    from callproof.storage.webauth import check_role, check_username

    from .passwords import WeakPassword
    try:
        check_username(args.name)
        check_role(args.role)
        encoded = _new_password_hash()
    except (ValueError, WeakPassword) as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 2
    with open_sync(config) as db:
        try:
            db.webauth.create_user(args.name, encoded, args.role, actor=_actor(), at=utc_now())
        except AlreadyExistsError as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return 1
    print(f"web user {args.name} added with role {args.role}")
    return 0


def cmd_user_passwd(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import NotFoundError, open_sync, utc_now

    from .passwords import WeakPassword
    with open_sync(config) as db:
        try:
            if db.webauth.get_user(args.name) is None:
                print(f"callproof: no web user {args.name!r}", file=sys.stderr)
                return 1
            try:
                encoded = _new_password_hash()
            except (ValueError, WeakPassword) as exc:
                print(f"callproof: {exc}", file=sys.stderr)
                return 2
            db.webauth.set_password(args.name, encoded, actor=_actor(), at=utc_now())
        except NotFoundError as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return 1
    print(f"password of web user {args.name} changed; their sessions were ended")
    return 0


def cmd_user_disable(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import NotFoundError, open_sync, utc_now

    with open_sync(config) as db:
        try:
            db.webauth.disable_user(args.name, actor=_actor(), at=utc_now())
        except NotFoundError as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return 1
    print(f"web user {args.name} disabled; their sessions were ended")
    return 0


def cmd_user_list(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync

    with open_sync(config) as db:
        users = db.webauth.list_users()
    if args.json:
        import json
        print(json.dumps(users, indent=2))
        return 0
    for u in users:
        state = f"disabled {u['disabled_at']}" if u["disabled_at"] else "active"
        print(f"{u['username']:<24} {u['role']:<9} created {u['created_at']}  {state}")
    if not users:
        print("no web users (add one with: callproof web-user add NAME --role admin)")
    return 0


def add_web_commands(sub: argparse._SubParsersAction, load: Load) -> None:
    """Register the web commands; ``load(args)`` returns the Config."""
    web = sub.add_parser("web", help="serve the ops web page (docs/web.md)")
    web.add_argument("--host", help="listen address (default: [web] host, 127.0.0.1)")
    web.add_argument("--port", type=int, help="TCP port (default: [web] port, 8089)")
    web.set_defaults(func=lambda args: cmd_web(args, load))

    users = sub.add_parser("web-user", help="accounts of the ops web page").add_subparsers(
        dest="sub", required=True)
    add = users.add_parser("add", help="add an account (password from the terminal or stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    add.set_defaults(func=lambda args: cmd_user_add(args, load))
    lst = users.add_parser("list", help="list accounts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=lambda args: cmd_user_list(args, load))
    dis = users.add_parser("disable", help="disable an account and end its sessions")
    dis.add_argument("name")
    dis.set_defaults(func=lambda args: cmd_user_disable(args, load))
    pw = users.add_parser("passwd", help="set a new password (ends the account's sessions)")
    pw.add_argument("name")
    pw.set_defaults(func=lambda args: cmd_user_passwd(args, load))
