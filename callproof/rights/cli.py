"""CLI: ``callproof lookup``, ``callproof request ...``, ``callproof history``."""

from __future__ import annotations


def add_rights_commands(sub, load) -> None:
    """Register the customer-rights commands; ``load(args)`` returns the Config."""
