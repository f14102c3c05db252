"""Monotonic milestones of one call, for logs, the demo and the benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class CallTimings:
    """``marks``: seconds (monotonic) by milestone name; ``asterisk``: Asterisk's own
    timestamps of key events where the transport reports them (ISO strings)."""

    marks: dict[str, float] = field(default_factory=dict)
    asterisk: dict[str, str] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        """The first time ``name`` happened."""
        self.marks.setdefault(name, time.monotonic())

    def mark_again(self, name: str) -> None:
        """The last time ``name`` happened (e.g. the last reading finished)."""
        self.marks[name] = time.monotonic()

    def relative_ms(self) -> dict[str, float]:
        start = self.marks.get("stasis_start", 0.0)
        return {f"{k}_ms": round((v - start) * 1000, 1) for k, v in self.marks.items() if k != "stasis_start"}

    def between_ms(self, start: str, end: str) -> float | None:
        if start in self.marks and end in self.marks:
            return round((self.marks[end] - self.marks[start]) * 1000, 1)
        return None
