"""The short language menu after the announcement: "Para continuar en castellano pulse 1;
per continuar en català premeu el 2" -- each option spoken in its own language, its key
read in that language too.

Rules (docs/prompts.md#language-menu): the announcement always comes first, in the DID's
language, and is never interrupted by the menu; keys pressed during the announcement do
not count; a key of the menu chooses its language; no key within
``[languages] menu_timeout_seconds`` or a key that is no option offers the menu again, at
most ``menu_repeats`` times, then the call goes on in the language it had.  A wrong key
is answered ("that is not one of the options") in the current language.

On ARI a key pressed while the menu plays counts at once; on AGI ``Playback`` does not
hear keys, so the key is read after the menu (the port's ``read_digit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from callproof.prompts import PromptCatalogue

from .port import CallPort


class MenuOutcome(StrEnum):
    """``calls.language_menu`` (migration 0015); NULL there: no menu was offered."""

    CHOSEN = "chosen"            # a key of the menu: the call goes on in that language
    NO_INPUT = "no_input"        # no key in any round: the language stays
    INVALID = "invalid"          # the last round's key was no option: the language stays
    CALLER_LEFT = "caller_left"  # hung up during the menu


#: The outcomes after which a resumed call never hears the menu again.
DONE = frozenset({MenuOutcome.CHOSEN, MenuOutcome.NO_INPUT, MenuOutcome.INVALID})


@dataclass(frozen=True)
class MenuResult:
    outcome: MenuOutcome
    language: str
    rounds: int
    key: str | None = None


def option_key(index: int) -> str:
    """The key of the menu's ``index``-th language (0 -> ``"1"``)."""
    return str(index + 1)


def language_for_key(options: Sequence[str], key: str | None) -> str | None:
    """The language ``key`` chooses, or None for a key that is no option."""
    if key is None or len(key) != 1 or not key.isdigit() or key == "0":
        return None
    index = int(key) - 1
    return options[index] if index < len(options) else None


def menu_media(prompts: PromptCatalogue, options: Sequence[str]) -> list[str]:
    """Per option, its sentence and its key, both in the option's own language."""
    media: list[str] = []
    for i, lang in enumerate(options):
        media.append(prompts.prompt("language-option", lang).media)
        media.append(prompts.digit_media(lang, option_key(i)))
    return media


async def offer_menu(port: CallPort, prompts: PromptCatalogue, options: Sequence[str], current: str, *,
                     timeout: float, repeats: int) -> MenuResult:
    """Play the menu until a key chooses a language or the rounds run out.  CallerHungUp
    (and the port's other failures) propagate: the flow writes them down."""
    media = menu_media(prompts, options)
    invalid = prompts.prompt("language-invalid", current).media
    port.take_digits()  # keys pressed during the announcement do not choose anything
    outcome, key = MenuOutcome.NO_INPUT, None
    rounds = 0
    for rounds in range(1, repeats + 2):
        await port.play(media, "language_menu")
        heard = port.take_digits()
        key = heard[0] if heard else await port.read_digit(timeout)
        if key is None:
            outcome = MenuOutcome.NO_INPUT
            continue
        chosen = language_for_key(options, key)
        if chosen is not None:
            return MenuResult(MenuOutcome.CHOSEN, chosen, rounds, key)
        outcome = MenuOutcome.INVALID
        await port.play([invalid], "language_invalid")
        port.take_digits()
    return MenuResult(outcome, current, rounds, key)
