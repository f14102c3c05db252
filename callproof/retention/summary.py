"""What a sweep did: the counters, and how the CLI prints them."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO


@dataclass
class SweepSummary:
    run_id: str = ""
    dry_run: bool = False
    expired: int = 0
    deleted: int = 0
    recovered: int = 0
    held: int = 0
    missing: int = 0
    errors: int = 0
    refused: int = 0
    bytes_freed: int = 0
    orphans: int = 0
    quarantined: int = 0
    symlinks: int = 0
    calls_anonymised: int = 0
    calls_held: int = 0
    exports_deleted: int = 0
    # crypto-shredding after the sweep ([encryption], docs/keys.md): period keys destroyed / kept
    keys_destroyed: int = 0
    keys_refused: int = 0
    key_outcomes: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:  # bounded: memory stays flat
            self.error_samples.append(text)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def print_summary(s: SweepSummary, out: TextIO | None = None) -> None:
    out = out if out is not None else sys.stdout
    verb = "would delete" if s.dry_run else "deleted"
    count = s.deleted if not s.dry_run else s.expired - s.held
    print(f"retention sweep{' (dry run)' if s.dry_run else ''}: {verb} {count}"
          f" recording(s), {s.bytes_freed} bytes freed; held {s.held}; missing {s.missing};"
          f" errors {s.errors} (refused {s.refused}); orphans {s.orphans}"
          f" (quarantined {s.quarantined}); symlinks {s.symlinks};"
          f" recovered {s.recovered}; call records anonymised {s.calls_anonymised}"
          f" (held {s.calls_held}); request exports deleted {s.exports_deleted}", file=out)
    for line in s.key_outcomes:
        print(f"  key {line}", file=out)
    for line in s.error_samples:
        print(f"  error: {line}", file=out)


def json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
