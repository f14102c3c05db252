"""CLI: ``callproof callback list | show | schedule | cancel`` (dropped-call call-backs).

The call-backs themselves are made by ``callproof run`` when ``[callback]
enabled``; these commands let ops see them, ask for one by hand and cancel
one.  Scheduling and cancelling are audited with who did it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from callproof.storage.callbacks import STATES

from .actors import cli_actor

if TYPE_CHECKING:
    from callproof.config import Config
    from callproof.storage import SyncDatabase


def _masked(number: str | None) -> str:
    return "-" if not number else number[:-4] + "****" if len(number) > 6 else "****"


def _actor(args: argparse.Namespace) -> str:
    return cli_actor(args.by)


def _with_db(config: Config, fn: Callable[[SyncDatabase], int]) -> int:
    from callproof.storage import StorageError, open_sync

    with open_sync(config) as db:
        try:
            return fn(db)
        except (ValueError, StorageError) as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return 1


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    def run(db: SyncDatabase) -> int:
        rows = db.callbacks.list(args.state, limit=args.limit)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            when = r["next_attempt_at"] if r["state"] == "scheduled" else (r["completed_at"] or r["updated_at"])
            print(f"{r['id']:>5}  {r['state']:<9}  {r['protocol']}  {_masked(r['destination'])}"
                  f"  attempts {r['attempts']}/{r['max_attempts']}  {when}  {r['outcome'] or r['reason']}")
        if not rows:
            print(f"no call-backs{' in state ' + args.state if args.state else ''}")
        return 0

    return _with_db(config, run)


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    def run(db: SyncDatabase) -> int:
        row = db.callbacks.get(args.callback_id)
        if row is None:
            print(f"callproof: call-back {args.callback_id} does not exist", file=sys.stderr)
            return 1
        attempts = db.callbacks.attempts(args.callback_id)
        if args.json:
            print(json.dumps({"callback": row, "attempts": attempts}, indent=2))
            return 0
        print(f"call-back {row['id']}: {row['state']}  protocol {row['protocol']}  to {_masked(row['destination'])}"
              f"  ({row['language']})\n  reason: {row['reason']}\n  outcome: {row['outcome'] or '-'}"
              f"\n  attempts {row['attempts']}/{row['max_attempts']}, next {row['next_attempt_at'] or '-'}")
        for a in attempts:
            print(f"  #{a['attempt']}  started {a['started_at']}  answered {a['answered_at'] or '-'}"
                  f"  ended {a['ended_at'] or '-'}  cause {a['hangup_cause'] if a['hangup_cause'] is not None else '-'}"
                  f"  {a['outcome'] or 'in progress'}")
        return 0

    return _with_db(config, run)


def cmd_schedule(args: argparse.Namespace, config: Config) -> int:
    from callproof.storage import utc_now
    from callproof.storage.callbacks import Plan

    if not (len(args.protocol) == 17 and args.protocol.isdigit()):
        print("callproof: PROTOCOL must be 17 digits", file=sys.stderr)
        return 2

    def run(db: SyncDatabase) -> int:
        cid = db.callbacks.schedule_manual(args.protocol, actor=_actor(args),
                                           plan=Plan(0, config.callback.max_attempts), now=utc_now())
        print(f"call-back {cid} scheduled for protocol {args.protocol} (due now)")
        if not config.callback.enabled:
            print("note: [callback] enabled is false; 'callproof run' will not dial it until enabled",
                  file=sys.stderr)
        return 0

    return _with_db(config, run)


def cmd_cancel(args: argparse.Namespace, config: Config) -> int:
    from callproof.storage import utc_now

    if not args.reason.strip():
        print("callproof: --reason must say why", file=sys.stderr)
        return 2

    def run(db: SyncDatabase) -> int:
        db.callbacks.cancel(args.callback_id, reason=args.reason.strip(), actor=_actor(args), now=utc_now())
        print(f"call-back {args.callback_id} cancelled")
        return 0

    return _with_db(config, run)


def add_callback_commands(sub: argparse._SubParsersAction,
                          load: Callable[[argparse.Namespace], Config]) -> None:
    """Register the call-back commands; ``load(args)`` returns the Config."""
    def bind(fn: Callable[[argparse.Namespace, Config], int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: fn(args, load(args))

    cb = sub.add_parser("callback", help="call-backs of dropped calls").add_subparsers(dest="sub", required=True)
    lst = cb.add_parser("list", help="list call-backs, newest first")
    lst.add_argument("--state", choices=STATES)
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--json", action="store_true", help="JSON (full destination numbers)")
    lst.set_defaults(func=bind(cmd_list))
    show = cb.add_parser("show", help="one call-back and its attempts")
    show.add_argument("callback_id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=bind(cmd_show))
    sched = cb.add_parser("schedule", help="call the customer of a protocol back (now)")
    sched.add_argument("protocol", metavar="PROTOCOL")
    sched.add_argument("--by", help="who asks (default: the login name)")
    sched.set_defaults(func=bind(cmd_schedule))
    cancel = cb.add_parser("cancel", help="cancel a call-back that is not finished")
    cancel.add_argument("callback_id", type=int, metavar="ID")
    cancel.add_argument("--reason", required=True, help="why (kept in the audit log)")
    cancel.add_argument("--by", help="who cancels (default: the login name)")
    cancel.set_defaults(func=bind(cmd_cancel))
