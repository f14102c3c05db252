"""What a caller lived through, for the storage fault tests: Asterisk's own record of it.

The files played on the call's channel come from Asterisk's verbose log (``Playing '...'``);
the times from the ARI events Asterisk sent about that channel (``StasisStart``,
``PlaybackStarted`` / ``PlaybackFinished``, ``StasisEnd`` when the call went on to the
hand-off), each stamped by Asterisk.  The silence a caller heard is every gap in that
timeline: arrival to the first prompt, between prompts, last prompt to the hand-off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_PLAYING = re.compile(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'")


@dataclass
class Heard:
    channel: str
    names: list[str] = field(default_factory=list)           # files played, pauses left out
    timeline: list[tuple[str, float]] = field(default_factory=list)  # (event type, epoch seconds)

    def count(self, stem: str) -> int:
        return sum(1 for name in self.names if name == stem)

    def silences(self) -> list[float]:
        """Gaps (s): StasisStart → first PlaybackStarted, each PlaybackFinished → next
        PlaybackStarted, the last PlaybackFinished → StasisEnd."""
        gaps, quiet_since = [], None
        for kind, at in self.timeline:
            if kind == "StasisStart":
                quiet_since = at
            elif kind in ("PlaybackStarted", "StasisEnd") and quiet_since is not None:
                gaps.append(round(at - quiet_since, 3))
                quiet_since = None
            elif kind == "PlaybackFinished":
                quiet_since = at
        return gaps

    def longest_silence(self) -> float:
        return max(self.silences(), default=0.0)


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def heard_on(console_log: Path, events_by_channel: dict[str, list[dict[str, Any]]], callee: str) -> Heard:
    """The record of the ``;2`` channel ``callee`` (``Local/...;2``)."""
    heard = Heard(callee)
    for line in console_log.read_text(errors="replace").splitlines():
        m = _PLAYING.search(line)
        if m and m["chan"] == callee:
            name = Path(m["file"]).name.rsplit(".", 1)[0]
            if name != "pause":
                heard.names.append(name)
    for events in events_by_channel.values():
        if not any(e.get("type") == "StasisStart" and e.get("channel", {}).get("name") == callee for e in events):
            continue
        for e in events:
            if e.get("type") in ("StasisStart", "PlaybackStarted", "PlaybackFinished", "StasisEnd") \
                    and "timestamp" in e:
                heard.timeline.append((e["type"], _epoch(e["timestamp"])))
        break
    heard.timeline.sort(key=lambda item: item[1])
    return heard
