"""Default voice prompts and the prompt catalogue.

Two halves:

* :func:`generate_prompts` synthesises the default prompts with **espeak-ng**
  and converts them with **pydub** into what Asterisk plays natively for a
  ``.wav`` file: 8 kHz, mono, 16-bit signed PCM (slin).  Layout::

      <dest>/manifest.json
      <dest>/pause.wav                    # pause_ms of silence between digit groups
      <dest>/<lang>/consent.wav           # recording / consent announcement
      <dest>/<lang>/protocol-is.wav       # "your protocol number is"
      <dest>/<lang>/request-*.wav         # the recording-request IVR (REQUEST_PROMPTS)
      <dest>/pt_BR/digits/0.wav .. 9.wav  # Asterisk core sounds have no pt_BR digits

  Generation never touches ``<dest>/custom/``: that is where admins put their
  own recordings (``custom/<lang>/<name>.wav``), which win over the generated
  ones at play time.

* :class:`PromptCatalogue` resolves a prompt name and a channel language to a
  file, its sha256 (for the call's evidence record) and the ARI media URI.

Run ``python -m callproof.prompts DEST`` to generate the defaults.

pydub is only imported by the generator, so the runtime catalogue does not
need it.  pydub reads and writes plain PCM WAV itself (``wave`` module); it
needs no ffmpeg for this module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "DIGIT_WORDS",
    "ESPEAK_VOICES",
    "LANGUAGES",
    "PROMPT_TEXTS",
    "REQUEST_PROMPTS",
    "EspeakNotFoundError",
    "Prompt",
    "PromptCatalogue",
    "PromptNotFoundError",
    "generate_prompts",
    "group_digits",
    "main",
]

log = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = ("pt_BR", "es", "en")

#: callproof language -> espeak-ng voice name (``espeak-ng --voices``).
ESPEAK_VOICES: dict[str, str] = {"pt_BR": "pt-br", "es": "es", "en": "en-us"}

#: Sentence prompts per language.  Admins who want other wording record their
#: own file in ``custom/<lang>/<name>.wav`` instead of editing these.
PROMPT_TEXTS: dict[str, dict[str, str]] = {
    "pt_BR": {
        "consent": (
            "Esta ligação está sendo gravada, conforme a lei de defesa do consumidor. "
            "Você pode solicitar uma cópia da gravação."
        ),
        "protocol-is": "O número do seu protocolo é",
        "request-consent": (
            "Este atendimento automático fica registrado: guardamos o protocolo que você digitar "
            "e o seu pedido, conforme a lei de defesa do consumidor."
        ),
        "request-enter": (
            "Para pedir a gravação de uma ligação, digite o número de protocolo dessa ligação, "
            "com dezessete dígitos, e depois a tecla cerquilha. Para recomeçar, tecle asterisco."
        ),
        "request-not-found": "Não encontramos esse protocolo.",
        "request-give-up": "Não foi possível encontrar o protocolo. Nenhum pedido foi registrado.",
        "request-received": "Seu pedido foi registrado. Enviaremos a gravação dentro do prazo legal.",
        "request-identity-check": (
            "Seu pedido foi registrado. Como você está ligando de outro número, um atendente "
            "vai confirmar a sua identidade antes de enviar a gravação."
        ),
    },
    "es": {
        "consent": (
            "Esta llamada está siendo grabada, conforme a la ley de protección al consumidor. "
            "Usted puede solicitar una copia de la grabación."
        ),
        "protocol-is": "Su número de protocolo es",
        "request-consent": (
            "Esta atención automática queda registrada: guardamos el protocolo que usted marque "
            "y su solicitud, conforme a la ley de protección al consumidor."
        ),
        "request-enter": (
            "Para solicitar la grabación de una llamada, marque el número de protocolo de esa llamada, "
            "de diecisiete dígitos, y luego la tecla numeral. Para empezar de nuevo, pulse asterisco."
        ),
        "request-not-found": "No encontramos ese protocolo.",
        "request-give-up": "No fue posible encontrar el protocolo. No se registró ninguna solicitud.",
        "request-received": "Su solicitud fue registrada. Le enviaremos la grabación dentro del plazo legal.",
        "request-identity-check": (
            "Su solicitud fue registrada. Como usted llama desde otro número, un agente "
            "confirmará su identidad antes de enviar la grabación."
        ),
    },
    "en": {
        "consent": (
            "This call is recorded, as consumer protection law requires. "
            "You may request a copy of the recording."
        ),
        "protocol-is": "Your protocol number is",
        "request-consent": (
            "This automated service is logged: we keep the protocol number you type "
            "and your request, as consumer protection law requires."
        ),
        "request-enter": (
            "To request the recording of a call, type that call's seventeen-digit protocol number, "
            "then the hash key. To start again, press star."
        ),
        "request-not-found": "We could not find that protocol.",
        "request-give-up": "We could not find the protocol. No request has been registered.",
        "request-received": "Your request has been registered. We will send you the recording within the legal deadline.",
        "request-identity-check": (
            "Your request has been registered. Because you are calling from a different number, "
            "an agent will confirm your identity before the recording is sent."
        ),
    },
}

#: The prompts of the recording-request IVR (``ari_app/ivr_request.py``, docs/ivr.md),
#: in the order a caller may hear them.  ``request-consent`` comes first: it says what
#: this automated contact keeps, before anything else is played.
REQUEST_PROMPTS: tuple[str, ...] = (
    "request-consent", "request-enter", "request-not-found", "request-give-up",
    "request-received", "request-identity-check",
)

#: Digit words for the languages whose digits we generate (Asterisk core sounds
#: cover en and es).  "seis" rather than the colloquial "meia": unambiguous for
#: a protocol number; an admin can record ``custom/pt_BR/digits/6.wav``.
DIGIT_WORDS: dict[str, tuple[str, ...]] = {
    "pt_BR": ("zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove"),
}

#: Asterisk core-sound directories holding ``0``..``9`` per language, relative
#: to Asterisk's sounds dir (Debian: asterisk-core-sounds-en / -es, the Spanish
#: package installs the ``es_MX_f_Allison`` voice).
DEFAULT_CORE_DIGITS: dict[str, str] = {"en": "digits", "es": "es_MX_f_Allison/digits"}

SAMPLE_RATE = 8000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes -> 16-bit
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
PAUSE_NAME = "pause"

_ESPEAK_BIN = "espeak-ng"
_ESPEAK_SPEED_WPM = 160  # default 175 is a little fast over a phone line
_SILENCE_THRESHOLD_DBFS = -50.0
_SENTENCE_PAD_MS = 60  # silence kept around sentences after trimming
_DIGIT_PAD_MS = 15  # ... and around single digits, so they sound tight
_LOWPASS_HZ = 3400  # telephone band; applied before down-sampling to 8 kHz

_FILE_MODE = 0o644
_DIR_MODE = 0o755


class EspeakNotFoundError(RuntimeError):
    """espeak-ng is needed to generate prompts but is not installed."""


class PromptNotFoundError(FileNotFoundError):
    """No file exists for a prompt in any of the searched locations."""


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------


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


def _plan(languages: Sequence[str], pause_ms: int) -> list[_Spec]:
    specs: list[_Spec] = []
    for lang in languages:
        voice = ESPEAK_VOICES[lang]
        for name, text in PROMPT_TEXTS[lang].items():
            specs.append(_Spec(f"{lang}/{name}.wav", text, voice, "sentence", lang))
        for digit, word in enumerate(DIGIT_WORDS.get(lang, ())):
            specs.append(_Spec(f"{lang}/digits/{digit}.wav", word, voice, "digit", lang))
    specs.append(_Spec(f"{PAUSE_NAME}.wav", "", None, "pause", None, pause_ms))
    return specs


def _import_pydub():
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
        raise EspeakNotFoundError(f"espeak-ng could not be run ({exc}); install the Debian package 'espeak-ng'") from exc
    if proc.returncode != 0 or not out_wav.exists() or out_wav.stat().st_size <= 44:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"espeak-ng failed for voice {voice!r} (exit {proc.returncode}): {err or 'no output'}")


def _trim(seg, detect_leading_silence, pad_ms: int):
    lead = detect_leading_silence(seg, silence_threshold=_SILENCE_THRESHOLD_DBFS, chunk_size=5)
    trail = detect_leading_silence(seg.reverse(), silence_threshold=_SILENCE_THRESHOLD_DBFS, chunk_size=5)
    if lead + trail >= len(seg):  # all silence: leave it alone
        return seg
    start = max(0, lead - pad_ms)
    end = len(seg) - max(0, trail - pad_ms)
    return seg[start:end]


def _to_asterisk(seg, low_pass_filter):
    seg = seg.set_channels(CHANNELS).set_sample_width(SAMPLE_WIDTH)
    if seg.frame_rate != SAMPLE_RATE:
        # audioop.ratecv (used by set_frame_rate) does no anti-alias filtering;
        # two one-pole low-passes give ~12 dB/octave above the phone band.
        seg = low_pass_filter(low_pass_filter(seg, _LOWPASS_HZ), _LOWPASS_HZ)
        seg = seg.set_frame_rate(SAMPLE_RATE)
    return seg


def _ensure_dir(path: Path) -> None:
    """mkdir -p with 0755 on every directory we create (umask-independent)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        os.chmod(d, _DIR_MODE)


