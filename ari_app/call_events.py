"""Per-call event inbox.

aioari awaits each event handler before reading the next event, so the
handler only routes events into the owning call's inbox (no awaiting, no I/O)
and every call's flow runs as its own task, pulling from its inbox.  A hang-up
or the channel leaving Stasis wakes whatever the flow is waiting for with
:class:`CallerHungUp`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from callproof.callflow.port import CallerHungUp

__all__ = ["CallInbox", "CallerHungUp", "channel_id_of", "hangup_cause"]

Event = dict[str, Any]

# Events after which the flow can no longer act on the channel.
ENDING_EVENTS = frozenset({"ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"})


def channel_id_of(event: Event) -> str | None:
    """The channel an ARI event concerns, including playbacks on a channel."""
    channel = event.get("channel")
    if isinstance(channel, dict):
        return channel.get("id")
    playback = event.get("playback")
    if isinstance(playback, dict):
        target = playback.get("target_uri", "")
        if target.startswith("channel:"):
            return target[len("channel:"):]
    return None


def hangup_cause(event: Event) -> str:
    cause = event.get("cause_txt") or event.get("cause")
    if cause is None and isinstance(event.get("channel"), dict):
        cause = event["channel"].get("state")
    return f"{event.get('type')}:{cause}" if cause is not None else str(event.get("type"))


class CallInbox:
    """Events for one channel, consumed by that call's flow task."""

    def __init__(self, channel_id: str):
        self.channel_id = channel_id
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.ended: Event | None = None
        self.dtmf: list[str] = []

    def push(self, event: Event) -> None:
        if event.get("type") == "ChannelDtmfReceived":
            self.dtmf.append(str(event.get("digit", "")))
        if event.get("type") in ENDING_EVENTS and self.ended is None:
            self.ended = event
        self._queue.put_nowait(event)

    def take_dtmf(self) -> list[str]:
        digits, self.dtmf = self.dtmf, []
        return digits

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float | None = None) -> Event:
        """Next event matching ``predicate``; CallerHungUp if the call ends first.

        Raises ``TimeoutError`` when ``timeout`` seconds pass with no match.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self.ended is not None and self._queue.empty():
                    raise CallerHungUp(hangup_cause(self.ended))
                event = await self._queue.get()
                if predicate(event):
                    return event
                if event.get("type") in ENDING_EVENTS:
                    raise CallerHungUp(hangup_cause(event))
