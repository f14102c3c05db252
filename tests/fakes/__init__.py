"""The fakes every call-flow test shares: one scripted ARI (:mod:`.ari`), one scripted
AGI peer (:mod:`.agi`), one prompt catalogue (:mod:`.prompts`)."""

from .agi import FakeAsterisk
from .ari import FakeRecorder, ScriptedAri, start_event
from .prompts import FakePrompts

FakeAri = ScriptedAri

__all__ = ["FakeAri", "FakeAsterisk", "FakePrompts", "FakeRecorder", "ScriptedAri", "start_event"]
