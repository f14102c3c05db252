"""Fault figures: calls through the sandbox Asterisk while callproof's ARI (or AMI) link is cut.

    sudo .venv/bin/python bench/bench_faults.py                          # ARI: 20 calls, 8 cuts of 1-5 s
    sudo .venv/bin/python bench/bench_faults.py --link ami --calls 10 --cuts 4    # cuts from 20 s on
    sudo .venv/bin/python bench/bench_faults.py --seed 42 --runs 3        # the same cuts, three runs

The application runs in this process, connected through a TCP proxy that resets every
connection and refuses new ones for each cut (tests/faults/tcp_proxy.py); the calls are
placed over 8 s, then the link is cut at seeded random moments while they run
(tests/faults/scenario.py, the same scenario tests/integration/test_faults_ari.py
asserts on).  Printed per run, then as one JSON line: calls affected (any problem
below), announcements per caller (max, from Asterisk's own log of what it played on
the call's channel), readings heard vs protocol_read_count, recording rows not final,
calls with not exactly one recording row, failed calls, evidence out of order, and
the seconds from the link coming back to the call's flow running again.

It uses only what callproof had before the resume work (rows, recordings, the
console log), so running it with an older checkout's interpreter measures that code:
the scenario is loaded from this file's repository, callproof from the interpreter.
Nothing is asserted.  Needs root (the sandbox).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from callproof.demo import SANDBOX_AGENTS_DIALPLAN, prompts_cache_dir
from callproof.dialplan import directory as dialplan_directory
from callproof.prompts import generate_prompts
from callproof.sandbox import Sandbox, provision

FAULTS = Path(__file__).resolve().parents[1] / "tests" / "faults"


def load_scenario():
    """tests/faults as the package 'fault_kit' (not through sys.path: the repository root
    there would shadow the interpreter's callproof)."""
    spec = importlib.util.spec_from_file_location("fault_kit", FAULTS / "__init__.py",
                                                  submodule_search_locations=[str(FAULTS)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["fault_kit"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("fault_kit.scenario")


async def run(args: argparse.Namespace, sandbox: Sandbox, prompts: Path, scenario, seed: int, n: int) -> dict:
    report = await scenario.run_cuts(
        sandbox, sandbox.run_dir / f"run-{n}", prompts, app_name=f"callproof_bench_faults{n}", seed=seed,
        calls=args.calls, cuts=args.cuts, cut_seconds=(args.cut_min, args.cut_max), link=args.link,
        first_cut_after=args.first_cut_after if args.first_cut_after is not None else
        (20.0 if args.link == "ami" else 0.0),
        log=lambda line: print("  " + line, flush=True))
    for call in report.calls:
        if call.problems:
            print(f"  {call.channel_id or '?'}: {'; '.join(call.problems)}")
    return report.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", choices=("ari", "ami"), default="ari")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--cuts", type=int, default=8)
    parser.add_argument("--cut-min", type=float, default=1.0)
    parser.add_argument("--cut-max", type=float, default=5.0)
    parser.add_argument("--first-cut-after", type=float, default=None,
                        help="seconds from the last call placed to the first cut (default 0; AMI 20)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_faults.py needs root (the Asterisk sandbox)", file=sys.stderr)
        return 2
    scenario = load_scenario()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    prompts = prompts_cache_dir()
    generate_prompts(prompts)
    run_dir = Path(tempfile.mkdtemp(prefix="callproof-bench-faults-"))
    summaries = []
    with Sandbox(provision(), run_dir, dialplan_directory(), extra_dialplan=SANDBOX_AGENTS_DIALPLAN,
                 bind_paths=[prompts]) as sandbox:
        for n in range(args.runs):
            print(f"run {n + 1}/{args.runs}: {args.link} cut, seed {seed + n}", flush=True)
            summary = asyncio.run(run(args, sandbox, prompts, scenario, seed + n, n))
            print("  " + ", ".join(f"{k} {v}" for k, v in summary.items()), flush=True)
            summaries.append(summary)
    print(json.dumps({"bench": "faults", "link": args.link, "runs": summaries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
