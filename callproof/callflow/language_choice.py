"""Which language a call is served in, and which languages its menu offers.

The order (docs/prompts.md#languages): the dialplan's ``CALLPROOF_LANGUAGE``, then
``[languages] by_did`` on the dialled number, then the channel's language when
``[general] use_channel_language`` trusts it, then ``[general] default_language``.  The
announcement is always played in that language; the menu after it
(:mod:`.language_menu`) may change it.  Pure functions of the configuration and the
call's facts; what was used is stored on the row (``calls.language_source``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callproof.config import Config
from callproof.config.language_rules import did_key, menu_languages
from callproof.prompts import PromptCatalogue


class LanguageSource(StrEnum):
    """How a call's language was chosen (``calls.language_source``, migration 0015)."""

    DIALPLAN = "dialplan"
    DID = "did"
    MENU = "menu"
    CHANNEL = "channel"
    DEFAULT = "default"


@dataclass(frozen=True)
class LanguageChoice:
    language: str
    source: LanguageSource


def _by_did(table: dict[str, str] | object, dialled: str) -> str | None:
    if not dialled or not isinstance(table, dict):
        return None
    wanted = did_key(dialled)
    for did, value in table.items():
        if did_key(did) == wanted:
            return str(value)
    return None


def choose_language(config: Config, prompts: PromptCatalogue, *, asked: str | None, dialled: str,
                    channel_language: str | None) -> LanguageChoice:
    """The call's first language and where it came from.  A dialplan value that names no
    configured language (``fr`` where only pt_BR, es and en are) is passed over, not
    taken for the default: the next rule decides."""
    found = prompts.match_language(asked)
    if found:
        return LanguageChoice(found, LanguageSource.DIALPLAN)
    found = prompts.match_language(_by_did(dict(config.languages.by_did), dialled))
    if found:
        return LanguageChoice(found, LanguageSource.DID)
    if config.general.use_channel_language:
        found = prompts.match_language(channel_language)
        if found:
            return LanguageChoice(found, LanguageSource.CHANNEL)
    return LanguageChoice(prompts.default_language, LanguageSource.DEFAULT)


def menu_for(config: Config, dialled: str) -> tuple[str, ...]:
    """The languages the menu offers on this DID (key 1 is the first); () = no menu."""
    per_did = _by_did(dict(config.languages.menu_by_did), dialled)
    if per_did is not None:
        return menu_languages(per_did)
    return tuple(config.languages.menu)


def any_menu(config: Config) -> bool:
    """Some DID (or every one) gets a menu: its prompts must exist in every language."""
    return bool(config.languages.menu) or any(menu_languages(v) for v in config.languages.menu_by_did.values())
