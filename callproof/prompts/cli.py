"""``python -m callproof.prompts DEST``: generate the default prompts from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .generator import EspeakNotFoundError, generate_prompts
from .texts import LANGUAGES


def print_recordings_needed(result: dict[str, Any]) -> None:
    """One line per prompt that must be a recording (a language espeak-ng cannot speak),
    on stderr: the file to record and the text to read.  Not an error: the other
    languages were generated; a configured language still missing its files stops
    ``callproof run`` at start-up (callproof/prompts/startup.py)."""
    needed = result.get("recordings_needed") or []
    for item in needed:
        print(f"recording needed: {item.describe()}", file=sys.stderr)
    if needed:
        print(f"{len(needed)} prompt(s) must be recorded (see docs/prompts.md#recording-a-language)",
              file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callproof.prompts",
        description="Generate the default callproof prompts (8 kHz mono 16-bit WAV) with espeak-ng.",
    )
    parser.add_argument("dest", type=Path, help="prompts directory (custom/ inside it is never touched)")
    parser.add_argument(
        "--languages", default=",".join(LANGUAGES), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument("--pause-ms", type=int, default=400, help="silence between digit groups (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="regenerate files that already exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    try:
        started = time.monotonic()
        result = generate_prompts(args.dest, languages, pause_ms=args.pause_ms, force=args.force)
    except (EspeakNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{len(result['created'])} created, {len(result['kept'])} kept in {args.dest} "
        f"({time.monotonic() - started:.2f}s)"
    )
    print_recordings_needed(result)
    return 0

