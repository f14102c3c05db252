"""CLI: ``callproof keys init | list | rotate | export-public | destroy-expired | retire-hold`` (docs/keys.md).

Every command writes an audit entry naming the keys by id and fingerprint, never key material.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..config import Config
from .keyring import KeyringError

Load = Callable[[argparse.Namespace], Config]


def _actor(args: argparse.Namespace) -> str:
    from ..actors import cli_actor

    return cli_actor(getattr(args, "by", None))


def _now(args: argparse.Namespace) -> datetime:
    return datetime.now(UTC)


def _audit(config: Config, action: str, actor: str, *, key_id: str | None = None, details: dict) -> None:
    from callproof.storage import open_sync

    with open_sync(config) as db:
        db.keys.audit(action, actor, datetime.now(UTC), key_id=key_id, details=details)


def _fail(exc: Exception) -> int:
    print(f"callproof: {exc}", file=sys.stderr)
    return 1


def _export(config: Config, actor: str, target: Path | None = None) -> tuple[list[str], list[str]]:
    from .keystore import export_public

    target = target or config.encryption.public_keys_dir
    written, removed = export_public(config.encryption.private_keys_dir, target)
    _audit(config, "keys.exported", actor, details={"to": str(target), "written": written, "removed": removed})
    return written, removed


def _created(config: Config, actor: str, created: list) -> None:
    from .keystore import fingerprints

    if created:
        _audit(config, "keys.created", actor, details={"keys": fingerprints(created)})


def cmd_init(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from .keystore import private_key_ids, top_up

    enc = config.encryption
    directory = enc.private_keys_dir
    try:
        if directory.exists() and private_key_ids(directory):
            print(f"callproof: {directory} holds keys already; 'callproof keys rotate' creates the missing ones",
                  file=sys.stderr)
            return 1
        created = top_up(directory, config.retention.classes, _now(args), enc.months_ahead,
                         enc.destroy_margin_days)
        _created(config, _actor(args), created)
        written, _ = _export(config, _actor(args))
    except (KeyringError, OSError) as exc:
        return _fail(exc)
    holds = [k for k, _ in created if k.startswith("hold-")]
    print(f"{len(created)} keys created in {directory} (mode 0700, key files 0600): hold key {', '.join(holds)}, "
          f"{len(created) - len(holds)} period keys ({enc.months_ahead} months ahead per retention class)")
    print(f"{len(written)} public keys written to {enc.public_keys_dir}; copy that directory to each PBX host "
          "('callproof keys export-public --to DIR'), then set [encryption] enabled = true")
    print("keep an offline copy of the hold key (docs/keys.md, key loss); never back up the period keys")
    return 0


def cmd_rotate(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from .keystore import new_hold_key, replace_key, top_up

    enc = config.encryption
    try:
        created = top_up(enc.private_keys_dir, config.retention.classes, _now(args), enc.months_ahead,
                         enc.destroy_margin_days)
        if args.hold:
            created.append(new_hold_key(enc.private_keys_dir, _now(args)))
        for key_id in args.replace or ():
            created.append(replace_key(enc.private_keys_dir, key_id, _now(args)))
        _created(config, _actor(args), created)
        written, removed = _export(config, _actor(args))
    except (KeyringError, OSError) as exc:
        return _fail(exc)
    print(f"{len(created)} keys created: {', '.join(k for k, _ in created) or 'none needed'}")
    print(f"public keys in {enc.public_keys_dir}: {len(written)} written, {len(removed)} of destroyed keys removed")
    return 0


def cmd_export_public(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    try:
        written, removed = _export(config, _actor(args), Path(args.to) if args.to else None)
    except (KeyringError, OSError) as exc:
        return _fail(exc)
    target = args.to or config.encryption.public_keys_dir
    print(f"public keys in {target}: {len(written)} written, {len(removed)} of destroyed keys removed")
    return 0


def cmd_list(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from .keystore import list_keys

    enc = config.encryption
    try:
        infos = list_keys(enc.private_keys_dir, enc.public_keys_dir)
    except (KeyringError, OSError) as exc:
        return _fail(exc)
    if not infos:
        print(f"no keys in {enc.private_keys_dir} nor {enc.public_keys_dir} (create them: 'callproof keys init')")
        return 1
    from callproof.storage import open_sync

    with open_sync(config) as db:
        counts = db.keys.recordings_per_key()
        db.keys.audit("keys.listed", _actor(args), datetime.now(UTC), details={"keys": len(infos)})
    print(f"{'key id':<40} {'kind':<6} {'state':<11} {'recordings':>10}  fingerprint")
    for info in infos:
        when = f"  destroyed {info.destroyed_at}" if info.destroyed_at else ""
        print(f"{info.key_id:<40} {info.kind:<6} {info.state:<11} {counts.get(info.key_id, 0):>10}  "
              f"{info.fingerprint}{when}")
    return 0


def cmd_destroy_expired(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync

    from .shredding import destroy_expired

    try:
        with open_sync(config) as db:
            outcomes = destroy_expired(config, db, now=_now(args), actor=_actor(args), dry_run=args.dry_run)
    except (KeyringError, OSError) as exc:
        return _fail(exc)
    if not outcomes:
        print("no key is due for destruction (no period over, no retired hold key)")
    for outcome in outcomes:
        print(outcome.describe())
    if not args.dry_run and any(o.result == "destroyed" for o in outcomes):
        try:
            _export(config, _actor(args))
        except (KeyringError, OSError) as exc:
            print(f"callproof: destroyed keys' public halves not removed from the PBX directory: {exc}",
                  file=sys.stderr)
    return 0 if all(o.result in ("destroyed", "would-destroy") for o in outcomes) else 1


def cmd_retire_hold(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync

    from .shredding import retire_hold_key

    try:
        with open_sync(config) as db:
            outcome = retire_hold_key(config, db, args.key_id, now=_now(args), actor=_actor(args),
                                      dry_run=args.dry_run)
        if outcome.result == "destroyed":
            _export(config, _actor(args))
    except (KeyringError, OSError) as exc:
        return _fail(exc)
    print(outcome.describe())
    return 0 if outcome.result in ("destroyed", "would-destroy") else 1


def add_keys_commands(sub, load: Load) -> None:
    keys = sub.add_parser("keys", help="the age keys recordings are encrypted to (docs/keys.md)").add_subparsers(
        dest="sub", required=True)

    def command(name: str, fn: Callable[[argparse.Namespace, Load], int], help: str) -> argparse.ArgumentParser:
        p = keys.add_parser(name, help=help)
        p.add_argument("--by", help="who runs this (the audit log's actor; default: your login name)")
        p.set_defaults(func=lambda args: fn(args, load))
        return p

    command("init", cmd_init, "create the hold key and the period keys ahead, and the public keys directory")
    command("list", cmd_list, "every key: id, kind, state, fingerprint (never key material)")
    rotate = command("rotate", cmd_rotate, "create the period keys now due ahead; --hold: a new hold key")
    rotate.add_argument("--hold", action="store_true", help="also a new hold key (after a compromise)")
    rotate.add_argument("--replace", action="append", metavar="KEY_ID",
                        help="a new generation of a lost or compromised key, used for new recordings (repeatable)")
    export = command("export-public", cmd_export_public, "write the public keys a PBX host needs")
    export.add_argument("--to", help="directory (default: [encryption] public_keys_dir)")
    destroy = command("destroy-expired", cmd_destroy_expired,
                      "re-wrap held recordings to the hold key, then destroy the private keys of periods over")
    destroy.add_argument("--dry-run", action="store_true", help="say what would be re-wrapped and destroyed")
    retire = command("retire-hold", cmd_retire_hold,
                     "move every recording off an old hold key to the current one, then destroy it")
    retire.add_argument("key_id", help="the old hold key, e.g. hold-1")
    retire.add_argument("--dry-run", action="store_true", help="say what would be re-wrapped and destroyed")
