"""Spain's co-official languages: every prompt the flow and the request IVR play has a
text in every language, every SMS text exists in them, Galician (no espeak-ng voice) is
listed as recordings to make without stopping the other languages, and a configured
language without its files stops the service at start-up naming them."""

from __future__ import annotations

import shutil
import wave
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callproof.cli import main as callproof_main
from callproof.config import Config
from callproof.prompts import (
    CALL_PROMPTS,
    DEFAULT_CORE_DIGITS,
    DIGIT_WORDS,
    ESPEAK_VOICES,
    MENU_PROMPTS,
    PROMPT_TEXTS,
    REQUEST_PROMPTS,
    SUPPORTED_LANGUAGES,
    MissingPromptsError,
    PromptCatalogue,
    generate_prompts,
    missing_prompts,
    require_prompts,
)
from callproof.rights.codes import CODE_TEXTS, NOTICE_TEXTS
from callproof.sms.text import render_sms

EVERY_PROMPT = (*CALL_PROMPTS, *MENU_PROMPTS, *REQUEST_PROMPTS)


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_prompt_has_a_text_in_every_language(language):
    assert set(PROMPT_TEXTS[language]) == set(EVERY_PROMPT)
    assert all(PROMPT_TEXTS[language][name].strip() for name in EVERY_PROMPT)
    if language not in DEFAULT_CORE_DIGITS:  # no Asterisk digits: ours, ten of them
        assert len(DIGIT_WORDS[language]) == 10


@pytest.mark.parametrize("language, words", [
    ("ca", ("enregistrant", "protocol", "premeu")), ("eu", ("grabatzen", "protokolo", "sakatu")),
    ("gl", ("gravada", "protocolo", "prema"))])
def test_the_texts_are_in_the_language(language, words):
    said = " ".join(PROMPT_TEXTS[language].values()).lower()
    assert all(w in said for w in words)
    assert PROMPT_TEXTS[language]["consent"] != PROMPT_TEXTS["es"]["consent"]


def test_espeak_speaks_catalan_and_basque_not_galician():
    assert ESPEAK_VOICES["ca"] == "ca" and ESPEAK_VOICES["eu"] == "eu" and ESPEAK_VOICES["gl"] is None


@pytest.mark.parametrize("language, expected", [
    ("ca", "Ajuntament: protocol d'atencio 20260000000000042 el 02/12/2026 10:15."),
    ("eu", "Ajuntament: arreta-protokoloa 20260000000000042, 2026/12/02 10:15."),
    ("gl", "Ajuntament: protocolo de atencion 20260000000000042 o 02/12/2026 10:15.")])
def test_protocol_sms_in_each_language(language, expected):
    templates = Config().sms.templates
    body = render_sms(templates, language, company="Ajuntament", protocol="20260000000000042",
                      call_started=datetime(2026, 12, 2, 9, 15, tzinfo=UTC), tz=ZoneInfo("Europe/Madrid"))
    assert body == expected and body.isascii()  # GSM-7: one SMS part


@pytest.mark.parametrize("language", ("ca", "eu", "gl"))
def test_every_sms_text_exists_and_is_plain_gsm(language):
    texts = [Config().sms.templates[language], Config().rights.sms_link_templates[language],
             CODE_TEXTS[language], NOTICE_TEXTS[language]]
    assert all(t.isascii() and "{protocol}" in t for t in texts)


def test_galician_generation_lists_each_recording_and_the_others_are_made(tmp_path, monkeypatch):
    dest = tmp_path / "prompts"
    # espeak-ng is not needed for gl; only the pause is rendered (pydub)
    result = generate_prompts(dest, ["gl"])
    needed = {n.name: n for n in result["recordings_needed"]}
    assert set(needed) == {*EVERY_PROMPT, *(f"digits/{d}" for d in range(10))}
    consent = needed["consent"]
    assert consent.path == dest / "custom" / "gl" / "consent.wav"
    line = consent.describe()
    assert "espeak-ng has no gl voice" in line and str(consent.path) in line
    assert PROMPT_TEXTS["gl"]["consent"] in line
    assert not (dest / "gl").exists()
    # a recording in place is no longer asked for
    write_wav(dest / "custom" / "gl" / "consent.wav")
    assert "consent" not in {n.name for n in generate_prompts(dest, ["gl"])["recordings_needed"]}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_prompts_generate_makes_basque_and_names_the_galician_recordings(tmp_path, capsys):
    dest = tmp_path / "p"
    assert callproof_main(["prompts", "generate", "--dest", str(dest), "--languages", "eu,gl"]) == 0
    out, err = capsys.readouterr()
    assert (dest / "eu" / "consent.wav").is_file() and (dest / "eu" / "digits" / "9.wav").is_file()
    assert (dest / "eu" / "language-option.wav").is_file()
    assert f"recording needed: gl/consent: espeak-ng has no gl voice; record it as {dest}/custom/gl/consent.wav" in err
    assert "gl/digits/7" in err and "must be recorded" in err
    assert "languages eu, gl" in out


def write_wav(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return path


def test_start_up_names_the_language_and_its_missing_files(tmp_path):
    for name in ("consent", "protocol-is"):
        write_wav(tmp_path / "ca" / f"{name}.wav")
    for d in range(10):
        write_wav(tmp_path / "ca" / "digits" / f"{d}.wav")
    write_wav(tmp_path / "gl" / "consent.wav")
    catalogue = PromptCatalogue(tmp_path, default_language="ca", languages=("ca", "gl", "es"))
    missing = missing_prompts(catalogue, with_menu=False)
    assert list(missing) == ["gl", "es"]
    assert missing["es"] == ["es/consent.wav", "es/protocol-is.wav"]  # its digits are Asterisk's: not ours
    with pytest.raises(MissingPromptsError) as err:
        require_prompts(PromptCatalogue(tmp_path, default_language="ca", languages=("ca", "gl")), with_menu=True)
    text = str(err.value)
    assert "gl: gl/protocol-is.wav" in text and "gl/digits/0.wav" in text
    assert "ca: ca/language-option.wav, ca/language-invalid.wav" in text


def test_start_up_reads_every_configured_language(tmp_path):
    catalogue = PromptCatalogue(tmp_path, default_language="es", languages=("es",))
    assert missing_prompts(catalogue, with_menu=False) == {"es": ["es/consent.wav", "es/protocol-is.wav"]}


@pytest.mark.parametrize("command", ["run", "fastagi"])
def test_callproof_run_and_fastagi_stop_at_start_up_naming_the_missing_prompts(tmp_path, capsys, command):
    from tests.fakes.flow_config import write_flow_config

    prompts = tmp_path / "prompts"
    for name in ("consent", "protocol-is"):
        write_wav(prompts / "es" / f"{name}.wav")
    config = write_flow_config(tmp_path, f'''
[general]
languages = ["es", "gl"]
default_language = "es"
[prompts]
directory = "{prompts}"
''')
    with pytest.raises(SystemExit) as stopped:
        callproof_main(["--config", str(config), command])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "prompt files missing for configured language(s) -- gl: gl/consent.wav, gl/protocol-is.wav" in err
    assert "es:" not in err  # es is complete (its digits are Asterisk's)
