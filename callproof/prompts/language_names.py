"""The languages a configuration names explicitly, beyond its list of languages: the default
one and those of the ``[languages]`` rules and menus (a DID's language, a menu's options).
A language named there is wanted, so its prompts are required even when a jurisdiction
profile only offers it where installed (callproof/prompts/startup.py)."""

from __future__ import annotations

from typing import Any

from callproof.config.language_rules import menu_languages


def explicitly_named(config: Any) -> frozenset[str]:
    rules = config.languages
    named = {config.general.default_language, *rules.by_did.values(), *rules.menu}
    for text in rules.menu_by_did.values():
        named.update(menu_languages(text))
    return frozenset(named)
