"""CLI: ``callproof recording move`` -- one pass of the mover (callproof/store/mover.py), from
cron on a classic-AGI node, or to catch up after the store was away (docs/scale-out.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ..config import Config

Load = Callable[[argparse.Namespace], Config]


def cmd_recording_move(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    if config.recording.store is None:
        print("callproof: config key 'recording.store': not set, nothing to move (recordings stay under "
              "recording.root)", file=sys.stderr)
        return 2
    from . import node_name
    from .mover import MARKER, move_pending

    if args.init:
        marker = config.recording.store / MARKER
        if not config.recording.store.is_dir():
            print(f"callproof: config key 'recording.store': {config.recording.store} is not a folder",
                  file=sys.stderr)
            return 2
        marker.touch(mode=0o640, exist_ok=True)
        print(f"store {config.recording.store} initialised ({MARKER}); mount it at the same place on every node")
    s = move_pending(config, limit=args.limit)
    if args.json:
        print(json.dumps({"node": node_name(config), **s.as_dict(), "errors": s.errors}, sort_keys=True))
    else:
        print(f"node {node_name(config)}: moved {s.moved}, found in the store {s.adopted}, failed {s.failed}, "
              f"REFUSED {s.refused}, skipped {s.skipped}, leftover local copies removed {s.leftovers_removed}")
        for error in s.errors:
            print(f"  store: {error}")
    return 1 if s.failed or s.refused else 0


def add_move_command(recording: argparse._SubParsersAction, load: Load) -> None:
    mv = recording.add_parser("move", help="move finalised recordings of this node into the shared store "
                                           "([recording] store)")
    mv.add_argument("--limit", type=int, default=100000, help="at most this many recordings in this pass")
    mv.add_argument("--init", action="store_true",
                    help=f"first mark the store folder as the store (the {'.callproof-store'} file the mover "
                         "checks, so an unmounted mount point is never written to)")
    mv.add_argument("--json", action="store_true", help="the summary as one JSON line")
    mv.set_defaults(func=lambda args: cmd_recording_move(args, load))
