"""The page's language: negotiation (account, Accept-Language with q-values, default), the
formats of dates and numbers per locale, and catalogues complete and up to date."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callproof.config.validation import WEB_LOCALES
from callproof.storage import webauth
from callproof.web.i18n import LOCALES, html_lang, negotiate, parse_accept_language, supported, translations
from callproof.web.labels import STATUS_NAMES, status_label
from callproof.web.localefmt import LocaleFormat

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
MOMENT = "2026-11-22T21:30:04.123456+00:00"  # 18:30:04 in São Paulo (-03)


def test_the_three_lists_of_locales_agree():
    assert LOCALES == WEB_LOCALES == webauth.LOCALES == ("en", "pt_BR", "es")


@pytest.mark.parametrize(("header", "wanted"), [
    ("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", ["pt-BR", "pt", "en-US", "en"]),
    ("en;q=0.3, es-ES;q=0.9, pt", ["pt", "es-ES", "en"]),  # q=1 by default, then by weight
    ("es;q=0, en", ["en"]),  # q=0: "not this one"
    ("fr;q=0.5, de;q=0.5", ["fr", "de"]),  # equal weights keep their order
    ("en;q=abc, pt;q=2, ;;, *", ["*"]),  # malformed weights and empty entries are ignored
    ("", []),
    (None, []),
])
def test_accept_language_is_read_with_its_q_values(header, wanted):
    assert parse_accept_language(header) == wanted


@pytest.mark.parametrize(("tag", "locale"), [
    ("pt", "pt_BR"), ("pt-BR", "pt_BR"), ("pt-PT", "pt_BR"), ("PT_br", "pt_BR"),
    ("es", "es"), ("es-419", "es"), ("es-ES", "es"), ("es-MX", "es"),
    ("en", "en"), ("en-GB", "en"), ("fr", None), ("*", None), ("ca", None),
])
def test_language_tags_map_to_the_shipped_locales(tag, locale):
    assert supported(tag) == locale


@pytest.mark.parametrize(("account", "header", "default", "locale"), [
    (None, "pt-BR,pt;q=0.9,en;q=0.8", "en", "pt_BR"),
    (None, "fr, en;q=0.2, es-MX;q=0.5", "en", "es"),  # the first *supported* by weight
    (None, "en;q=0.1, pt;q=0.2", "es", "pt_BR"),
    (None, "fr, de", "es", "es"),  # nothing shipped: the configured default
    (None, None, "pt_BR", "pt_BR"),
    ("es", "pt-BR", "en", "es"),  # the account's choice wins over the browser
    ("xx", "pt-BR", "en", "pt_BR"),  # a value not shipped is ignored
])
def test_negotiation_order_is_account_then_browser_then_default(account, header, default, locale):
    assert negotiate(account, header, default) == locale


def test_html_lang_is_bcp47():
    assert [html_lang(code) for code in LOCALES] == ["en", "pt-BR", "es"]


# -- formats -------------------------------------------------------------------------

def test_times_are_in_the_deployments_zone_in_each_locales_format_and_keep_the_exact_value():
    pt, es, en = (LocaleFormat(code, SAO_PAULO) for code in ("pt_BR", "es", "en"))
    assert pt.datetime_text(MOMENT) == "22/11/2026 18:30:04 -03"
    assert es.datetime_text(MOMENT) == "22/11/2026, 18:30:04 -03"
    assert en.datetime_text(MOMENT).replace("\u202f", " ") == "11/22/2026, 6:30:04 PM -03"
    assert str(pt.moment(MOMENT)) == f'<time datetime="{MOMENT}">22/11/2026 18:30:04 -03</time>'
    assert str(pt.moment(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))).startswith(
        '<time datetime="2026-01-02T03:04:05+00:00">02/01/2026 00:04:05')
    assert pt.date_text(MOMENT) == "22/11/2026" and en.date_text(MOMENT) == "11/22/2026"
    assert str(pt.moment(None)) == "" and str(pt.moment("")) == ""


def test_counts_percentages_and_durations_follow_the_locale():
    pt, es, en = (LocaleFormat(code, SAO_PAULO) for code in ("pt_BR", "es", "en"))
    assert str(pt.number(1234567)) == '<data value="1234567">1.234.567</data>'
    assert en.number_text(1234567) == "1,234,567" and es.number_text(1234567) == "1.234.567"
    assert str(pt.percent(0.9531)) == '<data value="0.9531">95,3%</data>'
    assert en.percent(0.9531).striptags() == "95.3%" and str(es.percent(0.5, 0)) == "<data value=\"0.5\">50\xa0%</data>"
    assert str(pt.seconds(42.5, 1)) == '<data value="42.5">42,5 s</data>'
    assert en.seconds(42.5, 1).striptags() == "42.5 sec"
    assert pt.days(3).striptags() == "3 dias" and en.days(1).striptags() == "1 day"
    assert str(pt.number(None)) == str(pt.seconds(None)) == str(pt.days(None)) == ""


# -- status names -----------------------------------------------------------------------

def test_stored_values_keep_their_value_and_get_a_translated_name():
    pt = translations("pt_BR").gettext
    es = translations("es").gettext
    assert status_label(pt, "needs_identity_check") == "aguarda confirmação de identidade"
    assert status_label(es, "completed") == "completada"
    assert status_label(pt, "operator") == "operador"
    assert status_label(pt, "some_future_state") == "some_future_state"  # unknown: shown as stored
    assert status_label(pt, None) == ""
    assert all(status_label(translations("en").gettext, v) == STATUS_NAMES[v] for v in STATUS_NAMES)


def test_an_unknown_locale_is_refused_by_name():
    with pytest.raises(ValueError, match="'fr'"):
        translations("fr")
