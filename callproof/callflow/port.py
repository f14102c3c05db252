"""What the compliance flow needs from a call, whatever carries it (ARI or AGI).

:class:`CallPort` is the whole conversation with the channel; the two adapters
(``ari_app/call_port.py``, ``agi_scripts/call_port.py``) only translate it to
their transport.  Every way a transport says "the caller is gone" (an ARI 404/409
or ending event, an AGI ``HANGUP`` / ``511`` / closed pipe) reaches the flow as
:class:`CallerHungUp`; the other failures the flow tells apart are
:class:`PlaybackFailed` and :class:`RecordingError`.

Where the transports differ, the difference is a capability of the port, not a
second flow:

* keys pressed while a prompt plays: ARI hears them (:meth:`CallPort.take_digits`
  returns them, so ``*`` during a reading earns a replay); AGI ``Playback`` does not
  (always ``[]``), so on AGI the replay key counts only within the replay window, and
  a language-menu key only once the menu has been played (:meth:`CallPort.read_digit`);
* the hang-up cause: ARI knows it from the ending event, at once; AGI learns it in
  the hangup handler (the ``finalise`` step, ``HANGUPCAUSE``), so
  :meth:`CallPort.hangup_cause` returns None there;
* the hand-off: ARI sends the channel on to the dialplan; on AGI the script returns
  and the dialplan goes on by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .reasons import Reason

#: The row id a port is given for a call whose row (or recording row) still waits in the
#: journal (storage unavailable, ``call_store.py``): the call is watched all the same.
UNKNOWN_ROW = 0


class CallerHungUp(Exception):
    """The caller left (or the channel left our control) while the flow was using it."""

    def __init__(self, cause: str | None = None):
        super().__init__(cause or "hangup")
        self.cause = cause


class LinkLost(Exception):
    """The link to the channel's transport broke (ARI REST refused by a closed session, a
    reset connection): the channel may be fine.  The flow treats it like cancellation: the
    persisted state stays as it is, nothing is marked failed, and the application resumes
    the call from there once the link is back."""


class PlaybackFailed(Exception):
    """Asterisk could not play a prompt (missing or unreadable file)."""

    def __init__(self, message: str, reason: Reason = Reason.PLAYBACK_FAILED):
        super().__init__(message)
        self.reason = reason


class RecordingError(Exception):
    """MixMonitor could not be started; ``caller_gone`` when the channel had hung up too."""

    def __init__(self, message: str, *, caller_gone: bool = False):
        super().__init__(message)
        self.caller_gone = caller_gone


T = TypeVar("T")

#: Called with the playback's id once the transport has accepted a play request.
OnAccepted = Callable[[str], Awaitable[None]]


async def finish_before_cancel(work: Coroutine[Any, Any, T], grace: float = 5.0) -> T:
    """Run ``work`` to its end even if the caller is cancelled meanwhile (then wait up to
    ``grace`` seconds for it and re-raise the cancellation).  For the short sequences whose
    half-done state would be ambiguous on resume: "Asterisk accepted the playback" and "we
    wrote that down", "MixMonitor started" and "the row says recording"."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait([task], timeout=grace)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise


@dataclass(frozen=True)
class CallFacts:
    """What the dialplan told us about the call when it handed it over (no round trip)."""

    channel_id: str             # Asterisk's uniqueid: the key of the call row
    dialled: str                # the DID (digits), as the dialplan passed it
    linkedid: str
    language: str               # CALLPROOF_LANGUAGE ('' = decide from the channel / default)
    channel_language: str | None
    retention_class: str        # CALLPROOF_RETENTION_CLASS ('' = by the rules)
    entry_context: str          # CALLPROOF_ENTRY_CONTEXT, else the context the call runs in
    served_by: str = ""         # the path serving the call (storage's SERVED_BY_VALUES; '' = not known)
    ari_app: str = ""           # the ARI application (instance) the call is in ('' = not ARI)


@dataclass(frozen=True)
class CallerId:
    number: str                 # exactly as received; may be empty or hostile
    name: str


class CallPort(Protocol):
    """One call's channel, as the flow sees it."""

    facts: CallFacts

    async def caller_id(self) -> CallerId:
        """The caller's number and name (read once, when the call row is created)."""
        ...

    async def answer(self) -> None:
        """Answer the channel if it is not up yet."""
        ...

    async def play(self, media: list[str], what: str, on_accepted: OnAccepted | None = None) -> None:
        """Play ``media`` (``sound:`` URIs) in full; ``what`` names it for timings and ids.
        Keys do not interrupt it.  ``on_accepted(playback_id)`` runs once the transport has
        accepted the request, where it has such a moment (ARI; never on AGI), and is
        finished even if the flow is cancelled meanwhile.  CallerHungUp / PlaybackFailed /
        LinkLost."""
        ...

    async def follow_playback(self, playback_id: str, what: str) -> bool:
        """A playback accepted before the link broke: True once it finished in full (waited
        for if it still plays), False when the transport no longer has it although the
        channel is up (it ended while we were away).  CallerHungUp when the channel is gone."""
        ...

    def take_digits(self) -> list[str]:
        """Keys pressed since the last call (only what the transport could hear)."""
        ...

    async def wait_for_digit(self, key: str, seconds: float) -> bool:
        """True when ``key`` is pressed within ``seconds``."""
        ...

    async def read_digit(self, seconds: float) -> str | None:
        """The next key pressed within ``seconds`` (the language menu), None when none is."""
        ...

    async def get_variable(self, name: str) -> str | None:
        """A channel variable; None when it is not set."""
        ...

    async def set_variable(self, name: str, value: str) -> None:
        ...

    async def start_recording(self, path: Path, recording_id: int) -> None:
        """MixMonitor into ``path`` (its row is ``recording_id``); RecordingError if it did not start."""
        ...

    async def adopt_recording(self, path: Path, recording_id: int) -> None:
        """MixMonitor already runs into ``path`` (a resumed call): finalise ``recording_id`` when it stops."""
        ...

    async def hand_off(self, call_id: int | None) -> None:
        """Send the call on to the hand-off context (``call_id``: watch it until it ends)."""
        ...

    async def hangup_cause(self) -> int | None:
        """The Q.850 cause of the far end's hang-up, when the transport knows it now."""
        ...
