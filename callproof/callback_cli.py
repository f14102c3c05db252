"""CLI: ``callproof callback ...`` (dropped-call call-backs)."""

from __future__ import annotations


def add_callback_commands(sub, load) -> None:
    """Register the call-back commands; ``load(args)`` returns the Config."""
