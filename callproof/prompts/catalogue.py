"""The runtime prompt catalogue: a prompt name and a channel language to the file that
will be played, its sha256 (for the call's evidence record) and the ARI media URI.

Admin recordings in ``custom/<lang>/<name>.wav`` win over the generated defaults.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .files import sha256_file
from .texts import DEFAULT_CORE_DIGITS, LANGUAGES, PAUSE_NAME


class PromptNotFoundError(FileNotFoundError):
    """No file exists for a prompt in any of the searched locations."""


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
        """Map an Asterisk ``CHANNEL(language)`` value to a supported language
        (:meth:`match_language`); anything else -> the default language."""
        return self.match_language(channel_language) or self.default_language

    def match_language(self, tag: str | None) -> str | None:
        """The supported language *tag* names, or None.

        Exact match, then case/separator-insensitive (``pt-BR``, ``PT_br``),
        then by primary subtag (``es_MX`` -> ``es``, ``en_US`` -> ``en``,
        ``pt`` -> ``pt_BR``, ``ca_valencia`` -> ``ca``).
        """
        if not tag or not isinstance(tag, str):
            return None
        if tag in self.languages:
            return tag
        wanted = _norm_lang(tag)
        if not wanted:
            return None
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
        return None

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
        digest = sha256_file(path)
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
        # only looked up when there is a gap to fill: a one-group reading needs no pause file
        pause = self.prompt(PAUSE_NAME, lang).media if len(parts) > 1 else ""
        digit_cache: dict[str, str] = {}
        for i, part in enumerate(parts):
            if i:
                media.append(pause)
            for d in part:
                if d not in digit_cache:
                    digit_cache[d] = self.digit_media(lang, d)
                media.append(digit_cache[d])
        return media
