"""Recording through AMI MixMonitor, and finalising the file afterwards.

ARI cannot start MixMonitor, so while the channel stays in our Stasis
application we send the AMI ``MixMonitor`` action on it (panoramisk).  The
file name is built only from the protocol, the sanitised caller digits and
the time (see :mod:`callproof.naming`), so nothing the caller controls reaches
a path.  When Asterisk reports ``MixMonitorStop`` or the channel's ``Hangup``,
the file is measured and its row finalised (``callproof/callflow/recording_files.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from panoramisk import Manager

from callproof.callflow.port import UNKNOWN_ROW, RecordingError
from callproof.callflow.queue_wait import QUEUE_EVENT_CLASS, QUEUE_EVENTS
from callproof.callflow.recording_files import (  # noqa: F401
    NotReady,
    RecordingFacts,
    finalise_recording,
    journal_recording_end,
    keyring_of,
    measure_recording,
    wait_and_measure,
)
from callproof.logs import event
from callproof.storage import is_storage_error
from callproof.storage.journal import Journal

from .logins import LoginFailures

log = logging.getLogger("callproof.recording")

# Events we need from AMI; everything else is filtered out by Asterisk so a
# busy PBX does not make us parse thousands of Newexten/VarSet events.
AMI_EVENTS = ("MixMonitorStart", "MixMonitorStop", "Hangup", *QUEUE_EVENTS)
# The session's event classes: the three above are all class "call", the queue events
# (time to agent, callproof/callflow/queue_wait.py) class "agent"; "system" keeps
# FullyBooted, on which panoramisk resends actions a reconnect interrupted.  Asterisk
# queues an event to a session only if its class is in the mask, so Newexten and
# VarSet (class "dialplan", most of a call's events) never reach the session's
# queue, thread and filters.
AMI_EVENT_CLASSES = f"call,system,{QUEUE_EVENT_CLASS}"
# Actions panoramisk must not send again after a reconnect: a MixMonitor whose reply
# was lost with the link may have started; sent again it would open a second writer
# on the same file.  The flow asks the channel instead (MIXMONITOR_FILENAME).
FORGETABLE_ACTIONS = ("ping", "login", "mixmonitor")
#: How long a recording start waits for AMI to be back (a lost link) before it fails.
AMI_READY_WAIT_S = 10.0


class AmiLink:
    """One AMI connection (panoramisk reconnects by itself) with an event filter."""

    def __init__(self, host: str, port: int, username: str, password: str, max_login_failures: int = 5):
        self._ready = asyncio.Event()
        self._refusals = LoginFailures("AMI", username, max_login_failures)
        #: set with LoginRefused once Asterisk refused the login max_login_failures times in a row
        self.refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._filters: asyncio.Future[None] | None = None
        self._logins = 0
        self._after_relogin: list[Callable[[], Awaitable[None]]] = []
        self._relogin_tasks: set[asyncio.Task[None]] = set()
        # actions sent and events received by name; logged as 'ami.counts' on close
        self.counts: Counter[str] = Counter()
        self.manager = ReportingManager(
            self._login_answered, host=host, port=port, username=username, secret=password, events=AMI_EVENT_CLASSES,
            ping_delay=10, ping_interval=10, reconnect_timeout=1, forgetable_actions=FORGETABLE_ACTIONS,
            on_login=self._on_login, on_disconnect=self._on_disconnect,
        )
        self.manager.register_event("*", self._count_event)

    def _login_answered(self, ok: bool, answer: Any) -> None:
        if ok:
            self._refusals.succeeded()
            return
        failed = self._refusals.refused(str(answer.get("Message", "")) if hasattr(answer, "get") else "")
        if failed is not None and not self.refused.done():
            self.refused.set_exception(failed)
            self.manager.stopped = True  # no further attempts: the password will not change by itself
            self.manager.close()

    def _on_login(self, manager: Manager) -> None:
        self._logins += 1
        self._filters = asyncio.ensure_future(self._install_filters())  # kept: a task nobody holds can vanish
        if self._logins > 1:  # logged in again after a lost link: events may have been missed
            for callback in self._after_relogin:
                task = asyncio.ensure_future(self._after(callback))
                self._relogin_tasks.add(task)
                task.add_done_callback(self._relogin_tasks.discard)

    def after_relogin(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` (once the filters are in place) each time AMI logs in again."""
        self._after_relogin.append(callback)

    async def _after(self, callback: Callable[[], Awaitable[None]]) -> None:
        try:
            await self.wait_ready(30)
            await callback()
        except Exception:
            log.exception("reconciling after the AMI reconnect failed")

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

    @property
    def ready(self) -> bool:
        """Logged in, with the event filters in place."""
        return self._ready.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connected, logged in and filtered; LoginRefused if Asterisk keeps refusing the login."""
        self.manager.connect()
        ready: asyncio.Future[Any] = asyncio.ensure_future(self._ready.wait())
        try:
            done, _ = await asyncio.wait((ready, self.refused), timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self.refused.done():
            self.refused.result()  # raises LoginRefused
        if not done:
            raise TimeoutError(f"AMI not ready within {timeout} s")

    async def wait_ready(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    def on_event(self, name: str, callback: Callable[[Any, Any], Any]) -> None:
        self.manager.register_event(name, callback)

    def _count_event(self, manager: Manager, message: Any) -> None:
        self.counts[f"event {message.get('Event')}"] += 1

    async def action(self, fields: dict[str, str], timeout: float = 5.0) -> Any:
        if not self._ready.is_set():
            await self.wait_ready(timeout)
        self.counts[f"action {fields.get('Action')}"] += 1
        async with asyncio.timeout(timeout):
            return await self.manager.send_action(fields)

    def close(self) -> None:
        if self.counts:
            event(log, "ami.counts", counts=dict(sorted(self.counts.items())))
            self.counts.clear()
        self.manager.close()


class ReportingManager(Manager):
    """panoramisk's Manager, telling us how each Login was answered (it only reconnects)."""

    def __init__(self, answered: Callable[[bool, Any], None], **config: Any):
        super().__init__(**config)
        self._answered = answered
        self.stopped = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.stopped:  # panoramisk schedules a reconnect after every lost connection
            return None
        return super().connect(*args, **kwargs)

    def login(self, future: asyncio.Future[Any]) -> bool:
        ok = bool(super().login(future))
        self._answered(ok, future.result())
        return ok


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
        self.journal: Journal | None = None  # where a recording's end waits while storage is unavailable
        ami.on_event("MixMonitorStart", self._on_start_event)
        ami.on_event("MixMonitorStop", self._on_stop_event)
        ami.on_event("Hangup", self._on_stop_event)

    async def start(self, channel_name: str, uniqueid: str, path: Path) -> None:
        """Ask Asterisk to record ``channel_name`` into ``path``; wait for MixMonitorStart."""
        started = asyncio.get_running_loop().create_future()
        self.started[uniqueid] = started
        try:
            await self.ami.wait_ready(AMI_READY_WAIT_S)  # a lost AMI link: panoramisk is reconnecting
            reply = await self.ami.action(
                {"Action": "MixMonitor", "Channel": channel_name, "File": str(path), "Options": self.options})
            if not getattr(reply, "success", False):
                raise RecordingError(f"MixMonitor refused: {reply.get('Message') if hasattr(reply, 'get') else reply}")
            async with asyncio.timeout(5.0):
                await started
        except (TimeoutError, OSError, AttributeError) as exc:
            raise RecordingError(f"MixMonitor not confirmed: {type(exc).__name__}: {exc}") from None
        finally:
            self.started.pop(uniqueid, None)

    def track(self, uniqueid: str, recording_id: int, path: Path) -> None:
        """Finalise ``recording_id`` when this channel's MixMonitor stops or it hangs up."""
        self._by_uniqueid[uniqueid] = (recording_id, path)

    def untrack(self, uniqueid: str) -> None:
        """MixMonitor did not start (the flow marked the row failed): nothing to finalise."""
        self._by_uniqueid.pop(uniqueid, None)

    def tracked(self) -> set[str]:
        """The channels whose recordings wait for their MixMonitorStop / Hangup."""
        return set(self._by_uniqueid)

    def is_tracking(self, uniqueid: str) -> bool:
        return uniqueid in self._by_uniqueid

    def stats(self) -> dict[str, int]:
        """Recordings being tracked, finalised and started now (Application.stats)."""
        return {"recordings_tracked": len(self._by_uniqueid), "recordings_finalising": len(self._finalising),
                "recordings_starting": len(self.started)}

    def _on_start_event(self, manager: Any, message: Any) -> None:
        fut = self.started.get(message.get("Uniqueid", ""))
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_stop_event(self, manager: Any, message: Any) -> None:
        self.stopped(message.get("Uniqueid", ""))

    def stopped(self, uniqueid: str) -> None:
        """The channel's MixMonitor stopped or the channel is gone: finalise its recording."""
        if uniqueid in self._by_uniqueid and uniqueid not in self._finalising:
            self._finalising[uniqueid] = asyncio.ensure_future(self.finalise(uniqueid))

    async def finalise(self, uniqueid: str) -> None:
        recording_id, path = self._by_uniqueid[uniqueid]
        journal = self.journal
        try:
            if journal is not None and (recording_id == UNKNOWN_ROW or journal.pending(uniqueid)):
                await journal_recording_end(journal, uniqueid, path, self.now_iso(), keyring=keyring_of(self.db))
            else:
                try:  # storage refusing the finalisation itself: what was measured waits in the journal
                    await finalise_recording(self.db, recording_id, path, self.now_iso(), journal=journal,
                                             channel=uniqueid)
                except Exception as exc:
                    if journal is None or not is_storage_error(exc):
                        raise
                    # the row exists but could not be read; its end waits in the journal (keyed by the file)
                    await journal_recording_end(journal, uniqueid, path, self.now_iso(), attempts=3,
                                                keyring=keyring_of(self.db))
        except Exception as exc:  # the call still completes; the row stays as storage left it
            event(log, "recording.not_finalised", logging.ERROR, recording_id=recording_id,
                  error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self._by_uniqueid.pop(uniqueid, None)
        try:
            if self.on_finalised is not None:  # whatever became of the file, the channel is gone
                await self.on_finalised(uniqueid)  # (the call completed: still "finalising" until then,
        finally:                                   # so drain() at shutdown waits for it too)
            self._finalising.pop(uniqueid, None)

    async def drain(self) -> None:
        """Wait for finalisations under way (shutdown, tests)."""
        while self._finalising:
            await asyncio.gather(*list(self._finalising.values()), return_exceptions=True)
