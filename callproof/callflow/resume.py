"""Where a resumed call stands, from facts rather than guesses (the ARI application
restarts a call's flow after a lost link; docs/architecture.md#after-an-ari-drop).

The flow's own columns say most of it (status, consent outcome, readings counted, the
playback id Asterisk accepted); what only the channel knows -- whether MixMonitor runs on
our file -- is asked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .port import CallPort

#: Set by MixMonitor on the channel to the file it records into (Asterisk 22, both transports).
MIXMONITOR_VARIABLE = "MIXMONITOR_FILENAME"


def unfinished_recording(recordings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of the call's recording rows, the one still 'recording' (created, MixMonitor perhaps
    started, the call's status not yet 'recording'), or None."""
    rows = [r for r in recordings if r["state"] == "recording"]
    return rows[-1] if rows else None


async def mixmonitor_runs_on(port: CallPort, path: Path) -> bool:
    """True when the channel's MixMonitor records into ``path`` already."""
    return await port.get_variable(MIXMONITOR_VARIABLE) == str(path)
