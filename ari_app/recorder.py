"""Recording through AMI MixMonitor, and finalising the file afterwards.

ARI cannot start MixMonitor, so while the channel stays in our Stasis
application we send the AMI ``MixMonitor`` action on it (panoramisk).  The
file name is built only from the protocol, the sanitised caller digits and
the time (see :mod:`callproof.naming`), so nothing the caller controls reaches
a path.  When Asterisk reports ``MixMonitorStop`` or the channel's ``Hangup``,
the file is measured (size, duration, sha256) off the event loop and the
recording row is finalised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from panoramisk import Manager

from callproof.logs import event

log = logging.getLogger("callproof.recording")

# Events we need from AMI; everything else is filtered out by Asterisk so a
# busy PBX does not make us parse thousands of Newexten/VarSet events.
AMI_EVENTS = ("MixMonitorStart", "MixMonitorStop", "Hangup")
# The session's event classes: the three above are all class "call"; "system" keeps
# FullyBooted, on which panoramisk resends actions a reconnect interrupted.  Asterisk
# queues an event to a session only if its class is in the mask, so Newexten and
# VarSet (class "dialplan", most of a call's events) never reach the session's
# queue, thread and filters.
AMI_EVENT_CLASSES = "call,system"


class RecordingError(Exception):
    """MixMonitor could not be started."""


@dataclass(frozen=True)
class RecordingFacts:
    size_bytes: int
    duration_ms: int
    sha256: str


class NotReady(Exception):
    """The file is still being written (size changing or WAV header not final)."""


def measure_recording(path: Path) -> RecordingFacts:
    """Size, duration and sha256 of a finished WAV file (blocking: run in a thread)."""
    st = os.stat(path, follow_symlinks=False)
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    try:
        with wave.open(str(path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
            expected = 44 + frames * w.getsampwidth() * w.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise NotReady(f"WAV header not readable yet: {exc}") from None
    if st.st_size > 0 and frames == 0 and st.st_size > 44:
        raise NotReady("WAV header not finalised yet")
    if abs(expected - st.st_size) > 4096:
        raise NotReady(f"WAV header says {expected} bytes, file has {st.st_size}")
    if os.stat(path, follow_symlinks=False).st_size != st.st_size:
        raise NotReady("file still growing")
    try:  # recordings are evidence and personal data: never world-readable
        if st.st_mode & 0o007:
            os.chmod(path, st.st_mode & 0o770)
    except PermissionError:
        log.warning("cannot tighten permissions of %s (owned by another user)", path)
    return RecordingFacts(size_bytes=st.st_size, duration_ms=int(frames * 1000 / rate) if rate else 0,
                          sha256=digest.hexdigest())


async def wait_and_measure(path: Path, attempts: int = 40, delay: float = 0.25) -> RecordingFacts:
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await asyncio.to_thread(measure_recording, path)
        except (NotReady, FileNotFoundError) as exc:
            last = exc
            await asyncio.sleep(delay)
    raise RecordingError(f"{path}: {last}")


async def finalise_recording(db: Any, recording_id: int, path: Path, now_iso: str, attempts: int = 40) -> bool:
    """Measure the finished file and finalise its row (or mark it failed); audit either way."""
    row = await db.recordings.get(recording_id)
    protocol = row["protocol"] if row else None
    try:
        facts = await wait_and_measure(path, attempts=attempts)
    except RecordingError as exc:
        await db.recordings.fail(recording_id, str(exc))
        await db.audit.append("recording.failed", actor="callproof", protocol=protocol, subject=str(path),
                              details={"error": str(exc)})
        event(log, "recording.failed", logging.ERROR, recording_id=recording_id, path=str(path), error=str(exc))
        return False
    await db.recordings.finalise(recording_id, size_bytes=facts.size_bytes, duration_ms=facts.duration_ms,
                                 sha256=facts.sha256, finalised_at=now_iso)
    await db.audit.append("recording.finalised", actor="callproof", protocol=protocol, subject=str(path),
                          details={"sha256": facts.sha256, "size_bytes": facts.size_bytes,
                                   "duration_ms": facts.duration_ms})
    event(log, "recording.finalised", recording_id=recording_id, protocol=protocol, path=str(path),
          bytes=facts.size_bytes, duration_ms=facts.duration_ms, sha256=facts.sha256)
    return True


class AmiLink:
    """One AMI connection (panoramisk reconnects by itself) with an event filter."""

    def __init__(self, host: str, port: int, username: str, password: str):
        self._ready = asyncio.Event()
        # actions sent and events received by name; logged as 'ami.counts' on close
        self.counts: Counter[str] = Counter()
        self.manager = Manager(
            host=host, port=port, username=username, secret=password, events=AMI_EVENT_CLASSES,
            ping_delay=10, ping_interval=10, reconnect_timeout=2,
            on_login=self._on_login, on_disconnect=self._on_disconnect,
        )
        self.manager.register_event("*", self._count_event)

    def _on_login(self, manager: Manager) -> None:
        asyncio.ensure_future(self._install_filters())

    def _on_disconnect(self, manager: Manager, exc: Exception | None) -> None:
        self._ready.clear()
        log.warning("AMI connection lost; panoramisk reconnects")

    async def _install_filters(self) -> None:
        """Let only AMI_EVENTS (and FullyBooted) through, matched by event name.

        Asterisk 21+ compares the name's hash first (``MatchCriteria: name(X)``) and
        looks at the Event header of those events only; a filter without criteria is
        a regular expression run over the whole text of every event.  An Asterisk
        older than 21 ignores MatchCriteria and uses the Filter as that expression:
        "Hangup" then lets HangupRequest through too, which the handlers ignore.
        """
        try:
            for name in (*AMI_EVENTS, "FullyBooted"):
                await self.manager.send_action(
                    {"Action": "Filter", "Operation": "Add", "Filter": name,
                     "MatchCriteria": f"action(include),name({name}),header(Event),method(exact)"})
        except Exception:
            log.exception("could not install AMI event filters; continuing unfiltered")
        self._ready.set()
        event(log, "ami.ready")

    async def connect(self, timeout: float = 10.0) -> None:
        self.manager.connect()
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def on_event(self, name: str, callback: Callable[[Any, Any], Any]) -> None:
        self.manager.register_event(name, callback)

    def _count_event(self, manager: Manager, message: Any) -> None:
        self.counts[f"event {message.get('Event')}"] += 1

    async def action(self, fields: dict[str, str], timeout: float = 5.0) -> Any:
        if not self._ready.is_set():
            await self.wait_ready(timeout)
        self.counts[f"action {fields.get('Action')}"] += 1
        return await asyncio.wait_for(self.manager.send_action(fields), timeout)

    def close(self) -> None:
        if self.counts:
            event(log, "ami.counts", counts=dict(sorted(self.counts.items())))
            self.counts.clear()
        self.manager.close()


class Recorder:
    """Starts MixMonitor on a channel and finalises the file when it stops."""

    def __init__(self, ami: AmiLink, db: Any, options: str,
                 now_iso: Callable[[], str], on_finalised: Callable[[str], Awaitable[None]] | None = None):
        self.ami = ami
        self.db = db
        self.options = options
        self.now_iso = now_iso
        self.on_finalised = on_finalised
        self._by_uniqueid: dict[str, tuple[int, Path]] = {}
        self._finalising: dict[str, asyncio.Task[None]] = {}
        self.started: dict[str, asyncio.Future[None]] = {}
        ami.on_event("MixMonitorStart", self._on_start_event)
        ami.on_event("MixMonitorStop", self._on_stop_event)
        ami.on_event("Hangup", self._on_stop_event)

    async def start(self, channel_name: str, uniqueid: str, path: Path) -> None:
        """Ask Asterisk to record ``channel_name`` into ``path``; wait for MixMonitorStart."""
        started = asyncio.get_running_loop().create_future()
        self.started[uniqueid] = started
        try:
            reply = await self.ami.action(
                {"Action": "MixMonitor", "Channel": channel_name, "File": str(path), "Options": self.options})
            if not getattr(reply, "success", False):
                raise RecordingError(f"MixMonitor refused: {reply.get('Message') if hasattr(reply, 'get') else reply}")
            await asyncio.wait_for(started, 5.0)
        except (TimeoutError, OSError, AttributeError) as exc:
            raise RecordingError(f"MixMonitor not confirmed: {type(exc).__name__}: {exc}") from None
        finally:
            self.started.pop(uniqueid, None)

    def track(self, uniqueid: str, recording_id: int, path: Path) -> None:
        """Finalise ``recording_id`` when this channel's MixMonitor stops or it hangs up."""
        self._by_uniqueid[uniqueid] = (recording_id, path)

    def is_tracking(self, uniqueid: str) -> bool:
        return uniqueid in self._by_uniqueid

    def _on_start_event(self, manager: Any, message: Any) -> None:
        fut = self.started.get(message.get("Uniqueid", ""))
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_stop_event(self, manager: Any, message: Any) -> None:
        uniqueid = message.get("Uniqueid", "")
        if uniqueid in self._by_uniqueid and uniqueid not in self._finalising:
            self._finalising[uniqueid] = asyncio.ensure_future(self.finalise(uniqueid))

    async def finalise(self, uniqueid: str) -> None:
        recording_id, path = self._by_uniqueid[uniqueid]
        try:
            await finalise_recording(self.db, recording_id, path, self.now_iso())
        finally:
            self._by_uniqueid.pop(uniqueid, None)
            self._finalising.pop(uniqueid, None)
        if self.on_finalised is not None:
            await self.on_finalised(uniqueid)

    async def drain(self) -> None:
        """Wait for finalisations under way (shutdown, tests)."""
        while self._finalising:
            await asyncio.gather(*list(self._finalising.values()), return_exceptions=True)
