"""The language menu after the announcement, against a scripted port: what the caller
hears in which order, what a key / no key / a wrong key does, how many rounds at most."""

from __future__ import annotations

import pytest

from callproof.callflow.language_menu import MenuOutcome, language_for_key, menu_media, offer_menu
from callproof.callflow.port import CallerHungUp
from tests.fakes import FakePrompts

LANGS = ("es", "ca", "eu", "gl")


class ScriptedPort:
    """``during``: keys heard while each menu round plays (ARI hears them); ``after``:
    what each read_digit returns in turn (None: the timeout)."""

    def __init__(self, *, during=(), after=(), pending=(), hangup_on_round=None):
        self.during, self.after = list(during), list(after)
        self.buffer = list(pending)  # keys pressed during the announcement
        self.hangup_on_round = hangup_on_round
        self.heard: list[tuple[str, list[str]]] = []
        self.timeouts: list[float] = []

    async def play(self, media, what, on_accepted=None):
        self.heard.append((what, list(media)))
        if what == "language_menu":
            rounds = sum(1 for w, _ in self.heard if w == "language_menu")
            if rounds == self.hangup_on_round:
                raise CallerHungUp("16")
            self.buffer += list(self.during.pop(0) if self.during else "")

    def take_digits(self):
        keys, self.buffer = self.buffer, []
        return keys

    async def read_digit(self, seconds):
        self.timeouts.append(seconds)
        return self.after.pop(0) if self.after else None


async def menu(port, options=("es", "ca", "eu"), current="ca", repeats=1):
    return await offer_menu(port, FakePrompts(languages=LANGS), options, current, timeout=4.0, repeats=repeats)


def test_each_option_is_spoken_in_its_own_language_with_its_key():
    assert menu_media(FakePrompts(languages=LANGS), ("es", "ca", "eu")) == [
        "sound:/prompts/es/language-option", "sound:/prompts/es/digits/1",
        "sound:/prompts/ca/language-option", "sound:/prompts/ca/digits/2",
        "sound:/prompts/eu/language-option", "sound:/prompts/eu/digits/3"]


@pytest.mark.parametrize("key, language", [("1", "es"), ("3", "eu"), ("4", None), ("0", None), ("*", None),
                                           ("#", None), (None, None), ("12", None)])
def test_keys_to_languages(key, language):
    assert language_for_key(("es", "ca", "eu"), key) == language


async def test_a_key_during_the_menu_chooses_at_once():
    port = ScriptedPort(during=["3"])
    result = await menu(port)
    assert (result.outcome, result.language, result.rounds, result.key) == (MenuOutcome.CHOSEN, "eu", 1, "3")
    assert [w for w, _ in port.heard] == ["language_menu"] and port.timeouts == []


async def test_a_key_after_the_menu_chooses_agi_style():
    port = ScriptedPort(after=["1"])
    result = await menu(port)
    assert (result.outcome, result.language) == (MenuOutcome.CHOSEN, "es")
    assert port.timeouts == [4.0]


async def test_keys_pressed_during_the_announcement_choose_nothing():
    port = ScriptedPort(pending=["2"], after=[None, None])
    result = await menu(port)
    assert (result.outcome, result.language) == (MenuOutcome.NO_INPUT, "ca")


async def test_no_key_offers_the_menu_again_then_keeps_the_language():
    port = ScriptedPort(after=[None, None, "1"])
    result = await menu(port, repeats=1)
    assert (result.outcome, result.language, result.rounds) == (MenuOutcome.NO_INPUT, "ca", 2)
    assert [w for w, _ in port.heard] == ["language_menu", "language_menu"]  # at most 1 + repeats rounds


async def test_a_wrong_key_is_answered_in_the_current_language_and_the_menu_repeats():
    port = ScriptedPort(after=["7", "2"])
    result = await menu(port, current="eu")
    assert (result.outcome, result.language, result.rounds) == (MenuOutcome.CHOSEN, "ca", 2)
    assert port.heard[1] == ("language_invalid", ["sound:/prompts/eu/language-invalid"])
    assert [w for w, _ in port.heard] == ["language_menu", "language_invalid", "language_menu"]


async def test_a_wrong_key_in_the_last_round_keeps_the_language():
    port = ScriptedPort(after=["9"])
    result = await menu(port, repeats=0)
    assert (result.outcome, result.language, result.rounds) == (MenuOutcome.INVALID, "ca", 1)


async def test_a_hang_up_during_the_menu_reaches_the_flow():
    with pytest.raises(CallerHungUp):
        await menu(ScriptedPort(after=[None], hangup_on_round=2))
