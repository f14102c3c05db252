"""A wrong ARI or AMI password: each refusal is an error naming the account and the Asterisk
file to check, and after ``max_login_failures`` refusals in a row the application stops
(``callproof run`` exits 3) instead of retrying for ever.  A network fault keeps retrying."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from aiohttp import web

from callproof.ari_app.app import Application
from callproof.ari_app.logins import LoginRefused
from callproof.ari_app.recorder import AmiLink


class RefusingAmi:
    """A TCP server speaking just enough AMI to refuse every Login (as Asterisk does)."""

    def __init__(self):
        self.logins = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        block: dict[str, str] = {}
        while line := await reader.readline():
            text = line.decode().strip()
            if text:
                key, _, value = text.partition(":")
                block[key.strip().lower()] = value.strip()
                continue
            if block.get("action", "").lower() == "login":
                self.logins += 1
                writer.write(f"Response: Error\r\nActionID: {block.get('actionid', '')}\r\n"
                             "Message: Authentication failed\r\n\r\n".encode())
                await writer.drain()
                writer.close()
                return
            block = {}


async def test_ami_gives_up_after_the_configured_refusals(caplog):
    fake = RefusingAmi()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = AmiLink("127.0.0.1", port, "callproof", "wrong-password", max_login_failures=2)
    link.manager.reconnect_timeout = 0
    try:
        with caplog.at_level(logging.ERROR, logger="callproof.app"), \
                pytest.raises(LoginRefused, match=r"AMI login of account 'callproof'.*manager\.conf"):
            await link.connect(timeout=30)
        await asyncio.sleep(0.2)
        assert fake.logins == 2  # and no third attempt after giving up
        refusals = [r for r in caplog.records if r.getMessage() == "ami.login_refused"]
        assert [r.fields["failures"] for r in refusals] == [1, 2]  # type: ignore[attr-defined]
        assert "wrong-password" not in caplog.text
    finally:
        link.close()
        server.close()
        await server.wait_closed()


async def test_ari_gives_up_after_the_configured_401s(config, unused_tcp_port, caplog):
    hits = []

    async def unauthorised(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=401, text='{"message": "Authentication required"}')

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unauthorised)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    ari = dataclasses.replace(config.ari, url=f"http://127.0.0.1:{unused_tcp_port}/", username="ops",
                              max_login_failures=3, reconnect_max_seconds=0.01)
    try:
        with caplog.at_level(logging.ERROR, logger="callproof.app"), \
                pytest.raises(LoginRefused, match=r"ARI login of account 'ops'.*ari\.conf"):
            await asyncio.wait_for(Application(dataclasses.replace(config, ari=ari)).run(), 30)
        assert len([r for r in caplog.records if r.getMessage() == "ari.login_refused"]) == 3
        assert len(hits) == 3
    finally:
        await runner.cleanup()


async def test_ari_keeps_retrying_a_refused_connection(config, unused_tcp_port, caplog):
    ari = dataclasses.replace(config.ari, url=f"http://127.0.0.1:{unused_tcp_port}/", max_login_failures=1,
                              reconnect_max_seconds=0.01)
    task = asyncio.ensure_future(Application(dataclasses.replace(config, ari=ari)).run())
    with caplog.at_level(logging.WARNING, logger="callproof.app"):
        while sum(r.getMessage() == "ari.connect_failed" for r in caplog.records) < 5:
            await asyncio.sleep(0.01)  # connection errors, none a refused login
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
