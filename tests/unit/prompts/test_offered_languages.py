"""Jurisdiction ``es`` offers Spain's co-official languages (ca, eu, gl) where their prompts
are installed: ``callproof run`` and ``callproof fastagi`` leave out one whose files are
missing, saying so, instead of refusing to start; a language named explicitly (in
``general.languages``, as the default, in a ``[languages]`` rule or menu) is still required."""

from __future__ import annotations

import pytest

from callproof.cli import _prompts_or_exit
from callproof.cli import main as callproof_main
from callproof.config import load_config_and_sources
from callproof.prompts import PromptCatalogue
from callproof.prompts.startup import leave_out_uninstalled
from tests.fakes.flow_config import write_flow_config
from tests.unit.prompts.test_spain_languages import write_wav


def install(prompts, language: str, *, digits: bool) -> None:
    for name in ("consent", "protocol-is"):
        write_wav(prompts / language / f"{name}.wav")
    if digits:
        for d in range(10):
            write_wav(prompts / language / "digits" / f"{d}.wav")


@pytest.fixture
def prompts(tmp_path):
    """es and en (their digits are Asterisk's) and Catalan installed; Basque and Galician not."""
    root = tmp_path / "prompts"
    install(root, "es", digits=False)
    install(root, "en", digits=False)
    install(root, "ca", digits=True)
    return root


def load(tmp_path, prompts, extra: str = ""):
    path = write_flow_config(tmp_path, f'[general]\njurisdiction = "es"\n{extra}\n[prompts]\ndirectory = "{prompts}"\n')
    return load_config_and_sources(path, env={})


def test_the_profile_offers_every_co_official_language_to_the_other_commands(tmp_path, prompts):
    config, sources = load(tmp_path, prompts)
    assert config.general.languages == ("es", "en", "ca", "eu", "gl")  # the web page, the rights commands
    assert "general.languages" in sources.from_profile


def test_start_up_leaves_out_the_languages_without_prompts_and_says_so(tmp_path, prompts, capsys):
    config, sources = load(tmp_path, prompts)
    served = _prompts_or_exit(config, sources)
    assert served.general.languages == ("es", "en", "ca")  # Catalan is installed: offered
    err = capsys.readouterr().err
    assert "jurisdiction 'es': eu is not offered: its prompt files are missing (eu/consent.wav and 11 more)" in err
    assert "gl is not offered" in err and "record custom/gl/" in err
    assert "ca is not offered" not in err


def test_once_installed_a_language_is_offered(tmp_path, prompts, capsys):
    install(prompts, "eu", digits=True)
    config, sources = load(tmp_path, prompts)
    assert _prompts_or_exit(config, sources).general.languages == ("es", "en", "ca", "eu")
    assert "eu is not offered" not in capsys.readouterr().err


@pytest.mark.parametrize("extra", [
    'languages = ["es", "gl"]',  # general.languages set: the profile's list is not used
    '[languages]\nby_did = { "+34981000000" = "gl" }',  # a DID served in Galician
    '[languages]\nmenu = ["es", "gl"]',  # a menu offering it
])
def test_a_language_named_explicitly_is_required(tmp_path, prompts, capsys, extra):
    config, sources = load(tmp_path, prompts, extra)
    with pytest.raises(SystemExit) as stopped:
        _prompts_or_exit(config, sources)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "prompt files missing for configured language(s) --" in err and "gl: gl/consent.wav" in err


def test_leave_out_uninstalled_never_drops_the_default_language(tmp_path, prompts):
    config, _ = load(tmp_path, prompts, 'default_language = "gl"')
    catalogue = PromptCatalogue(prompts, default_language="gl", languages=config.general.languages)
    served, left_out = leave_out_uninstalled(config, catalogue, ("ca", "eu", "gl"), with_menu=False)
    assert list(left_out) == ["eu"] and served.general.languages == ("es", "en", "ca", "gl")


@pytest.mark.parametrize("command", ["run", "fastagi"])
def test_run_and_fastagi_get_past_the_prompt_check(tmp_path, prompts, capsys, monkeypatch, command):
    """The real commands: what stops them here is the sentinel after the check, not the check."""
    import callproof.cli as cli

    class Started(Exception):
        pass

    def started(*_args, **_kwargs):
        raise Started

    monkeypatch.setattr(cli, "setup_logging", started)
    path = write_flow_config(tmp_path, f'[general]\njurisdiction = "es"\n[prompts]\ndirectory = "{prompts}"\n')
    with pytest.raises(Started):
        callproof_main(["--config", str(path), command])
    assert "gl is not offered" in capsys.readouterr().err
