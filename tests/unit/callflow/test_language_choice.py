"""Which language a call starts in, and which menu its DID offers: the dialplan's
CALLPROOF_LANGUAGE, then [languages] by_did, then the channel language (when trusted),
then the default -- and what chose it, as the row will say."""

from __future__ import annotations

import pytest

from callproof.callflow.decisions import choose_language
from callproof.callflow.language_choice import LanguageSource, any_menu, menu_for
from callproof.callflow.port import CallFacts
from callproof.config import ConfigError
from callproof.prompts import PromptCatalogue
from tests.fakes.flow_config import flow_config

LANGS = '[general]\nlanguages = ["es", "ca", "eu", "gl", "en"]\ndefault_language = "es"\n'


def facts(*, asked="", dialled="34930000000", channel=None) -> CallFacts:
    return CallFacts(channel_id="1.1", dialled=dialled, linkedid="1.0", language=asked, channel_language=channel,
                     retention_class="", entry_context="callproof-entry")


@pytest.fixture
def cfg(tmp_path):
    return flow_config(tmp_path, LANGS + '''
[languages]
by_did = { "+34 930 000 000" = "ca", "34943000000" = "eu" }
menu = ["es", "ca"]
menu_by_did = { "34943000000" = "eu,es", "34910000000" = "" }
''')


@pytest.fixture
def catalogue(cfg, tmp_path):
    return PromptCatalogue(tmp_path, default_language="es", languages=cfg.general.languages)


def chosen(cfg, catalogue, **kw):
    c = choose_language(cfg, catalogue, facts(**kw))
    return c.language, c.source


def test_the_dialplan_wins_over_the_did(cfg, catalogue):
    assert chosen(cfg, catalogue, asked="eu") == ("eu", LanguageSource.DIALPLAN)
    assert chosen(cfg, catalogue, asked="EU") == ("eu", LanguageSource.DIALPLAN)


def test_a_dialplan_language_not_configured_falls_through_to_the_did(cfg, catalogue):
    assert chosen(cfg, catalogue, asked="fr") == ("ca", LanguageSource.DID)


def test_the_did_key_ignores_the_plus_and_separators(cfg, catalogue):
    assert chosen(cfg, catalogue, dialled="34930000000") == ("ca", LanguageSource.DID)
    assert chosen(cfg, catalogue, dialled="34943000000") == ("eu", LanguageSource.DID)


def test_the_channel_language_only_when_trusted(tmp_path, catalogue):
    untrusted = flow_config(tmp_path, LANGS)
    assert chosen(untrusted, catalogue, dialled="34999", channel="gl") == ("es", LanguageSource.DEFAULT)
    trusted = flow_config(tmp_path, LANGS.replace("[general]\n", "[general]\nuse_channel_language = true\n"))
    assert chosen(trusted, catalogue, dialled="34999", channel="gl") == ("gl", LanguageSource.CHANNEL)
    # the DID comes before the channel
    with_did = flow_config(tmp_path, LANGS.replace("[general]\n", "[general]\nuse_channel_language = true\n")
                           + '[languages]\nby_did = { "34930000000" = "ca" }\n')
    assert chosen(with_did, catalogue, dialled="34930000000", channel="gl") == ("ca", LanguageSource.DID)


def test_valencian_channel_tag_is_served_in_catalan(tmp_path, catalogue):
    trusted = flow_config(tmp_path, LANGS.replace("[general]\n", "[general]\nuse_channel_language = true\n"))
    assert chosen(trusted, catalogue, dialled="", channel="ca_valencia") == ("ca", LanguageSource.CHANNEL)


def test_nothing_known_is_the_default(cfg, catalogue):
    assert chosen(cfg, catalogue, dialled="") == ("es", LanguageSource.DEFAULT)


def test_menu_per_did_wins_over_the_global_one(cfg):
    assert menu_for(cfg, "34943000000") == ("eu", "es")
    assert menu_for(cfg, "34910000000") == ()  # "" switches it off on that DID
    assert menu_for(cfg, "34930000000") == ("es", "ca")
    assert any_menu(cfg)


def test_no_menu_by_default(tmp_path):
    cfg = flow_config(tmp_path)
    assert menu_for(cfg, "551130000000") == () and not any_menu(cfg)


@pytest.mark.parametrize("section, key", [
    ('[languages]\nby_did = { "34930000000" = "fr" }', "languages.by_did.34930000000"),
    ('[languages]\nby_did = { "93-OFFICE" = "ca" }', "languages.by_did.93-OFFICE"),
    ('[languages]\nby_did = { "+34930000000" = "ca", "34930000000" = "es" }', "languages.by_did.34930000000"),
    ('[languages]\nmenu = ["es", "fr"]', "languages.menu"),
    ('[languages]\nmenu = ["es"]', "languages.menu"),
    ('[languages]\nmenu = ["es", "es"]', "languages.menu"),
    ('[languages]\nmenu_by_did = { "34930000000" = "ca,xx" }', "languages.menu_by_did.34930000000"),
    ('[languages]\nmenu_timeout_seconds = 0', "languages.menu_timeout_seconds"),
    ('[languages]\nmenu_repeats = 9', "languages.menu_repeats"),
    ('[languages]\nmenus = ["es", "ca"]', "languages.menus"),
])
def test_bad_languages_config_names_the_key(tmp_path, section, key):
    with pytest.raises(ConfigError) as err:
        flow_config(tmp_path, LANGS + section)
    assert err.value.key == key, err.value
