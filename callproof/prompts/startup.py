"""The start-up check of ``callproof run`` and ``callproof fastagi``: every configured
language has the prompt files a call in that language plays.

Without it, a language configured but never generated (or, for Galician, never recorded)
would only be noticed by a caller: the call would fail at its first prompt.  The check
looks at what callproof itself provides (the sentence prompts, and the digits of the
languages Asterisk ships no digits for); Asterisk's own core sounds are
``callproof doctor``'s to check, against Asterisk's sounds directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from .catalogue import PromptCatalogue, PromptNotFoundError
from .language_names import explicitly_named
from .texts import CALL_PROMPTS, MENU_PROMPTS


class MissingPromptsError(RuntimeError):
    """Configured languages without their prompt files; the message names both."""

    def __init__(self, missing: dict[str, list[str]]):
        self.missing = missing
        parts = [f"{lang}: {', '.join(files)}" for lang, files in missing.items()]
        super().__init__(
            "prompt files missing for configured language(s) -- " + "; ".join(parts)
            + " (run 'callproof prompts generate'; a language espeak-ng cannot speak, such as gl, "
              "needs recordings in custom/<lang>/: 'callproof prompts generate' lists them)")


def missing_prompts(catalogue: PromptCatalogue, *, with_menu: bool,
                    languages: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Per language, the prompt files (``<lang>/<name>.wav``) nothing provides."""
    names: Sequence[str] = (*CALL_PROMPTS, *MENU_PROMPTS) if with_menu else CALL_PROMPTS
    missing: dict[str, list[str]] = {}
    for lang in languages if languages is not None else catalogue.languages:
        files = []
        for name in names:
            try:
                catalogue.prompt(name, lang)
            except PromptNotFoundError:
                files.append(f"{lang}/{name}.wav")
        if lang not in catalogue.core_digits:  # digits are ours to provide
            for digit in "0123456789":
                try:
                    catalogue.digit_media(lang, digit)
                except PromptNotFoundError:
                    files.append(f"{lang}/digits/{digit}.wav")
        if files:
            missing[lang] = files
    return missing


def require_prompts(catalogue: PromptCatalogue, *, with_menu: bool) -> None:
    """MissingPromptsError unless every configured language has its prompt files."""
    missing = missing_prompts(catalogue, with_menu=with_menu)
    if missing:
        raise MissingPromptsError(missing)


def leave_out_uninstalled(config: Any, catalogue: PromptCatalogue, optional: Iterable[str], *,
                          with_menu: bool) -> tuple[Any, dict[str, list[str]]]:
    """``config`` without the ``optional`` languages (a jurisdiction's, offered where
    installed) whose prompt files are missing, and those languages with their missing files.

    A language the configuration names explicitly (``default_language``, a ``[languages]``
    rule or menu) is never left out: :func:`require_prompts` then requires it."""
    named = explicitly_named(config)
    candidates = [lang for lang in optional if lang in config.general.languages and lang not in named]
    missing = missing_prompts(catalogue, with_menu=with_menu, languages=candidates)
    if not missing:
        return config, {}
    kept = tuple(lang for lang in config.general.languages if lang not in missing)
    return dataclasses.replace(config, general=dataclasses.replace(config.general, languages=kept)), missing
