"""The catalogues are complete and up to date: every string the templates and the web
package's Python mark (``{% trans %}``, ``_()``, ``N_()``) is in messages.pot as extracted by
``pybabel extract -F babel.cfg``, and translated, unfuzzy, with the same placeholders, in
pt_BR and es.  A new template string without its translations fails here, naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from callproof.web.i18n import LOCALE_DIR, LOCALES, po_path

REPO = Path(__file__).resolve().parents[3]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2), "N_": None}
# names, not words: the same in every language
NAMES = frozenset({"callproof", "sha", "SMS", "PDF", "CSV", "JSON"})  # names, the same in every language
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")


def _extracted() -> set[str | tuple[str, ...]]:
    with (REPO / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, context in extract_from_dir(
            str(REPO), method_map, options_map, keywords=KEYWORDS):
        msgid = message if isinstance(message, str) else tuple(message)
        found.add((context, msgid) if context else msgid)  # type: ignore[arg-type]
    return found


def _ids(path: Path) -> dict[str | tuple[str, ...], object]:
    with path.open("rb") as handle:
        catalog = read_po(handle)
    ids: dict[str | tuple[str, ...], object] = {}
    for m in catalog:
        if m.id:
            msgid = m.id if isinstance(m.id, str) else tuple(m.id)
            ids[(m.context, msgid) if m.context else msgid] = m  # type: ignore[index]
    return ids


def test_the_template_is_what_pybabel_extracts_now():
    extracted, pot = _extracted(), set(_ids(LOCALE_DIR / "messages.pot"))
    assert extracted, "nothing extracted: babel.cfg no longer matches the web package"
    missing, stale = sorted(map(str, extracted - pot)), sorted(map(str, pot - extracted))
    assert not missing and not stale, (
        f"messages.pot is out of date (new: {missing}; gone: {stale}); run the pybabel extract and "
        "update commands in docs/web.md, then translate the new entries")


@pytest.mark.parametrize("locale", [code for code in LOCALES if code != "en"])
def test_every_message_is_translated(locale):
    pot, po = _ids(LOCALE_DIR / "messages.pot"), _ids(po_path(locale))
    untranslated = []
    for msgid in pot:
        message = po.get(msgid)
        strings = () if message is None else (
            message.string if isinstance(message.string, tuple) else (message.string,))  # type: ignore[attr-defined]
        if message is None or not all(strings) or message.fuzzy:  # type: ignore[attr-defined]
            untranslated.append(msgid)
            continue
        wanted = set(PLACEHOLDER.findall(msgid if isinstance(msgid, str) else msgid[-1]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == wanted, (locale, msgid, text)
    assert untranslated == [], f"{locale}: no translation for {untranslated}"
    assert set(po) <= set(pot), f"{locale}: entries no longer in the template: {sorted(map(str, set(po) - set(pot)))}"


def test_templates_have_no_bare_english_text():
    """Between tags, a template holds only expressions, translated strings, or no letters at
    all: a heading or label typed without _() would be English on every page."""
    offenders = []
    for template in sorted((REPO / "callproof" / "web" / "templates").glob("*.html")):
        text = re.sub(r"{%\s*trans\b.*?{%\s*endtrans\s*%}", "", template.read_text(), flags=re.S)
        text = re.sub(r"{[{%#].*?[}%#]}", "", text, flags=re.S)  # expressions and statements
        text = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S)
        for chunk in re.findall(r">([^<]+)<", text):
            words = [w for w in re.findall(r"[A-Za-z]{2,}", chunk) if w not in NAMES]
            if words:
                offenders.append((template.name, chunk.strip()))
    assert offenders == []


def test_the_catalogues_ship_in_the_wheel_and_the_deb():
    """The .po files are loaded at start (no .mo build step): pyproject's package data must
    carry every one of them, or an installed page would quietly fall back to English."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["callproof.web"]
    web = REPO / "callproof" / "web"
    files = [p.relative_to(web).as_posix() for p in LOCALE_DIR.rglob("*") if p.suffix in (".po", ".pot")]
    assert len(files) == len(LOCALES)  # the template and one catalogue per translated language
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), (files, globs)
