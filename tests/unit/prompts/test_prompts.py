"""Tests for callproof.prompts: generation (needs espeak-ng) and the catalogue."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import wave
from pathlib import Path

import pytest

from callproof.prompts import (
    MENU_PROMPTS,
    REQUEST_PROMPTS,
    EspeakNotFoundError,
    Prompt,
    PromptCatalogue,
    PromptNotFoundError,
    generate_prompts,
    group_digits,
    main,
)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (Debian package espeak-ng)"
)

LANGS = ("pt_BR", "es", "en")
PROTOCOL = "20260000000000042"


def wav_info(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as w:
        assert w.getcomptype() == "NONE"
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes() / w.getframerate()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_wav(path: Path, ms: int = 100, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = 8 * ms
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(value.to_bytes(2, "little", signed=True) * frames)
    return path


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (Debian package espeak-ng)")
    dest = tmp_path_factory.mktemp("prompts")
    result = generate_prompts(dest)
    return dest, result


def expected_relpaths() -> set[str]:
    rels = {"pause.wav"}
    for lang in LANGS:
        rels |= {f"{lang}/consent.wav", f"{lang}/protocol-is.wav"}
        rels |= {f"{lang}/{name}.wav" for name in (*REQUEST_PROMPTS, *MENU_PROMPTS)}
    rels |= {f"pt_BR/digits/{d}.wav" for d in range(10)}
    return rels


@needs_espeak
def test_generates_expected_files(generated):
    dest, result = generated
    assert set(result["created"]) == expected_relpaths()
    assert result["kept"] == []
    on_disk = {p.relative_to(dest).as_posix() for p in dest.rglob("*.wav")}
    assert on_disk == expected_relpaths()
    # no digits generated for languages covered by Asterisk core sounds
    assert not (dest / "en" / "digits").exists()
    assert not (dest / "es" / "digits").exists()
    assert not (dest / "custom").exists()


@needs_espeak
def test_audio_format_and_durations(generated):
    dest, _ = generated
    for rel in expected_relpaths():
        rate, channels, width, seconds = wav_info(dest / rel)
        assert (rate, channels, width) == (8000, 1, 2), rel
        assert seconds > 0.1, rel
    for lang in LANGS:
        assert wav_info(dest / lang / "consent.wav")[3] > 2.0
        assert 0.5 < wav_info(dest / lang / "protocol-is.wav")[3] < 4.0
    for d in range(10):
        assert 0.1 < wav_info(dest / "pt_BR" / "digits" / f"{d}.wav")[3] < 1.2
    assert wav_info(dest / "pause.wav")[3] == pytest.approx(0.400, abs=0.010)


@needs_espeak
def test_digits_are_trimmed_and_not_silent(generated):
    dest, _ = generated
    for d in range(10):
        with wave.open(str(dest / "pt_BR" / "digits" / f"{d}.wav"), "rb") as w:
            data = w.readframes(w.getnframes())
        samples = memoryview(data).cast("h")
        assert max(abs(s) for s in samples) > 3000  # audible speech
        # espeak pads ~300 ms of trailing silence; trimming leaves only a little
        quiet = 104  # -50 dBFS
        lead = next(i for i, s in enumerate(samples) if abs(s) > quiet)
        trail = next(i for i, s in enumerate(reversed(samples)) if abs(s) > quiet)
        assert lead < 8 * 60 and trail < 8 * 60, (d, lead, trail)


@needs_espeak
def test_pause_is_silence(generated):
    dest, _ = generated
    with wave.open(str(dest / "pause.wav"), "rb") as w:
        assert set(w.readframes(w.getnframes())) == {0}


@needs_espeak
def test_manifest_matches_files(generated):
    dest, result = generated
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == result["manifest"]
    assert manifest["audio"] == {"sample_rate": 8000, "channels": 1, "sample_width_bytes": 2}
    files = manifest["files"]
    assert set(files) == expected_relpaths()
    for rel, entry in files.items():
        assert entry["sha256"] == sha(dest / rel), rel
    assert files["pt_BR/consent.wav"]["voice"] == "pt-br"
    assert files["es/consent.wav"]["voice"] == "es"
    assert files["en/consent.wav"]["voice"] == "en-us"
    assert files["pt_BR/protocol-is.wav"]["text"] == "O número do seu protocolo é"
    assert files["es/protocol-is.wav"]["text"] == "Su número de protocolo es"
    assert files["en/protocol-is.wav"]["text"] == "Your protocol number is"
    assert files["pt_BR/digits/3.wav"]["text"] == "três"
    assert "gravada" in files["pt_BR/consent.wav"]["text"]
    assert "grabada" in files["es/consent.wav"]["text"]
    assert "recorded" in files["en/consent.wav"]["text"]
    assert files["pause.wav"]["voice"] is None
    assert files["pause.wav"]["pause_ms"] == 400


@needs_espeak
def test_permissions(generated):
    dest, _ = generated
    assert (dest / "pt_BR").stat().st_mode & 0o777 == 0o755
    assert (dest / "pt_BR" / "digits").stat().st_mode & 0o777 == 0o755
    assert (dest / "pt_BR" / "consent.wav").stat().st_mode & 0o777 == 0o644
    assert (dest / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert not list(dest.rglob("*.tmp"))


@needs_espeak
def test_idempotent_force_and_custom_untouched(tmp_path):
    dest = tmp_path / "p"
    generate_prompts(dest, ("pt_BR",))
    custom = write_wav(dest / "custom" / "pt_BR" / "consent.wav", value=7)
    custom_hash = sha(custom)
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    manifest_before = (dest / "manifest.json").read_bytes()

    again = generate_prompts(dest, ("pt_BR",))
    assert again["created"] == []
    assert len(again["kept"]) == 13 + len(REQUEST_PROMPTS) + len(MENU_PROMPTS)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == before
    assert (dest / "manifest.json").read_bytes() == manifest_before

    # a generated file removed -> only it comes back
    (dest / "pt_BR" / "digits" / "5.wav").unlink()
    assert generate_prompts(dest, ("pt_BR",))["created"] == ["pt_BR/digits/5.wav"]

    forced = generate_prompts(dest, ("pt_BR",), force=True)
    assert len(forced["created"]) == 13 + len(REQUEST_PROMPTS) + len(MENU_PROMPTS)
    assert sha(custom) == custom_hash  # admin recordings are never touched
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    assert not any(rel.startswith("custom/") for rel in manifest["files"])


@needs_espeak
def test_pause_length_change_regenerates_only_pause(tmp_path):
    generate_prompts(tmp_path, ("en",), pause_ms=400)
    result = generate_prompts(tmp_path, ("en",), pause_ms=750)
    assert result["created"] == ["pause.wav"]
    assert wav_info(tmp_path / "pause.wav")[3] == pytest.approx(0.750, abs=0.010)
    assert result["manifest"]["files"]["pause.wav"]["pause_ms"] == 750


@needs_espeak
def test_other_languages_kept_in_manifest(tmp_path):
    generate_prompts(tmp_path, ("pt_BR",))
    result = generate_prompts(tmp_path, ("en",))
    files = result["manifest"]["files"]
    assert "pt_BR/consent.wav" in files and "en/consent.wav" in files


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(EspeakNotFoundError) as exc:
        generate_prompts(tmp_path / "p")
    msg = str(exc.value)
    assert "espeak-ng" in msg and "apt-get install espeak-ng" in msg
    assert not (tmp_path / "p" / "pt_BR").exists()  # failed before writing anything


def test_pause_only_needs_no_espeak(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = generate_prompts(tmp_path / "p", (), pause_ms=250)
    assert result["created"] == ["pause.wav"]
    assert wav_info(tmp_path / "p" / "pause.wav") == (8000, 1, 2, pytest.approx(0.25, abs=0.01))


@pytest.mark.parametrize("kwargs", [{"languages": ("fr",)}, {"pause_ms": 0}, {"pause_ms": 1.5}])
def test_generate_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_prompts(tmp_path, **kwargs)


@needs_espeak
def test_cli(tmp_path, capsys):
    assert main([str(tmp_path), "--languages", "en", "--pause-ms", "300"]) == 0
    assert f"{3 + len(REQUEST_PROMPTS) + len(MENU_PROMPTS)} created" in capsys.readouterr().out
    assert wav_info(tmp_path / "pause.wav")[3] == pytest.approx(0.3, abs=0.01)
    assert main([str(tmp_path), "--languages", "xx"]) == 2


@needs_espeak
def test_catalogue_over_generated_tree(generated):
    dest, _ = generated
    cat = PromptCatalogue(dest)
    for lang in LANGS:
        media = cat.protocol_reading_media(lang, PROTOCOL)
        assert len(media) == 1 + 17 + 3
        p = cat.prompt("consent", lang)
        assert p.sha256 == sha(dest / lang / "consent.wav")


# --------------------------------------------------------------------------
# catalogue (synthetic files, no espeak needed)
# --------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "prompts"
    for lang in LANGS:
        write_wav(root / lang / "consent.wav", value=1)
        write_wav(root / lang / "protocol-is.wav", value=2)
    for d in range(10):
        write_wav(root / "pt_BR" / "digits" / f"{d}.wav", value=10 + d)
    write_wav(root / "pause.wav")
    return root


def test_prompt_resolves_generated_file(tree):
    cat = PromptCatalogue(tree)
    p = cat.prompt("consent", "es")
    assert isinstance(p, Prompt)
    assert p == Prompt("consent", "es", tree / "es" / "consent.wav", sha(tree / "es" / "consent.wav"),
                       f"sound:{tree}/es/consent")
    assert p.path.is_absolute()
    assert not p.media.endswith(".wav")
    with pytest.raises(AttributeError):
        p.sha256 = "x"  # frozen


def test_media_path_is_absolute_even_for_relative_dir(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    cat = PromptCatalogue(Path("prompts"))
    assert cat.prompt("consent", "en").media == f"sound:{tree.resolve()}/en/consent"


def test_custom_recording_takes_precedence(tree):
    cat = PromptCatalogue(tree)
    generated_hash = cat.prompt("consent", "pt_BR").sha256
    custom = write_wav(tree / "custom" / "pt_BR" / "consent.wav", ms=300, value=99)
    p = cat.prompt("consent", "pt_BR")
    assert p.path == custom
    assert p.media == f"sound:{tree}/custom/pt_BR/consent"
    assert p.sha256 == sha(custom) != generated_hash
    # other languages unaffected
    assert cat.prompt("consent", "en").path == tree / "en" / "consent.wav"
    custom.unlink()
    assert cat.prompt("consent", "pt_BR").sha256 == generated_hash


def test_explicit_custom_dir(tree, tmp_path):
    custom_root = tmp_path / "elsewhere"
    custom = write_wav(custom_root / "en" / "protocol-is.wav", value=5)
    cat = PromptCatalogue(tree, custom_dir=custom_root)
    assert cat.prompt("protocol-is", "en").path == custom
    write_wav(custom_root / "pause.wav", value=0, ms=600)
    assert cat.prompt("pause", "en").path == custom_root / "pause.wav"


def test_rehash_after_replacement(tree):
    cat = PromptCatalogue(tree)
    path = tree / "en" / "consent.wav"
    first = cat.prompt("consent", "en").sha256
    assert cat.prompt("consent", "en").sha256 == first  # cached path
    # same size, different content and mtime
    write_wav(path, value=3)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = cat.prompt("consent", "en").sha256
    assert second == sha(path) != first
    # different size
    write_wav(path, ms=250, value=3)
    third = cat.prompt("consent", "en").sha256
    assert third == sha(path) not in (first, second)


def test_cache_is_used(tree, monkeypatch):
    import callproof.prompts.catalogue as mod

    calls = []
    real = mod.sha256_file
    monkeypatch.setattr(mod, "sha256_file", lambda p: calls.append(p) or real(p))
    cat = PromptCatalogue(tree)
    cat.prompt("consent", "en")
    assert len(calls) == 1  # the hook sees the catalogue's hashing ...
    cat.prompt("consent", "en")
    assert len(calls) == 1  # ... and the second lookup is served from the cache


def test_missing_prompt_names_the_path(tree):
    (tree / "es" / "consent.wav").unlink()
    cat = PromptCatalogue(tree)
    with pytest.raises(PromptNotFoundError) as exc:
        cat.prompt("consent", "es")
    assert str(tree / "es" / "consent.wav") in str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)


@pytest.mark.parametrize("name", ["../consent", "/etc/passwd", "consent.wav/..", "", "a//b", "x\n", "../../pause"])
def test_bad_prompt_names(tree, name):
    with pytest.raises(ValueError):
        PromptCatalogue(tree).prompt(name, "en")


def test_unsupported_language_in_prompt(tree):
    cat = PromptCatalogue(tree)
    with pytest.raises(ValueError, match="resolve_language"):
        cat.prompt("consent", "fr")
    with pytest.raises(ValueError):
        cat.prompt("consent", "custom")


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("pt_BR", "pt_BR"),
        ("es", "es"),
        ("en", "en"),
        ("pt-BR", "pt_BR"),
        ("pt-br", "pt_BR"),
        ("PT_br", "pt_BR"),
        ("pt", "pt_BR"),
        ("pt_PT", "pt_BR"),
        ("es_MX", "es"),
        ("es-ES", "es"),
        ("ES", "es"),
        ("en_US", "en"),
        ("en-GB", "en"),
        ("EN", "en"),
        ("fr", "pt_BR"),
        ("de_DE", "pt_BR"),
        ("", "pt_BR"),
        (None, "pt_BR"),
        ("  ", "pt_BR"),
        ("_", "pt_BR"),
        ("e", "pt_BR"),
    ],
)
def test_resolve_language(tree, channel, expected):
    assert PromptCatalogue(tree).resolve_language(channel) == expected


def test_resolve_language_other_default(tree):
    cat = PromptCatalogue(tree, default_language="en")
    assert cat.resolve_language("fr") == "en"
    assert cat.resolve_language("pt") == "pt_BR"
    with pytest.raises(ValueError):
        PromptCatalogue(tree, default_language="fr")


def test_digit_media(tree):
    cat = PromptCatalogue(tree)
    assert cat.digit_media("pt_BR", "7") == f"sound:{tree}/pt_BR/digits/7"
    assert cat.digit_media("en", "7") == "sound:digits/7"
    assert cat.digit_media("es", "7") == "sound:es_MX_f_Allison/digits/7"
    for bad in ("", "12", "a", "٣", " 1", 7):
        with pytest.raises(ValueError):
            cat.digit_media("en", bad)


def test_custom_digits_override_core_and_generated(tree):
    write_wav(tree / "custom" / "en" / "digits" / "4.wav")
    write_wav(tree / "custom" / "pt_BR" / "digits" / "6.wav")
    cat = PromptCatalogue(tree)
    assert cat.digit_media("en", "4") == f"sound:{tree}/custom/en/digits/4"
    assert cat.digit_media("en", "5") == "sound:digits/5"
    assert cat.digit_media("pt_BR", "6") == f"sound:{tree}/custom/pt_BR/digits/6"
    assert cat.digit_media("pt_BR", "5") == f"sound:{tree}/pt_BR/digits/5"


def test_core_digits_configurable(tree):
    cat = PromptCatalogue(tree, core_digits={"en": "en/digits", "es": "es/digits"})
    assert cat.digit_media("es", "1") == "sound:es/digits/1"
    with pytest.raises(ValueError):
        PromptCatalogue(tree, core_digits={"en": "/usr/share/asterisk/sounds/digits"})
    with pytest.raises(ValueError):
        PromptCatalogue(tree, core_digits={"en": "../digits"})
    # a language with neither core nor generated digits -> clear error
    cat = PromptCatalogue(tree, core_digits={})
    with pytest.raises(PromptNotFoundError, match="digits/1"):
        cat.digit_media("en", "1")


def test_group_digits():
    assert group_digits(PROTOCOL, (4, 4, 4, 5)) == ["2026", "0000", "0000", "00042"]
    assert group_digits(PROTOCOL) == ["2026", "0000", "0000", "00042"]
    assert group_digits("123", [1, 2]) == ["1", "23"]
    assert group_digits("123", (3,)) == ["123"]


@pytest.mark.parametrize(
    ("protocol", "groups"),
    [
        (PROTOCOL, (4, 4, 4, 4)),
        (PROTOCOL, (4, 4, 4, 6)),
        (PROTOCOL, ()),
        (PROTOCOL, (17, 0)),
        (PROTOCOL, (18, -1)),
        (PROTOCOL, (4.0, 4, 4, 5)),
        ("2026000000000004x", (4, 4, 4, 5)),
        ("2026 000000000042", (4, 4, 4, 5)),
        ("٢٠٢٦0000000000042", (4, 4, 4, 5)),
        ("", ()),
        (None, (4,)),
    ],
)
def test_bad_groups_or_protocol_rejected(tree, protocol, groups):
    with pytest.raises(ValueError):
        group_digits(protocol, groups)
    with pytest.raises(ValueError):
        PromptCatalogue(tree).protocol_reading_media("en", protocol, groups)


def test_group_mismatch_message():
    with pytest.raises(ValueError, match=r"cover 16 digits but the protocol has 17"):
        group_digits(PROTOCOL, (4, 4, 4, 4))


def test_protocol_reading_media_all_languages(tree):
    cat = PromptCatalogue(tree)
    pause = f"sound:{tree}/pause"

    def expected(lang, digit):
        return {
            "pt_BR": f"sound:{tree}/pt_BR/digits/{digit}",
            "en": f"sound:digits/{digit}",
            "es": f"sound:es_MX_f_Allison/digits/{digit}",
        }[lang]

    for lang in LANGS:
        media = cat.protocol_reading_media(lang, PROTOCOL)
        d = lambda c, lang=lang: expected(lang, c)  # noqa: E731
        assert media == [
            f"sound:{tree}/{lang}/protocol-is",
            d("2"), d("0"), d("2"), d("6"), pause,
            d("0"), d("0"), d("0"), d("0"), pause,
            d("0"), d("0"), d("0"), d("0"), pause,
            d("0"), d("0"), d("0"), d("4"), d("2"),
        ]
    assert cat.protocol_reading_media("en", "123", (3,)) == [
        f"sound:{tree}/en/protocol-is", "sound:digits/1", "sound:digits/2", "sound:digits/3"
    ]


def test_protocol_reading_uses_custom_pause_per_language(tree):
    write_wav(tree / "custom" / "es" / "pause.wav", ms=500)
    cat = PromptCatalogue(tree)
    assert f"sound:{tree}/custom/es/pause" in cat.protocol_reading_media("es", PROTOCOL)
    assert f"sound:{tree}/pause" in cat.protocol_reading_media("en", PROTOCOL)
