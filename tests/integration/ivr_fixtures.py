"""A callproof application of its own for the request-IVR tests, on the session sandbox.

It runs under another Stasis application name (``CALLPROOF_APP`` selects it in
the dialplan) with its own database and ``[rights] identity_key`` set, so CPF
capture is on and the shared ``harness`` application's config stays as it is.
The "customer" types on the keypad with AMI ``PlayDTMF`` on its own half of the
Local channel: Asterisk carries the DTMF to the half that is in the IVR, exactly
as it carries a phone's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import Sandbox, ari_request, originate_call

from .harness import CallHarness, ObservedApplication, PlacedCall, local_prefix
from .test_call_state import SHORT, short_prompts

#: The IVR's prompts that only take time (what is asserted is their names, in Asterisk's log):
#: 40 ms each, like the inbound call's (SHORT). ``request-enter`` keeps its length: the keys
#: are typed while it plays, as a caller does.
SHORT_IVR = ["request-consent", "request-registered", "request-not-found", "request-give-up"]

IVR_APP = "callproof_ivr_test"
IDENTITY_KEY = "ivr-test-identity-key-" + "5f1c9a7e3b2d4c6e8a0b"


@dataclass
class IvrCall:
    prefix: str
    customer_channel: dict[str, Any]   # the ;1 half: the customer's phone


class IvrHarness(CallHarness):
    """CallHarness for the IVR application, plus the IVR entry and the customer's keypad."""

    def __init__(self, app: ObservedApplication, sandbox: Sandbox, run_dir: Path):
        super().__init__(app, sandbox, run_dir)
        self.variables = {"CALLPROOF_APP": IVR_APP}

    async def place_call(self, caller: str, *, variables: dict[str, str] | None = None) -> PlacedCall:
        """An ordinary inbound call through [callproof-entry], handled by this application."""
        return await self.place(caller, record=False, variables={**self.variables, **(variables or {})})

    async def call_ivr(self, caller: str, max_seconds: int = 180) -> IvrCall:
        """A call into [callproof-request-entry] from ``caller``."""
        channel = await asyncio.to_thread(originate_call, self.sandbox, caller,
                                          entry_context="callproof-request-entry", max_seconds=max_seconds,
                                          variables=self.variables)
        return IvrCall(prefix=local_prefix(channel["name"]), customer_channel=channel)

    async def type_keys(self, call: IvrCall, keys: str) -> None:
        """Press keys on the customer's phone, one after the other."""
        for key in keys:
            # "Async: false": Asterisk ignores it; panoramisk needs it to read the
            # "DTMF successfully queued" reply (it looks the header up).
            reply = await self.app.ami.action({"Action": "PlayDTMF", "Channel": call.customer_channel["name"],
                                               "Digit": key, "Duration": "120", "Async": "false"})
            response = reply[0] if isinstance(reply, list) else reply
            assert response.get("Response") == "Success", f"PlayDTMF {key!r} refused: {dict(response)}"
            await asyncio.sleep(0.08)

    async def hang_up(self, call: IvrCall) -> None:
        await asyncio.to_thread(ari_request, self.sandbox, "DELETE", f"channels/{call.customer_channel['id']}")

    async def wait_prompt(self, call: IvrCall, name: str, count: int = 1, timeout: float = 60) -> Any:
        """Wait until the IVR flow has started prompt ``name`` ``count`` times (it then accepts keys)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flow = self.app.active_flow(call.prefix)
            if flow is not None and self._started(flow, name) >= count:
                return flow
            await asyncio.sleep(0.05)
        raise TimeoutError(f"IVR call {call.prefix} never started prompt {name!r} x{count}")

    def _started(self, flow: Any, name: str) -> int:
        return sum(1 for ev in self.app.events.get(flow.channel_id, [])
                   if ev.get("type") == "PlaybackStarted" and ev["playback"]["id"].startswith(f"cp-{name}-"))

    async def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        def run(conn):
            cur = conn.execute(query, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]
        return await self.app.db.run_in_connection(run)


@contextlib.asynccontextmanager
async def ivr_application(sandbox: Sandbox, app_config: Any, app_name: str = IVR_APP, folder: str = "ivr-app",
                          storage: dict[str, str] | None = None) -> AsyncIterator[IvrHarness]:
    """The IVR application (prompts shared with the session's, generated by ``app_config``),
    on its own database (``storage``: ``{"url": ...}`` for PostgreSQL)."""
    run_dir = sandbox.run_dir / folder
    run_dir.mkdir(exist_ok=True)
    config = load_sandbox_config(write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": app_name}, rights={"identity_key": IDENTITY_KEY},
        prompts={"custom_directory": str(short_prompts(run_dir / "short", [*SHORT, *SHORT_IVR]))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0}, storage=storage or {}))
    app = ObservedApplication(config)
    await app.start()
    runner = asyncio.ensure_future(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), 20)
        harness = IvrHarness(app, sandbox, run_dir)
        harness.variables = {"CALLPROOF_APP": app_name}
        yield harness
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()


@pytest.fixture(scope="module")
async def ivr(sandbox: Sandbox, app_config: Any):
    async with ivr_application(sandbox, app_config) as harness:
        yield harness


@pytest.fixture(scope="module")
async def ivr_pg(sandbox: Sandbox, app_config: Any, pg_cluster: Any):
    """The IVR application on PostgreSQL (a database of the session's cluster)."""
    async with ivr_application(sandbox, app_config, IVR_APP + "_pg", "ivr-app-pg",
                               {"url": pg_cluster.new_database("ivr")}) as harness:
        yield harness


@pytest.fixture(params=["sqlite", "postgresql"])
def ivr_on(request: pytest.FixtureRequest) -> IvrHarness:
    """``ivr``, then ``ivr_pg``: the test runs on each engine."""
    return request.getfixturevalue("ivr" if request.param == "sqlite" else "ivr_pg")


_PLAYING = re.compile(r"<(?P<channel>[^>]+)> Playing '(?P<file>[^']+)'")


def files_played(sandbox: Sandbox, channel_name: str) -> list[str]:
    """What Asterisk's log says it played to a channel, in order (file names without extension)."""
    out = []
    for line in sandbox.console_log.read_text(errors="replace").splitlines():
        m = _PLAYING.search(line)
        if m and m["channel"] == channel_name:
            out.append(m["file"].rsplit(".", 1)[0])
    return out


def digits_after(files: list[str], prompt: str) -> str:
    """The digits read after the last time ``prompt`` was played (``.../digits/N`` files)."""
    last = max(i for i, f in enumerate(files) if f.endswith("/" + prompt))
    digits = []
    for f in files[last + 1:]:
        m = re.search(r"/digits/([0-9])$", f)
        if m:
            digits.append(m[1])
    return "".join(digits)
