"""CLI: ``callproof recording encrypt`` (callproof/encryption/migration.py, docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ..config import Config

Load = Callable[[argparse.Namespace], Config]
EXIT_LOCKED = 75


def cmd_recording_encrypt(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.actors import cli_actor
    from callproof.storage import open_sync

    from .keyring import KeyringError
    from .migration import MigrationLocked, count_todo, lock_path, migration_lock, run_migration

    if not config.encryption.enabled:
        print("callproof: config key 'encryption.enabled': set it to true (after 'callproof keys init') before "
              "encrypting recordings", file=sys.stderr)
        return 2
    actor = cli_actor(getattr(args, "by", None))
    bar = None

    def report(item: dict) -> None:
        if args.json:
            print(json.dumps({"type": "item", **item}, sort_keys=True), flush=True)
        elif item["result"] not in ("encrypted", "finished") or args.verbose:
            line = f"{item['result']:>12}  recording {item['id']}  {item['protocol'] or '-'}  {item['detail']}"
            if bar is not None:
                bar.write(line)
            else:
                print(line)

    try:
        with migration_lock(lock_path(config)), open_sync(config) as db:
            total = count_todo(db)
            if not args.json and sys.stderr.isatty():
                from tqdm import tqdm
                bar = tqdm(total=total, unit="rec", desc="encrypting recordings", file=sys.stderr)
            try:
                summary = run_migration(config, db, actor=actor, report=report,
                                        progress=(lambda n: bar.update(n)) if bar is not None else None)
            finally:
                if bar is not None:
                    bar.close()
            db.audit.append("recording.encrypt_run", actor, _now(), details=summary.counts)
    except MigrationLocked as exc:
        print(f"callproof: {exc}; not starting a second run", file=sys.stderr)
        return EXIT_LOCKED
    except KeyringError as exc:
        print(f"callproof: config key 'encryption.public_keys_dir': {exc}", file=sys.stderr)
        return 2
    c = summary.counts
    if args.json:
        print(json.dumps({"type": "summary", **c}, sort_keys=True))
    else:
        print(f"recordings encrypted: {c['encrypted']}; interrupted ones finished {c['finished']}; "
              f"MISMATCH {c['mismatch']}, FORGED record {c['forged']}, unverifiable {c['unverifiable']}, "
              f"no key {c['no_key']}, missing {c['missing']}, busy {c['busy']}, errors {c['error']}"
              + (f", still on another node {c['elsewhere']}" if c["elsewhere"] else ""))
    return 1 if summary.problems else 0


def _now() -> str:
    from callproof.storage import utc_now
    return utc_now()


def add_encrypt_command(recording: argparse._SubParsersAction, load: Load) -> None:
    enc = recording.add_parser("encrypt", help="encrypt plaintext recordings (made before [encryption] was on, or "
                               "pending) to their period keys; resumable, safe to kill")
    enc.add_argument("--by", help="who runs it (audit log; default: the login name)")
    enc.add_argument("--json", action="store_true", help="one JSON line per recording and a summary")
    enc.add_argument("--verbose", "-v", action="store_true", help="also list the ones encrypted")
    enc.set_defaults(func=lambda args: cmd_recording_encrypt(args, load))