def _write_atomic(target: Path, write) -> None:
    _ensure_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


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


def generate_prompts(
    dest_dir: Path,
    languages: Iterable[str] = LANGUAGES,
    *,
    pause_ms: int = 400,
    force: bool = False,
) -> dict:
    """Generate the default prompts under *dest_dir* (see module docstring).

    Idempotent: an existing file is kept unless *force* is true or
    ``manifest.json`` records that it was made from a different spec (text,
    voice or ``pause_ms``), e.g. after the texts changed in a new release.
    A file that exists without a manifest entry is always kept (unless
    *force*).  espeak-ng is only needed when something must be generated.

    Returns ``{"created": [relpath, ...], "kept": [relpath, ...],
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
    if todo:
        AudioSegment, low_pass_filter, detect_leading_silence = _import_pydub()

    _ensure_dir(dest)
    created: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="callproof-prompts-") as tmpdir:
        for i, spec in enumerate(todo):
            if spec.kind == "pause":
                seg = AudioSegment.silent(duration=spec.pause_ms, frame_rate=SAMPLE_RATE)
            else:
                raw = Path(tmpdir) / f"{i}.wav"
                _synthesise(espeak, spec.voice, spec.text, raw)
                with open(raw, "rb") as fh:
                    seg = AudioSegment.from_file(fh, format="wav")
                pad = _DIGIT_PAD_MS if spec.kind == "digit" else _SENTENCE_PAD_MS
                seg = _trim(seg, detect_leading_silence, pad)
            seg = _to_asterisk(seg, low_pass_filter)
            _write_atomic(dest / spec.relpath, lambda fh, seg=seg: seg.export(fh, format="wav"))
            created.append(spec.relpath)
            log.info("generated prompt %s", spec.relpath)

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
        entry["sha256"] = _sha256_file(dest / spec.relpath)
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
        _write_atomic(manifest_path, lambda fh: fh.write(payload))
    if created:
        log.info("generated %d prompt file(s) in %.2fs", len(created), time.monotonic() - started)
    return {"created": created, "kept": kept, "manifest": manifest}


# --------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A resolved prompt: the file that will be played and how to ask ARI for it."""

    name: str
    language: str
    path: Path  # absolute
    sha256: str  # of the file at resolution time
    media: str  # ARI media URI without extension: "sound:/abs/path/name"


