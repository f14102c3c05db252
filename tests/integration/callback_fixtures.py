"""A second callproof application with call-backs enabled, on the session sandbox.

It has its own ARI application name (``callproof_cb``; calls reach it with the
dialplan's ``CALLPROOF_APP``) and its own database, so it never competes with
the session ``harness`` for calls.  The "customer" the call-backs dial is a
Local channel into ``callproof-test-cb-customer``, added to the running
Asterisk with ``dialplan add extension``:

* ``+55 11 98765-002x`` is busy, ``+55 11 98765-003x`` rings and never answers;
* any other number answers and records what it hears to
  ``<customer_recordings>/<uniqueid>.wav`` (uniqueid = call-back channel id + ``;2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import ari_request
from callproof.storage.callbacks import Callbacks

from .harness import CallHarness, ObservedApplication, PlacedCall, running

APP_NAME = "callproof_cb"
APP_NAME_PG = "callproof_cbpg"
CUSTOMER_CONTEXT = "callproof-test-cb-customer"
CALLBACK_SETTINGS = {
    "enabled": True,
    "endpoint_template": f"Local/{{number}}@{CUSTOMER_CONTEXT}",
    "caller_id": "4000",
    "first_delay_seconds": 0,
    "retry_delay_seconds": 2,
    "max_attempts": 2,
    "ring_timeout_seconds": 5,
}


def customer_dialplan(recordings: Path) -> list[str]:
    return [
        "_551198765002X,1,Busy(10)",
        "_551198765003X,1,Ringing()",
        "_551198765003X,2,Wait(60)",
        "_X.,1,Answer()",
        # k: keep the file when the call-back hangs up, q: no beep, x: DTMF does not stop it
        f"_X.,2,Record({recordings}/${{UNIQUEID}}.wav,0,120,kqx)",
        "_X.,3,Hangup()",
    ]


@dataclass
class CallbackRig:
    harness: CallHarness
    config: Config
    customer_recordings: Path

    @property
    def app(self) -> ObservedApplication:
        return self.harness.app

    @property
    def store(self) -> Callbacks:
        return Callbacks(self.app.db)

    async def place(self, caller: str) -> PlacedCall:
        return await self.harness.place(caller, record=False)

    async def drop(self, call: PlacedCall, cause: int) -> None:
        """The caller's network drops the call: the customer's leg is cleared with a Q.850 cause,
        which Asterisk passes to callproof's channel as a (non-soft) ChannelHangupRequest."""
        await asyncio.to_thread(ari_request, self.harness.sandbox, "DELETE",
                                f"channels/{call.customer_channel_id}", params={"reason_code": str(cause)})

    async def wait_callback(self, callback_id: int, states: set[str], timeout: float = 120,
                            seen: list[tuple[str, int]] | None = None) -> dict[str, Any]:
        """Poll the call-back row until it reaches ``states`` (and its attempt task is done);
        ``seen`` collects each (state, attempts) it passed through."""
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = await self.store.get(callback_id)
            if seen is not None and (not seen or seen[-1] != (row["state"], row["attempts"])):
                seen.append((row["state"], row["attempts"]))
            scheduler = self.app.callbacks
            if row["state"] in states and (scheduler is None or callback_id not in scheduler.tasks):
                return row
            await asyncio.sleep(0.05)
        raise TimeoutError(f"call-back {callback_id} stayed {row and row['state']}, wanted {states}")


@pytest.fixture(scope="session")
async def callback_customer(sandbox, app_config) -> Path:
    """The customer's context, added once to the running Asterisk; the folder its answered
    call-backs are recorded in.  ``app_config`` first: it generates the prompts the
    call-back applications share."""
    recordings = sandbox.run_dir / "callback" / "customer"
    recordings.mkdir(parents=True, exist_ok=True)
    for line in customer_dialplan(recordings):
        out = await asyncio.to_thread(sandbox.cli, f"dialplan add extension {line} into {CUSTOMER_CONTEXT}")
        assert "added" in out, out
    return recordings


@contextlib.asynccontextmanager
async def callback_application(sandbox, recordings: Path, app_name: str, folder: str,
                               **sections: Any) -> AsyncIterator[CallbackRig]:
    run_dir = sandbox.run_dir / folder
    run_dir.mkdir(exist_ok=True)
    config = load_sandbox_config(write_config(sandbox, run_dir, sandbox.run_dir / "prompts", ari={"app": app_name},
                                              callback=CALLBACK_SETTINGS, **sections))
    async with running(ObservedApplication(config)) as app:
        harness = CallHarness(app, sandbox, run_dir, variables={"CALLPROOF_APP": app_name})
        yield CallbackRig(harness, config, recordings)


@pytest.fixture(scope="session")
async def callback_rig(sandbox, callback_customer):
    async with callback_application(sandbox, callback_customer, APP_NAME, "callback") as rig:
        yield rig


@pytest.fixture(scope="session")
async def pg_callback_rig(sandbox, callback_customer, pg_cluster):
    """The call-back application on PostgreSQL (a database of the session's cluster): a 40 ms
    announcement and one reading, the real protocol prompts (a drop inside the reading, and
    a call-back message of real audio)."""
    from .test_call_state import short_prompts

    short = short_prompts(sandbox.run_dir / "callback-pg-short", ["consent", "pause"])
    async with callback_application(sandbox, callback_customer, APP_NAME_PG, "callback-pg",
                                    storage={"url": pg_cluster.new_database("callback")},
                                    prompts={"custom_directory": str(short)},
                                    protocol_reading={"repeat": 0, "replay_window_ms": 0}) as rig:
        yield rig


@pytest.fixture(params=["sqlite", "postgresql"])
def callback_rig_on(request: pytest.FixtureRequest) -> CallbackRig:
    """``callback_rig``, then ``pg_callback_rig``: the test runs on each engine."""
    return request.getfixturevalue("callback_rig" if request.param == "sqlite" else "pg_callback_rig")
