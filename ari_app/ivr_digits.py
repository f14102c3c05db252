"""The keys a caller presses to type a protocol in the request IVR
(:mod:`callproof.ari_app.ivr_request`): pure logic, no I/O."""

from __future__ import annotations

from typing import Any

PROTOCOL_DIGITS = 17
DIGITS = frozenset("0123456789")


class DigitEntry:
    """The keys of one protocol entry.  Pure: no I/O, unit-tested on its own.

    Only ASCII ``0``-``9`` are kept (at most one more than a protocol has, so a
    long entry is known to be too long without storing it); ``#`` finishes,
    ``*`` asks to start again, every other key is ignored."""

    def __init__(self) -> None:
        self._digits: list[str] = []
        self.count = 0  # digits pressed, including those beyond what is kept

    def press(self, key: Any) -> str:
        """``'digit'``, ``'finish'``, ``'restart'`` or ``'ignored'``."""
        if not isinstance(key, str) or len(key) != 1:
            return "ignored"
        if key in DIGITS:
            self.count += 1
            if len(self._digits) <= PROTOCOL_DIGITS:
                self._digits.append(key)
            return "digit"
        if key == "#":
            return "finish"
        if key == "*":
            return "restart"
        return "ignored"

    def problem(self) -> str | None:
        """None for a protocol-shaped entry, else ``no_digits`` / ``wrong_length``."""
        if self.count == 0:
            return "no_digits"
        if self.count != PROTOCOL_DIGITS:
            return "wrong_length"
        return None

    @property
    def protocol(self) -> str:
        """The 17 digits; ValueError unless :meth:`problem` is None."""
        if self.problem() is not None:
            raise ValueError(f"not a protocol entry ({self.problem()})")
        return "".join(self._digits)
