"""Checks shared by every section: message templates, durations, and the mode of the
configuration file itself.  Each failure is a ConfigError naming the key."""

from __future__ import annotations

import math
import re
import stat
import string
from collections.abc import Iterator, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from .errors import ConfigError

#: Keys whose value is a secret: a file that sets one must not be readable by others.
SECRET_KEYS = frozenset({"password", "identity_key", "link_secret", "api_token", "auth_header"})
DURATION_SUFFIXES = ("_seconds", "_ms", "_minutes", "_hours", "_days")


def check_template(key: str, template: str, values: Mapping[str, object]) -> str:
    """``template`` rendered with ``values``; ConfigError naming ``key`` and the field when a
    field is unknown, uses attribute or index access (``{company.nope}``, ``{company[0]}``),
    is positional, or nests a field in its format spec."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(key, f"cannot render: {exc}") from None
    names = ", ".join("{" + n + "}" for n in values)
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not root or root.isdigit():
            raise ConfigError(key, f"positional field {{{field}}}: name one of {names}")
        if root not in values:
            raise ConfigError(key, f"unknown field {{{field}}}: the fields are {names}")
        if field != root:
            raise ConfigError(key, f"field {{{field}}}: attribute and index access is not allowed,"
                                   f" write {{{root}}}")
        if spec and "{" in spec:
            raise ConfigError(key, f"field {{{field}}}: a field inside its format spec is not allowed")
    try:
        return template.format(**values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(key, f"cannot render: {exc}") from None


def _numbers(prefix: str, section: Any) -> Iterator[tuple[str, str, Any]]:
    for f in fields(section):
        value = getattr(section, f.name)
        if is_dataclass(value):
            yield from _numbers(f"{prefix}.{f.name}", value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield f"{prefix}.{f.name}", f.name, value


def check_numbers(config: Any) -> None:
    """Every number finite, and every duration (a key ending in ``_seconds``, ``_ms``,
    ``_minutes``, ``_hours``, ``_days``) not negative."""
    for f in fields(config):
        for key, name, value in _numbers(f.name, getattr(config, f.name)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(key, f"must be a finite number, got {value!r}")
            if name.endswith(DURATION_SUFFIXES) and value < 0:
                raise ConfigError(key, f"a duration cannot be negative, got {value!r}")


def _secret_keys(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for name, value in table.items():
        if isinstance(value, Mapping):
            yield from _secret_keys(value, f"{prefix}{name}.")
        elif name in SECRET_KEYS and value:
            yield f"{prefix}{name}"


def check_file_mode(path: object, mode: int, data: Mapping[str, Any]) -> None:
    """Refuse a world-writable configuration file, and a world-readable one that holds a
    secret.  Group read is allowed: the file is meant to be ``root:<service group> 0640``."""
    perms = stat.S_IMODE(mode)
    if perms & stat.S_IWOTH:
        raise ConfigError("config", f"{path} is writable by every user (mode {perms:04o}); "
                                    f"chmod o-w {path}")
    held = sorted(_secret_keys(data))
    if held and perms & stat.S_IROTH:
        raise ConfigError("config", f"{path} holds secrets ({', '.join(held)}) and is readable by every"
                                    f" user (mode {perms:04o}); chmod 0640 (or 0600) {path}, or move the"
                                    " secrets to the environment (secrets.env, 0600)")

