"""Which language the ops web page speaks, and its gettext catalogues.

The catalogues are Babel/gettext ones: ``locales/messages.pot`` extracted by ``pybabel
extract`` (``babel.cfg`` at the repository root) from the templates and from this package's
Python, and one ``locales/<locale>/LC_MESSAGES/messages.po`` per language
(docs/web.md says how to update them).  The ``.po`` files are what the wheel and the Debian
package ship: they are compiled to gettext catalogues in memory the first time a language
is used (a few milliseconds), so there is no build step that could ship a stale ``.mo``.

The language of a page: the account's preference (``web_users.locale``), else the browser's
``Accept-Language`` (q-values honoured; ``pt``/``pt-*`` -> pt_BR, ``es-*`` -> es,
``en-*`` -> en), else ``[web] default_locale``.
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

#: the languages shipped, the first being the one the page is written in
LOCALES = ("en", "pt_BR", "es")
#: how each language names itself (the account page's choices)
LOCALE_NAMES = {"en": "English", "pt_BR": "Português (Brasil)", "es": "Español"}
LOCALE_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$|^\*$")


def N_(message: str) -> str:
    """Marks a string for the catalogue without translating it (translated where shown)."""
    return message


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(locale: str) -> NullTranslations:
    """The catalogue of ``locale`` (English: the messages themselves)."""
    if locale not in LOCALES:
        raise ValueError(f"locale {locale!r}: one of {', '.join(LOCALES)}")
    if locale == LOCALES[0]:
        return NullTranslations()
    with po_path(locale).open("rb") as handle:
        catalog = read_po(handle, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def supported(tag: str) -> str | None:
    """The shipped locale for a language tag (``pt-BR``, ``pt``, ``es-419``, ``en_GB``), or None."""
    parts = tag.replace("_", "-").split("-")
    language = parts[0].lower()
    if language == "pt":
        return "pt_BR"  # the only Portuguese shipped: a pt-PT reader gets it before English
    if language in ("es", "en"):
        return language
    return None


def parse_accept_language(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (q=0 dropped,
    equal q keep their order, malformed entries ignored)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header[:1024].split(",")):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0 < q <= 1:
            weighted.append((-q, index, tag))
    return [tag for _q, _i, tag in sorted(weighted)]


def negotiate(account_locale: str | None, accept_language: str | None, default: str) -> str:
    """The page's locale: the account's, else the browser's first supported, else ``default``."""
    if account_locale in LOCALES:
        return account_locale
    for tag in parse_accept_language(accept_language):
        found = supported(tag)
        if found is not None:
            return found
    return default


def html_lang(locale: str) -> str:
    """``pt_BR`` -> ``pt-BR`` (BCP 47, for ``<html lang>``)."""
    return locale.replace("_", "-")
