"""A prompt catalogue without files: every prompt exists (unless named in ``missing``)."""

from __future__ import annotations

from pathlib import Path

from callproof.prompts import Prompt, PromptNotFoundError


class FakePrompts:
    def __init__(self, *, missing: frozenset[str] = frozenset(), digits: str = "sound:digits/"):
        self.missing = missing
        self.digits = digits  # media prefix of the digit prompts

    def resolve_language(self, lang):
        return "pt_BR"

    def prompt(self, name, language):
        if name in self.missing:
            raise PromptNotFoundError(f"prompt {name!r} ({language}) not found")
        return Prompt(name, language, Path(f"/prompts/{language}/{name}.wav"), "ab" * 32,
                      f"sound:/prompts/{language}/{name}")

    def protocol_reading_media(self, language, protocol, groups):
        if "protocol-is" in self.missing:
            raise PromptNotFoundError(f"prompt 'protocol-is' ({language}) not found")
        return ["sound:/prompts/pt_BR/protocol-is"] + [f"{self.digits}{d}" for d in protocol]
