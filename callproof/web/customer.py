"""The language of the customer's download link (``/d/<token>``): the call's, as the e-mail
that carried the link (``calls.language`` when it is one of ``[general] languages``), else the
browser's ``Accept-Language`` among the customer's languages (pt_BR, es, en, ca, eu, gl), else
``[general] default_language``.  Its words are in callproof/rights/texts.py with the e-mail's
and the history's: the ops page's catalogues speak only en, pt_BR and es (docs/web.md)."""

from __future__ import annotations

from callproof.config import Config
from callproof.rights.texts import LANGUAGES, LINK_TEXTS

from .i18n import parse_accept_language


def from_browser(tag: str) -> str | None:
    """The customer language of a language tag (``ca-ES-valencia`` -> ca, ``pt-PT`` -> pt_BR)."""
    language = tag.replace("_", "-").split("-")[0].lower()
    if language == "pt":
        return "pt_BR"
    return language if language in LANGUAGES else None


def link_language(config: Config, call_language: str | None, accept_language: str | None) -> str:
    if call_language in config.general.languages and call_language in LANGUAGES:
        return call_language
    for tag in parse_accept_language(accept_language):
        found = from_browser(tag)
        if found is not None:
            return found
    default = config.general.default_language
    return default if default in LANGUAGES else "en"


def link_text(language: str, key: str) -> str:
    return LINK_TEXTS.get(language, LINK_TEXTS["en"])[key]


def html_lang(language: str) -> str:
    return language.replace("_", "-")
