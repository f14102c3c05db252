"""Drive real calls through the sandbox Asterisk and the callproof application.

The application runs in the test session's event loop, connected to the
sandbox's ARI and AMI exactly as ``callproof run`` would be.  A call is a
Local channel: its ``;1`` half is the customer (records what it hears), its
``;2`` half enters ``callproof-entry`` like an inbound call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoramisk import Manager

from callproof.ari_app.app import Application
from callproof.ari_app.call_events import channel_id_of
from callproof.ari_app.flow import CallFlow
from callproof.sandbox import ari_request, originate_call


class ObservedApplication(Application):
    """The real application, also keeping every ARI event per channel for assertions."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, on_flow_done=self._flow_done, **kwargs)
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.done_flows: dict[str, CallFlow] = {}  # by Local channel prefix
        self._waiters: dict[str, asyncio.Future[CallFlow]] = {}

    def route_event(self, ev: dict[str, Any]) -> None:
        channel_id = channel_id_of(ev)
        if channel_id is not None:
            self.events.setdefault(channel_id, []).append(ev)
        super().route_event(ev)

    def _flow_done(self, flow: CallFlow) -> None:
        if flow.outcome is None:  # interrupted (ARI reconnect): a resumed flow takes over
            return
        prefix = local_prefix(flow.channel["name"])
        self.done_flows[prefix] = flow
        waiter = self._waiters.get(prefix)
        if waiter is not None and not waiter.done():
            waiter.set_result(flow)

    async def wait_flow(self, prefix: str, timeout: float) -> CallFlow:
        if prefix in self.done_flows:
            return self.done_flows[prefix]
        waiter = self._waiters.setdefault(prefix, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)

    def active_flow(self, prefix: str) -> CallFlow | None:
        for flow in list(self.flows.values()):
            if local_prefix(flow.channel["name"]) == prefix:
                return flow
        return None


@contextlib.asynccontextmanager
async def running(app: Application, connect_timeout: float = 20.0) -> AsyncIterator[Application]:
    """``app`` started and connected to ARI for the block; stopped after it, whatever happens."""
    await app.start()
    runner = asyncio.ensure_future(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), connect_timeout)
        yield app
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()


def local_prefix(channel_name: str) -> str:
    """``Local/s@ctx-0000001a;2`` -> ``Local/s@ctx-0000001a`` (both halves share it)."""
    return channel_name.rsplit(";", 1)[0]


@dataclass
class PlacedCall:
    prefix: str
    customer_channel_id: str
    heard: Path | None


@dataclass
class AmiEvents:
    """An unfiltered AMI connection that keeps UserEvents (the sandbox agents' reports)."""

    manager: Manager
    user_events: list[Any] = field(default_factory=list)

    def handoffs_for(self, protocol: str, recording: Any = None) -> list[Any]:
        """The hand-off reports of ``protocol``; with ``recording``, only those that carried
        that recording path (several test applications have databases of their own, whose
        protocol sequences can give the same number to different calls)."""
        return [e for e in self.user_events
                if e.get("UserEvent") == "CallproofHandoff" and e.get("Protocol") == protocol
                and (recording is None or e.get("Recording") == str(recording))]


class CallHarness:
    def __init__(self, app: ObservedApplication, sandbox: Any, run_dir: Path,
                 variables: dict[str, str] | None = None):
        self.app = app
        self.sandbox = sandbox
        self.run_dir = run_dir
        #: channel variables of every call placed (``CALLPROOF_APP``: the application that takes it)
        self.variables = dict(variables or {})
        self._n = 0

    async def place(self, caller: str, *, record: bool = True, max_seconds: int = 300,
                    variables: dict[str, str] | None = None) -> PlacedCall:
        self._n += 1
        heard = self.run_dir / "heard" / f"call-{self._n}-{time.monotonic_ns()}.wav" if record else None
        channel = await asyncio.to_thread(originate_call, self.sandbox, caller,
                                          record_path=str(heard) if heard else None,
                                          max_seconds=max_seconds, variables={**self.variables, **(variables or {})})
        return PlacedCall(prefix=local_prefix(channel["name"]), customer_channel_id=channel["id"], heard=heard)

    async def hang_up_customer(self, call: PlacedCall) -> None:
        await asyncio.to_thread(ari_request, self.sandbox, "DELETE", f"channels/{call.customer_channel_id}")

    async def wait_mark(self, call: PlacedCall, mark: str, timeout: float = 30) -> CallFlow:
        """Wait until the call's flow reaches a timing mark (e.g. 'consent_playback_started')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flow = self.app.active_flow(call.prefix)
            if flow is not None and mark in flow.timings.marks:
                return flow
            await asyncio.sleep(0.02)
        raise TimeoutError(f"call {call.prefix} never reached {mark}")

    async def wait_call_row(self, flow: CallFlow, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = await self.app.db.calls.get(flow.call_id)
            if row is not None and row["status"] in statuses:
                return dict(row)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"call {flow.call_id} stayed {row and row['status']}, wanted {statuses}")

    async def wait_recording_final(self, call_id: int, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await self.app.db.recordings.for_call(call_id)
            if rows and rows[-1]["state"] != "recording":
                return dict(rows[-1])
            await asyncio.sleep(0.1)
        raise TimeoutError(f"recording of call {call_id} never finalised")

    async def wait_sms_state(self, protocol: str, states: set[str], timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        rows: list[Any] = []
        while time.monotonic() < deadline:
            rows = await self.app.db.outbox.get_for_protocol(protocol)
            if rows and rows[0]["state"] in states:
                return dict(rows[0])
            await asyncio.sleep(0.1)
        raise TimeoutError(f"SMS of {protocol} stayed {rows and rows[0]['state']}")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
