"""Generating the default prompts: espeak-ng speaks each text, pydub turns the result into
what Asterisk plays natively for a ``.wav`` file (8 kHz, mono, 16-bit signed PCM, slin).

Layout under the destination (see the package docstring); ``<dest>/custom/`` is never
touched.  ``manifest.json`` records how each file was made (text, voice, pause length,
engine) and its sha256, so a later run regenerates only what changed.

pydub is imported only here, and only when something must be generated, so the runtime
catalogue does not need it.  It reads and writes plain PCM WAV itself (``wave`` module);
this module needs no ffmpeg.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import ensure_dir, sha256_file, write_atomic
from .texts import DIGIT_WORDS, ESPEAK_VOICES, LANGUAGES, PAUSE_NAME, PROMPT_TEXTS

if TYPE_CHECKING:
    from pydub import AudioSegment

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes -> 16-bit
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

_ESPEAK_BIN = "espeak-ng"
_ESPEAK_SPEED_WPM = 160  # default 175 is a little fast over a phone line
_SILENCE_THRESHOLD_DBFS = -50.0
_SENTENCE_PAD_MS = 60  # silence kept around sentences after trimming
_DIGIT_PAD_MS = 15  # ... and around single digits, so they sound tight
_LOWPASS_HZ = 3400  # telephone band; applied before down-sampling to 8 kHz

_LowPass = Callable[["AudioSegment", int], "AudioSegment"]
_DetectSilence = Callable[..., int]


class EspeakNotFoundError(RuntimeError):
    """espeak-ng is needed to generate prompts but is not installed."""


@dataclass(frozen=True)
class _Spec:
    relpath: str  # posix, relative to dest
    text: str
    voice: str | None
    kind: str  # "sentence" | "digit" | "pause"
    language: str | None
    pause_ms: int | None = None

    def recorded(self) -> dict[str, Any]:
        """The part of the manifest entry that describes how the file was made."""
        d: dict[str, Any] = {"text": self.text, "voice": self.voice, "language": self.language}
        if self.pause_ms is not None:
            d["pause_ms"] = self.pause_ms
        return d


@dataclass(frozen=True)
class RecordingNeeded:
    """A prompt espeak-ng cannot speak (no voice for its language): an admin records it."""

    name: str        # the prompt, e.g. "consent" or "digits/7"
    language: str
    path: Path       # where the recording goes: custom/<lang>/<name>.wav
    text: str        # what to say

    def describe(self) -> str:
        return (f"{self.language}/{self.name}: espeak-ng has no {self.language} voice; record it as {self.path} "
                f"(8 kHz mono 16-bit WAV) saying: \"{self.text}\"")


def _plan(languages: Sequence[str], pause_ms: int) -> list[_Spec]:
    specs: list[_Spec] = []
    for lang in languages:
        voice = ESPEAK_VOICES[lang]
        if voice is None:  # recordings only (recordings_needed)
            continue
        for name, text in PROMPT_TEXTS[lang].items():
            specs.append(_Spec(f"{lang}/{name}.wav", text, voice, "sentence", lang))
        for digit, word in enumerate(DIGIT_WORDS.get(lang, ())):
            specs.append(_Spec(f"{lang}/digits/{digit}.wav", word, voice, "digit", lang))
    specs.append(_Spec(f"{PAUSE_NAME}.wav", "", None, "pause", None, pause_ms))
    return specs


def _import_pydub() -> tuple[type[AudioSegment], _LowPass, _DetectSilence]:
    # pydub warns at import when ffmpeg is absent (not needed for WAV) and
    # about the deprecated audioop module; neither is actionable here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydub import AudioSegment
        from pydub.effects import low_pass_filter
        from pydub.silence import detect_leading_silence
    return AudioSegment, low_pass_filter, detect_leading_silence


def _find_espeak() -> str:
    path = shutil.which(_ESPEAK_BIN)
    if path is None:
        raise EspeakNotFoundError(
            "espeak-ng is required to generate the default prompts but was not found "
            "on PATH; install it with 'apt-get install espeak-ng' (Debian package "
            "'espeak-ng'), or provide your own recordings in the custom prompts directory."
        )
    return path


def _espeak_version(espeak: str) -> str:
    try:
        out = subprocess.run(
            [espeak, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "espeak-ng"
    m = re.search(r"eSpeak NG text-to-speech:\s*(\S+)", out)
    return f"espeak-ng {m.group(1)}" if m else "espeak-ng"


def _synthesise(espeak: str, voice: str, text: str, out_wav: Path) -> None:
    # Argument list, no shell; the text goes through stdin so it can never be
    # taken for an option.
    cmd = [espeak, "-v", voice, "-s", str(_ESPEAK_SPEED_WPM), "-b", "1", "-w", str(out_wav), "--stdin"]
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=60, check=False)
    except FileNotFoundError as exc:  # vanished between which() and here
        raise EspeakNotFoundError(
            f"espeak-ng could not be run ({exc}); install the Debian package 'espeak-ng'"
        ) from exc
    if proc.returncode != 0 or not out_wav.exists() or out_wav.stat().st_size <= 44:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"espeak-ng failed for voice {voice!r} (exit {proc.returncode}): {err or 'no output'}")


def _trim(seg: AudioSegment, detect_leading_silence: _DetectSilence, pad_ms: int) -> AudioSegment:
    lead = detect_leading_silence(seg, silence_threshold=_SILENCE_THRESHOLD_DBFS, chunk_size=5)
    trail = detect_leading_silence(seg.reverse(), silence_threshold=_SILENCE_THRESHOLD_DBFS, chunk_size=5)
    if lead + trail >= len(seg):  # all silence: leave it alone
        return seg
    start = max(0, lead - pad_ms)
    end = len(seg) - max(0, trail - pad_ms)
    return seg[start:end]


def _to_asterisk(seg: AudioSegment, low_pass_filter: _LowPass) -> AudioSegment:
    seg = seg.set_channels(CHANNELS).set_sample_width(SAMPLE_WIDTH)
    if seg.frame_rate != SAMPLE_RATE:
        # audioop.ratecv (used by set_frame_rate) does no anti-alias filtering;
        # two one-pole low-passes give ~12 dB/octave above the phone band.
        seg = low_pass_filter(low_pass_filter(seg, _LOWPASS_HZ), _LOWPASS_HZ)
        seg = seg.set_frame_rate(SAMPLE_RATE)
    return seg


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable prompt manifest %s: %s", path, exc)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _render(todo: Sequence[_Spec], dest: Path, espeak: str | None) -> list[str]:
    """Make the files of *todo* under *dest*; the relpaths written, in order."""
    created: list[str] = []
    if not todo:
        return created
    audio_segment, low_pass_filter, detect_leading_silence = _import_pydub()
    with tempfile.TemporaryDirectory(prefix="callproof-prompts-") as tmpdir:
        for i, spec in enumerate(todo):
            if spec.kind == "pause":
                seg = audio_segment.silent(duration=spec.pause_ms, frame_rate=SAMPLE_RATE)
            else:
                # _plan gives every spoken prompt a voice; the caller found espeak for them
                assert espeak is not None and spec.voice is not None
                raw = Path(tmpdir) / f"{i}.wav"
                _synthesise(espeak, spec.voice, spec.text, raw)
                with open(raw, "rb") as fh:
                    seg = audio_segment.from_file(fh, format="wav")
                pad = _DIGIT_PAD_MS if spec.kind == "digit" else _SENTENCE_PAD_MS
                seg = _trim(seg, detect_leading_silence, pad)
            seg = _to_asterisk(seg, low_pass_filter)
            write_atomic(dest / spec.relpath, functools.partial(seg.export, format="wav"))
            created.append(spec.relpath)
            log.info("generated prompt %s", spec.relpath)
    return created


def recordings_needed(dest_dir: Path, languages: Iterable[str],
                      custom_dir: Path | None = None) -> list[RecordingNeeded]:
    """The prompts of the voiceless *languages* (Galician) that no recording provides yet,
    in ``custom/<lang>/`` or ``<dest>/<lang>/``."""
    dest = Path(dest_dir).absolute()
    custom = Path(custom_dir).absolute() if custom_dir is not None else dest / "custom"
    needed: list[RecordingNeeded] = []
    for lang in dict.fromkeys(languages):
        if ESPEAK_VOICES.get(lang, "") is not None:
            continue
        wanted = [*PROMPT_TEXTS[lang].items(),
                  *((f"digits/{d}", word) for d, word in enumerate(DIGIT_WORDS.get(lang, ())))]
        for name, text in wanted:
            rel = f"{lang}/{name}.wav"
            if not (custom / rel).is_file() and not (dest / rel).is_file():
                needed.append(RecordingNeeded(name, lang, custom / rel, text))
    return needed


def generate_prompts(
    dest_dir: Path,
    languages: Iterable[str] = LANGUAGES,
    *,
    pause_ms: int = 400,
    force: bool = False,
    custom_dir: Path | None = None,
) -> dict[str, Any]:
    """Generate the default prompts under *dest_dir* (see the package docstring).

    Idempotent: an existing file is kept unless *force* is true or
    ``manifest.json`` records that it was made from a different spec (text,
    voice or ``pause_ms``), e.g. after the texts changed in a new release.
    A file that exists without a manifest entry is always kept (unless
    *force*).  espeak-ng is only needed when something must be generated.

    A language espeak-ng has no voice for (Galician) is not synthesised: each of its
    prompts with no recording yet is listed in ``"recordings_needed"``
    (:class:`RecordingNeeded`: the file to record under *custom_dir*, default
    ``<dest>/custom``, and the text to read); the other languages are generated.

    Returns ``{"created": [relpath, ...], "kept": [relpath, ...],
    "recordings_needed": [RecordingNeeded, ...],
    "manifest": <the dict written to manifest.json>}``; relpaths are POSIX
    paths relative to *dest_dir*.  ``manifest["files"][relpath]`` holds
    ``sha256``, ``text``, ``voice``, ``language`` (and ``pause_ms`` for the
    pause).

    Raises :class:`EspeakNotFoundError` when espeak-ng is needed but missing,
    :class:`ValueError` for an unknown language or a bad *pause_ms*.
    """
    langs = tuple(dict.fromkeys(languages))
    unknown = [lang for lang in langs if lang not in ESPEAK_VOICES]
    if unknown:
        raise ValueError(f"unknown prompt language(s) {unknown}; supported: {list(ESPEAK_VOICES)}")
    if isinstance(pause_ms, bool) or not isinstance(pause_ms, int) or not 0 < pause_ms <= 10_000:
        raise ValueError(f"pause_ms must be an int in 1..10000, got {pause_ms!r}")

    dest = Path(dest_dir).absolute()
    manifest_path = dest / MANIFEST_NAME
    old_files = _load_manifest(manifest_path)
    specs = _plan(langs, pause_ms)

    todo: list[_Spec] = []
    for spec in specs:
        target = dest / spec.relpath
        if force or not target.is_file():
            todo.append(spec)
            continue
        old = old_files.get(spec.relpath)
        if isinstance(old, dict) and any(old.get(k) != v for k, v in spec.recorded().items()):
            todo.append(spec)  # made from another text/voice/pause length

    engine: str | None = None
    espeak: str | None = None
    if any(s.kind != "pause" for s in todo):
        espeak = _find_espeak()
        engine = _espeak_version(espeak)

    ensure_dir(dest)
    started = time.monotonic()
    created = _render(todo, dest, espeak)

    files: dict[str, Any] = {}
    # keep entries for other languages generated earlier, if their files are still there
    for relpath, entry in old_files.items():
        if isinstance(entry, dict) and (dest / relpath).is_file():
            files[relpath] = entry
    kept: list[str] = []
    for spec in specs:
        if spec.relpath in created:
            entry = spec.recorded()
            entry["engine"] = "pydub" if spec.kind == "pause" else engine
        else:
            kept.append(spec.relpath)
            old = old_files.get(spec.relpath)
            entry = dict(old) if isinstance(old, dict) else {**spec.recorded(), "engine": None}
        entry["sha256"] = sha256_file(dest / spec.relpath)
        files[spec.relpath] = entry

    manifest = {
        "format": MANIFEST_FORMAT,
        "audio": {"sample_rate": SAMPLE_RATE, "channels": CHANNELS, "sample_width_bytes": SAMPLE_WIDTH},
        "files": dict(sorted(files.items())),
    }
    payload = (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    try:
        unchanged = manifest_path.read_bytes() == payload
    except OSError:
        unchanged = False
    if not unchanged:
        write_atomic(manifest_path, lambda fh: fh.write(payload))
    if created:
        log.info("generated %d prompt file(s) in %.2fs", len(created), time.monotonic() - started)
    return {"created": created, "kept": kept, "manifest": manifest,
            "recordings_needed": recordings_needed(dest, langs, custom_dir)}
