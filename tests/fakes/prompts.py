"""A prompt catalogue without files: every prompt exists (unless named in ``missing``)."""

from __future__ import annotations

from pathlib import Path

from callproof.prompts import Prompt, PromptNotFoundError


class FakePrompts:
    def __init__(self, *, missing: frozenset[str] = frozenset(), digits: str = "sound:digits/",
                 languages: tuple[str, ...] = ("pt_BR",)):
        self.missing = missing
        self.digits = digits  # media prefix of the digit prompts
        self.languages = languages
        self.default_language = languages[0]

    def resolve_language(self, lang):
        return self.match_language(lang) or self.default_language

    def match_language(self, lang):
        return lang if lang in self.languages else None

    def digit_media(self, language, digit):
        return f"sound:/prompts/{language}/digits/{digit}"

    def prompt(self, name, language):
        if name in self.missing:
            raise PromptNotFoundError(f"prompt {name!r} ({language}) not found")
        return Prompt(name, language, Path(f"/prompts/{language}/{name}.wav"), "ab" * 32,
                      f"sound:/prompts/{language}/{name}")

    def protocol_reading_media(self, language, protocol, groups):
        if "protocol-is" in self.missing:
            raise PromptNotFoundError(f"prompt 'protocol-is' ({language}) not found")
        return [f"sound:/prompts/{language}/protocol-is"] + [f"{self.digits}{d}" for d in protocol]