_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(?:/[A-Za-z0-9_][A-Za-z0-9_-]*)*")
_PROTOCOL_DIGITS_RE = re.compile(r"[0-9]+")


def group_digits(protocol: str, groups: Sequence[int] = (4, 4, 4, 5)) -> list[str]:
    """Split *protocol* into consecutive groups of the given sizes.

    ``group_digits("20260000000000042", (4, 4, 4, 5))`` ->
    ``["2026", "0000", "0000", "00042"]``.  Raises :class:`ValueError` unless
    *protocol* is ASCII digits only and ``sum(groups) == len(protocol)``.
    """
    if not isinstance(protocol, str) or not _PROTOCOL_DIGITS_RE.fullmatch(protocol):
        raise ValueError(f"protocol must be a non-empty string of ASCII digits 0-9, got {protocol!r}")
    sizes = tuple(groups)
    if not sizes or any(isinstance(g, bool) or not isinstance(g, int) or g <= 0 for g in sizes):
        raise ValueError(f"groups must be a non-empty sequence of positive ints, got {groups!r}")
    if sum(sizes) != len(protocol):
        raise ValueError(
            f"digit groups {sizes} cover {sum(sizes)} digits but the protocol has {len(protocol)}"
        )
    out: list[str] = []
    pos = 0
    for size in sizes:
        out.append(protocol[pos : pos + size])
        pos += size
    return out


