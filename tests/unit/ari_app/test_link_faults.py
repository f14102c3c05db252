"""Link faults below the flow: which REST errors are a broken link, AMI logging in again,
and what the application reconciles then."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from callproof.ari_app import ari as ari_module
from callproof.ari_app.app import Application
from callproof.ari_app.recorder import AmiLink
from callproof.callflow.port import LinkLost
from callproof.storage import NewCall
from tests.call_rows import advance


@pytest.mark.parametrize("exc", [aiohttp.ServerDisconnectedError(), aiohttp.ClientConnectionError("reset"),
                                 ConnectionResetError(), RuntimeError("Session is closed")])
async def test_a_broken_link_is_link_lost(exc):
    async def fails():
        raise exc

    with pytest.raises(LinkLost):
        await ari_module._call(fails())


async def test_other_runtime_errors_stay_what_they_are():
    async def fails():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        await ari_module._call(fails())


async def test_reconciliation_runs_when_ami_logs_in_again_not_the_first_time():
    link = AmiLink("127.0.0.1", 1, "u", "p")
    ran = []

    async def reconcile():
        ran.append(True)

    link.after_relogin(reconcile)
    link.manager.send_action = lambda action: asyncio.sleep(0)  # filters "installed"
    link._on_login(link.manager)
    await asyncio.sleep(0.05)
    assert ran == []
    link._on_login(link.manager)
    await asyncio.sleep(0.05)
    assert ran == [True]


class GoneAri:
    def __init__(self, alive: set[str]):
        self.alive = alive

    async def channel_exists(self, channel_id):
        return channel_id in self.alive


class WatchingRecorder:
    def __init__(self, tracked):
        self._tracked = set(tracked)
        self.gone: list[str] = []

    def tracked(self):
        return list(self._tracked)

    def is_tracking(self, uniqueid):
        return uniqueid in self._tracked

    def channel_gone(self, uniqueid):
        self.gone.append(uniqueid)


async def test_after_ami_is_back_calls_that_hung_up_meanwhile_are_finalised(config, db):
    app = Application(config)
    app.db = db
    call_id = await db.calls.create(NewCall("c-unrec", "c-unrec", None, "1", None, None, None, "pt_BR",
                                            "2026-11-22T15:00:00Z"))
    await advance(db, call_id, "handed_off")
    app.handed_off = {"c-rec": 99, "c-unrec": call_id, "c-alive": 98}
    app.recorder = WatchingRecorder({"c-rec", "c-alive"})
    app.ari = GoneAri(alive={"c-alive"})
    app.connected.set()
    await app._reconcile_after_ami()
    await asyncio.gather(*app._background)
    assert app.recorder.gone == ["c-rec"]  # its recording is finalised, then the call completed
    row = await db.calls.get(call_id)
    assert row["status"] == "completed" and "AMI link was down" in row["hangup_cause"]
    assert "c-alive" in app.handed_off
