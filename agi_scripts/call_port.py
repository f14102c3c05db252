"""The call port over AGI (classic script and FastAGI share it): AGI commands.

``EXEC Playback`` (one command per prompt list; keys do not interrupt it, and it
does not report them), ``WAIT FOR DIGIT``, ``GET/SET VARIABLE``, ``EXEC MixMonitor``
(checked through ``MIXMONITOR_FILENAME``), ``CHANNEL STATUS`` after a failed
command.  The hand-off is the script returning: the dialplan goes on by itself.
Every way the link says the caller is gone (:class:`~.channel.AgiHangup`) becomes
:class:`~callproof.callflow.port.CallerHungUp`.  Commands go one at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from callproof.callflow.port import (
    CallerHungUp,
    CallerId,
    CallFacts,
    OnAccepted,
    PlaybackFailed,
    RecordingError,
)
from callproof.callflow.reasons import Reason
from callproof.callflow.timings import CallTimings
from callproof.config import Config

from .channel import AgiChannel, AgiHangup, AgiReply, quote

#: CHANNEL STATUS results of a channel that is still there (ringing, ring, up).
ALIVE = ("4", "5", "6")
#: After a failed playback, how often and how far apart the channel is looked at again before
#: the failure is called a failure rather than a hang-up (about one second, on that path only).
HANGUP_SETTLE_CHECKS = 10
HANGUP_SETTLE_SECONDS = 0.1


def strip_sound(media: str) -> str:
    """ARI media ``sound:/abs/path`` -> what Playback/STREAM FILE take (no extension)."""
    return media[len("sound:"):] if media.startswith("sound:") else media


#: The AGI argument after the entry context with which the shipped dialplan marks a call it
#: runs on an AGI path because the ARI application was not connected (dialplan/callproof.conf).
FALLBACK_MARK = "fallback"


def served_by(env: dict[str, str]) -> str:
    """``agi`` or ``fastagi`` (Asterisk sets ``agi_network: yes`` for an ``agi://`` request),
    with ``_fallback`` when the dialplan ran it in place of the ARI application."""
    network = env.get("agi_network", "") == "yes" or env.get("agi_request", "").startswith(("agi://", "hagi://"))
    path = "fastagi" if network else "agi"
    return f"{path}_fallback" if env.get("agi_arg_7", "") == FALLBACK_MARK else path


def facts_of(env: dict[str, str]) -> CallFacts:
    """The AGI arguments after the step, as with ``Stasis()`` (dialplan/callproof-agi.conf):
    DID, linkedid, language, retention class, entry context; then ``fallback`` when the
    shipped ARI entry runs the call here because ``Stasis()`` failed."""
    args = [env.get(f"agi_arg_{i}", "") for i in range(2, 7)]
    channel_id = env.get("agi_uniqueid", "")
    return CallFacts(channel_id=channel_id, dialled=args[0] or env.get("agi_extension", ""),
                     linkedid=args[1] or channel_id, language=args[2], channel_language=env.get("agi_language"),
                     retention_class=args[3], entry_context=args[4] or env.get("agi_context", ""),
                     served_by=served_by(env))


class AgiCallPort:
    def __init__(self, channel: AgiChannel, config: Config, timings: CallTimings | None = None):
        self.ch, self.config = channel, config
        self.facts = facts_of(channel.env)
        self.timings = timings or CallTimings()
        self._one_at_a_time = asyncio.Lock()

    async def command(self, line: str) -> AgiReply:
        async with self._one_at_a_time:
            try:
                return await self.ch.command(line)
            except AgiHangup as exc:
                raise CallerHungUp(f"AGI: {exc}") from None

    async def _check_alive(self) -> None:
        """After a failed command: CallerHungUp unless the channel is still up (or ringing)."""
        reply = await self.command("CHANNEL STATUS")
        if reply.result not in ALIVE:
            raise CallerHungUp(f"AGI: channel status {reply.result}")

    async def _still_up_after_a_failure(self) -> None:
        """CallerHungUp if a failed command failed because the caller hung up.  Asterisk notices
        a hang-up between commands, so the command right after a Playback cut by it can still
        see the channel up (a FastAGI call hung up in the announcement was recorded 'failed',
        not 'abandoned_in_consent'): look again for a moment before calling it a failure."""
        for _ in range(HANGUP_SETTLE_CHECKS):
            await self._check_alive()
            await asyncio.sleep(HANGUP_SETTLE_SECONDS)
        await self._check_alive()

    async def caller_id(self) -> CallerId:
        return CallerId(number=await self.get_variable("CALLERID(num)") or "",
                        name=await self.get_variable("CALLERID(name)") or "")

    async def answer(self) -> None:
        if (await self.command("ANSWER")).failed:
            await self._check_alive()

    async def play(self, media: list[str], what: str, on_accepted: OnAccepted | None = None) -> None:
        """``on_accepted`` is never called: an AGI ``Playback`` has no "accepted, now
        playing" moment between the request and its end."""
        files = [strip_sound(m) for m in media]
        for f in files:
            if "&" in f or "," in f:
                raise PlaybackFailed(f"prompt path {f!r} contains '&' or ','", Reason.PROMPT_MISSING)
        self.timings.mark(f"{what}_playback_started")
        reply = await self.command(f"EXEC Playback {quote('&'.join(files))}")
        if reply.failed or await self.get_variable("PLAYBACKSTATUS") != "SUCCESS":
            await self._still_up_after_a_failure()
            raise PlaybackFailed(f"{what} playback failed (files {files[0]!r}...)")
        self.timings.mark_again(f"{what}_playback_finished")

    async def follow_playback(self, playback_id: str, what: str) -> bool:
        """Never reached: AGI stores no playback ids (see play)."""
        raise PlaybackFailed(f"AGI cannot follow playback {playback_id!r}")

    def take_digits(self) -> list[str]:
        return []  # Playback neither stops for keys nor reports them

    async def wait_for_digit(self, key: str, seconds: float) -> bool:
        reply = await self.command(f"WAIT FOR DIGIT {int(seconds * 1000)}")
        if reply.failed:
            await self._check_alive()
            return False
        return reply.result not in ("", "0") and chr(int(reply.result)) == key

    async def read_digit(self, seconds: float) -> str | None:
        reply = await self.command(f"WAIT FOR DIGIT {int(seconds * 1000)}")
        if reply.failed:
            await self._check_alive()
            return None
        if reply.result in ("", "0") or not reply.result.isdigit():
            return None
        return chr(int(reply.result))

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command(f"GET VARIABLE {quote(name)}")
        return reply.data if reply.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {name} {quote(value)}")

    async def start_recording(self, path: Path, recording_id: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        args = str(path)
        if self.config.recording.mixmonitor_options:
            args += "," + self.config.recording.mixmonitor_options
        reply = await self.command(f"EXEC MixMonitor {quote(args)}")
        if reply.failed:
            await self._still_up_after_a_failure()
        started_file = await self.get_variable("MIXMONITOR_FILENAME")
        if reply.failed or started_file != str(path):
            raise RecordingError(f"MixMonitor did not start (result {reply.result}, "
                                 f"MIXMONITOR_FILENAME {started_file or ''!r})")

    async def adopt_recording(self, path: Path, recording_id: int) -> None:
        return None  # the hangup handler (the finalise step) finalises the recording

    async def hand_off(self, call_id: int | None) -> None:
        return None  # the script returns; the dialplan goes on to [callproof-handoff]

    async def hangup_cause(self) -> int | None:
        return None  # known in the hangup handler: the finalise step gets HANGUPCAUSE


