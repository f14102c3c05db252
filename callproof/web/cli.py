"""CLI: ``callproof web`` (serve the ops page) and ``callproof web-user ...``."""

from __future__ import annotations


def add_web_commands(sub, load) -> None:
    """Register the web commands; ``load(args)`` returns the Config."""
