"""A check's result and the report: one line each, the fix on the same line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

OK, WARN, FAIL = "OK", "WARN", "FAIL"

#: Exit statuses of ``callproof doctor`` (docs/operations.md).
EXIT_OK, EXIT_FAIL, EXIT_WARN = 0, 1, 2


@dataclass(frozen=True)
class Result:
    check: str  # short name, e.g. "ari-login"
    status: str  # OK, WARN or FAIL
    detail: str  # what was found
    fix: str = ""  # what to do about it (WARN and FAIL)

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check:<14} {self.detail}"
        return f"{text} -- fix: {self.fix}" if self.fix and self.status != OK else text


def ok(check: str, detail: str) -> Result:
    return Result(check, OK, detail)


def warn(check: str, detail: str, fix: str) -> Result:
    return Result(check, WARN, detail, fix)


def fail(check: str, detail: str, fix: str) -> Result:
    return Result(check, FAIL, detail, fix)


def exit_status(results: Iterable[Result]) -> int:
    """0 when every check is OK, 1 when one FAILed, 2 when there are only WARNings."""
    statuses = {r.status for r in results}
    if FAIL in statuses:
        return EXIT_FAIL
    return EXIT_WARN if WARN in statuses else EXIT_OK


def print_report(results: list[Result], out: TextIO) -> int:
    for result in results:
        print(result.line(), file=out)
    counts = {s: sum(r.status == s for r in results) for s in (OK, WARN, FAIL)}
    status = exit_status(results)
    print(f"doctor: {counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL (exit {status})", file=out)
    return status
