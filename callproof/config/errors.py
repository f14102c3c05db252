"""The one exception a bad configuration raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid or missing configuration; the message names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