def _norm_lang(tag: str) -> str:
    return tag.strip().replace("-", "_").lower()


class PromptCatalogue:
    """Find prompt files and build ARI media URIs for them.

    Lookup order for ``prompt(name, lang)``:

    1. ``custom_dir/<lang>/<name>.wav`` (admin recordings; default
       ``custom_dir = prompts_dir/custom``)
    2. ``prompts_dir/<lang>/<name>.wav`` (generated)
    3. ``custom_dir/<name>.wav`` then ``prompts_dir/<name>.wav``
       (language-independent, e.g. ``pause``)

    Hashes are cached per ``(path, mtime_ns, size)``, so replacing a file is
    picked up without a restart.  Thread-safe.
    """

    def __init__(
        self,
        prompts_dir: Path,
        *,
        default_language: str = "pt_BR",
        languages: Sequence[str] = LANGUAGES,
        core_digits: Mapping[str, str] | None = None,
        custom_dir: Path | None = None,
    ) -> None:
        self.languages: tuple[str, ...] = tuple(dict.fromkeys(languages))
        if not self.languages:
            raise ValueError("at least one language is required")
        if default_language not in self.languages:
            raise ValueError(f"default_language {default_language!r} is not one of {self.languages}")
        self.default_language = default_language
        self.prompts_dir = Path(prompts_dir).resolve()
        self.custom_dir = (Path(custom_dir) if custom_dir is not None else self.prompts_dir / "custom").resolve()
        digits = dict(DEFAULT_CORE_DIGITS if core_digits is None else core_digits)
        for lang, rel in digits.items():
            p = PurePosixPath(rel)
            if not rel or p.is_absolute() or ".." in p.parts:
                raise ValueError(f"core_digits[{lang!r}] must be a relative sounds path, got {rel!r}")
        self.core_digits: dict[str, str] = {k: str(PurePosixPath(v)) for k, v in digits.items()}
        self._hash_cache: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    # -- languages ---------------------------------------------------------

    def resolve_language(self, channel_language: str | None) -> str:
        """Map an Asterisk ``CHANNEL(language)`` value to a supported language.

        Exact match, then case/separator-insensitive (``pt-BR``, ``PT_br``),
        then by primary subtag (``es_MX`` -> ``es``, ``en_US`` -> ``en``,
        ``pt`` -> ``pt_BR``); anything else -> the default language.
        """
        if not channel_language or not isinstance(channel_language, str):
            return self.default_language
        if channel_language in self.languages:
            return channel_language
        wanted = _norm_lang(channel_language)
        if not wanted:
            return self.default_language
        by_norm = {_norm_lang(lang): lang for lang in self.languages}
        if wanted in by_norm:
            return by_norm[wanted]
        primary = wanted.split("_", 1)[0]
        # a supported language that is exactly the primary subtag wins (es_MX -> es),
        # then one sharing it, in configured order (pt -> pt_BR)
        if primary in by_norm:
            return by_norm[primary]
        for norm, lang in by_norm.items():
            if norm.split("_", 1)[0] == primary:
                return lang
        return self.default_language

    def _require_language(self, language: str) -> str:
        if language not in self.languages:
            raise ValueError(
                f"language {language!r} is not one of {self.languages}; use resolve_language() first"
            )
        return language

    # -- prompts -----------------------------------------------------------

    def _candidates(self, name: str, language: str) -> list[Path]:
        rel = f"{name}.wav"
        return [
            self.custom_dir / language / rel,
            self.prompts_dir / language / rel,
            self.custom_dir / rel,
            self.prompts_dir / rel,
        ]

    def sha256(self, path: Path) -> str:
        """sha256 of *path*, cached by (path, mtime_ns, size)."""
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._hash_cache.get(path)
        if cached is not None and cached[:2] == key:
            return cached[2]
        digest = _sha256_file(path)
        st2 = os.stat(path)
        if (st2.st_mtime_ns, st2.st_size) == key:  # don't cache a file changed while hashing
            with self._lock:
                self._hash_cache[path] = (*key, digest)
        return digest

    def prompt(self, name: str, language: str) -> Prompt:
        """Resolve prompt *name* (e.g. ``consent``, ``protocol-is``, ``pause``,
        ``digits/7``) for a supported *language*.

        Raises :class:`PromptNotFoundError` naming every path searched, and
        :class:`ValueError` for a malformed name or unsupported language.
        """
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid prompt name {name!r}")
        lang = self._require_language(language)
        candidates = self._candidates(name, lang)
        for path in candidates:
            if path.is_file():
                try:
                    digest = self.sha256(path)
                except FileNotFoundError:  # removed between is_file() and stat()
                    continue
                media = "sound:" + str(path.with_suffix(""))
                return Prompt(name=name, language=lang, path=path, sha256=digest, media=media)
        searched = ", ".join(str(p) for p in candidates)
        raise PromptNotFoundError(
            f"prompt {name!r} for language {lang!r} not found; searched: {searched} "
            f"(run 'python -m callproof.prompts {self.prompts_dir}' to generate the defaults)"
        )

    def digit_media(self, language: str, digit: str) -> str:
        """ARI media URI for one digit.

        ``custom_dir/<lang>/digits/N.wav`` if present, else the Asterisk core
        sound for languages in ``core_digits`` (``sound:digits/7``,
        ``sound:es_MX_f_Allison/digits/7``), else our generated
        ``prompts_dir/<lang>/digits/N.wav`` (pt_BR).
        """
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789":
            raise ValueError(f"digit must be a single ASCII digit 0-9, got {digit!r}")
        lang = self._require_language(language)
        name = f"digits/{digit}"
        custom = self.custom_dir / lang / f"{name}.wav"
        if custom.is_file():
            return "sound:" + str(custom.with_suffix(""))
        core = self.core_digits.get(lang)
        if core is not None:
            return f"sound:{core}/{digit}"
        return self.prompt(name, lang).media

    def protocol_reading_media(
        self, language: str, protocol: str, groups: Sequence[int] = (4, 4, 4, 5)
    ) -> list[str]:
        """Media list that reads *protocol* aloud:
        ``[protocol-is, d, d, d, d, pause, d, d, d, d, pause, ...]`` (no
        trailing pause).  Raises :class:`ValueError` for non-digit protocols
        or groups that don't add up to its length."""
        lang = self._require_language(language)
        parts = group_digits(protocol, groups)
        media = [self.prompt("protocol-is", lang).media]
        pause = self.prompt(PAUSE_NAME, lang).media if len(parts) > 1 else None
        digit_cache: dict[str, str] = {}
        for i, part in enumerate(parts):
            if i:
                media.append(pause)
            for d in part:
                if d not in digit_cache:
                    digit_cache[d] = self.digit_media(lang, d)
                media.append(digit_cache[d])
        return media


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callproof.prompts",
        description="Generate the default callproof prompts (8 kHz mono 16-bit WAV) with espeak-ng.",
    )
    parser.add_argument("dest", type=Path, help="prompts directory (custom/ inside it is never touched)")
    parser.add_argument(
        "--languages", default=",".join(LANGUAGES), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument("--pause-ms", type=int, default=400, help="silence between digit groups (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="regenerate files that already exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    try:
        started = time.monotonic()
        result = generate_prompts(args.dest, languages, pause_ms=args.pause_ms, force=args.force)
    except (EspeakNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{len(result['created'])} created, {len(result['kept'])} kept in {args.dest} "
        f"({time.monotonic() - started:.2f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
