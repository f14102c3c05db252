"""The rules of ``[languages]``: every language named is a configured one, every DID key
is a number, the menu's timing is sane.  Also how a DID key is compared with the
dialled number (:func:`did_key`), shared with the flow's language choice."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ConfigError
from .sections import LanguagesConfig

#: Keys 1..9: a menu offers at most nine languages.
MAX_MENU_OPTIONS = 9
_SEPARATORS = re.compile(r"[\s().\-/]")


def did_key(number: str) -> str:
    """A DID as compared: its digits, without a leading ``+`` or separators
    (``"+34 930 000 000"`` -> ``"34930000000"``), as the shipped dialplan passes it."""
    return _SEPARATORS.sub("", number.strip()).removeprefix("+")


def menu_languages(text: str) -> tuple[str, ...]:
    """``"es, ca"`` -> ``("es", "ca")`` (a ``menu_by_did`` value)."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _check_did(key: str, did: str) -> None:
    if not did_key(did).isdigit() or not did_key(did).isascii():
        raise ConfigError(key, f"{did!r} is not a dialled number (digits, an optional leading +)")


def _check_menu(key: str, menu: Iterable[str], languages: tuple[str, ...]) -> None:
    menu = tuple(menu)
    for lang in menu:
        if lang not in languages:
            raise ConfigError(key, f"{lang!r} is not in general.languages")
    if len(set(menu)) != len(menu):
        raise ConfigError(key, "a language is offered twice")
    if len(menu) == 1:
        raise ConfigError(key, "a menu offers at least two languages (or none)")
    if len(menu) > MAX_MENU_OPTIONS:
        raise ConfigError(key, f"at most {MAX_MENU_OPTIONS} languages (keys 1 to 9)")


def validate_languages(c: LanguagesConfig, languages: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}
    for did, lang in c.by_did.items():
        key = f"languages.by_did.{did}"
        _check_did(key, did)
        if lang not in languages:
            raise ConfigError(key, f"{lang!r} is not in general.languages")
        if did_key(did) in seen:
            raise ConfigError(key, f"the same number as {seen[did_key(did)]!r}")
        seen[did_key(did)] = did
    _check_menu("languages.menu", c.menu, languages)
    for did, text in c.menu_by_did.items():
        key = f"languages.menu_by_did.{did}"
        _check_did(key, did)
        _check_menu(key, menu_languages(text), languages)
    if not 1 <= c.menu_timeout_seconds <= 30:
        raise ConfigError("languages.menu_timeout_seconds", "must be between 1 and 30")
    if not 0 <= c.menu_repeats <= 5:
        raise ConfigError("languages.menu_repeats", "must be between 0 and 5")
