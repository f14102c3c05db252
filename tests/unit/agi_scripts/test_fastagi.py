"""The FastAGI server over a real loopback socket, with a scripted Asterisk on the other end."""

from __future__ import annotations

import asyncio

import pytest

from callproof.agi_scripts.fastagi import FastAgiServer
from tests.fakes import FakeAsterisk, FakePrompts


async def asterisk_client(port: int, fake: FakeAsterisk, script: str = "callproof",
                          hangup_line_in: str | None = None) -> list[str]:
    """Connect like Asterisk's res_agi: environment, blank line, then answer each command."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    env = {**fake.env, "agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://x/{script}"}
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    await writer.drain()
    lines = []
    while True:
        raw = await reader.readline()
        if not raw:
            break
        line = raw.decode().rstrip("\n")
        lines.append(line)
        if hangup_line_in and line.startswith("EXEC Playback") and hangup_line_in in line:
            fake.dead = True
            writer.write(b"HANGUP\n200 result=-1\n")
        elif fake.dead and not line.startswith("GET VARIABLE"):
            writer.write(b"511 Command Not Permitted on a dead channel or intercept routine\n")
        else:
            reply = await fake.command(line)
            text = f"200 result={reply.result}" + (f" ({reply.data})" if reply.data else "") + reply.tail
            writer.write(text.encode() + b"\n")
        await writer.drain()
    writer.close()
    return lines


@pytest.fixture
async def server(config, db):
    srv = FastAgiServer(config)
    srv.prompts = FakePrompts()
    await srv.start(port=0)
    yield srv
    await srv.stop()


async def test_whole_call_over_fastagi(server):
    fake = FakeAsterisk(uniqueid="1700000001.1")
    await asyncio.wait_for(asterisk_client(server.port, fake), 5)
    row = await server.db.calls.get_by_channel("1700000001.1")
    assert row["status"] == "handed_off" and fake.vars["CALLPROOF_STATUS"] == "ok"
    assert fake.played == ["consent", "protocol", "protocol"]


async def test_hangup_line_during_consent(server):
    fake = FakeAsterisk(uniqueid="1700000002.1")
    await asyncio.wait_for(asterisk_client(server.port, fake, hangup_line_in="consent"), 5)
    row = await server.db.calls.get_by_channel("1700000002.1")
    assert row["status"] == "abandoned_in_consent" and row["consent_outcome"] == "caller_left"


async def test_unknown_script_gets_failed_status_and_is_closed(server):
    fake = FakeAsterisk(uniqueid="1700000003.1")
    await asyncio.wait_for(asterisk_client(server.port, fake, script="../etc"), 5)
    assert fake.vars["CALLPROOF_STATUS"] == "failed" and fake.vars["CALLPROOF_REASON"] == "bad_step"


async def test_connection_closed_before_environment_does_not_hang(server):
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\n")
    writer.close()
    await asyncio.sleep(0.1)
    fake = FakeAsterisk(uniqueid="1700000004.1")  # the server still serves the next call
    await asyncio.wait_for(asterisk_client(server.port, fake), 5)
    assert fake.vars["CALLPROOF_STATUS"] == "ok"


async def test_concurrent_calls_do_not_block_each_other(server):
    fakes = [FakeAsterisk(uniqueid=f"1700000100.{i}") for i in range(20)]
    await asyncio.wait_for(asyncio.gather(*(asterisk_client(server.port, f) for f in fakes)), 10)
    protocols = {f.vars["CALLPROOF_PROTOCOL"] for f in fakes}
    assert len(protocols) == 20 and all(f.vars["CALLPROOF_STATUS"] == "ok" for f in fakes)


def test_server_listens_on_loopback_by_default(config):
    assert config.fastagi.host == "127.0.0.1" and config.fastagi.port == 4573
