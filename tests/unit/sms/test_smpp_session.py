"""The SMPP session against a scripted in-process SMSC: the cases the Net::SMPP
peer of the integration tests cannot produce on demand (an answer that never
comes, a receipt that cannot be stored, the SMSC's own enquire_link and unbind)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from callproof.sms import smpp_pdu as P
from callproof.sms.smpp import SmppBackend, SmppSettings

MSG = {"id": 1, "destination": "+5511912345678", "body": "Protocolo 20260000000000001"}


class FakeSmsc:
    """Accepts binds; answers submit_sm per ``mode``; records every PDU it gets."""

    def __init__(self, mode: str = "accept") -> None:
        self.mode = mode
        self.received: list[tuple[int, int, int, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.binds = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.next_id = 0

    async def start(self) -> FakeSmsc:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readexactly(16)
                length, cmd, status, seq = struct.unpack(">IIII", head)
                body = await reader.readexactly(length - 16)
                self.received.append((cmd, status, seq, body))
                if cmd in (P.BIND_TRANSCEIVER, P.BIND_TRANSMITTER):
                    self.binds += 1
                    writer.write(P.pdu(cmd | 0x80000000, seq, b"fake\0"))
                elif cmd == P.SUBMIT_SM and self.mode == "accept":
                    self.next_id += 1
                    writer.write(P.pdu(P.SUBMIT_SM_RESP, seq, f"m{self.next_id}\0".encode()))
                elif cmd == P.SUBMIT_SM and self.mode == "nack":
                    writer.write(P.pdu(P.GENERIC_NACK, seq, status=0x08))
                elif cmd == P.UNBIND:
                    writer.write(P.pdu(P.UNBIND_RESP, seq))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def sent(self, command_id: int) -> list[tuple[int, int, int, bytes]]:
        return [r for r in self.received if r[0] == command_id]

    async def wait_for(self, command_id: int, n: int = 1) -> list:
        for _ in range(200):
            if len(self.sent(command_id)) >= n:
                return self.sent(command_id)
            await asyncio.sleep(0.01)
        raise AssertionError(f"the SMSC got {len(self.sent(command_id))} of command 0x{command_id:08X}")


@pytest.fixture
async def smsc():
    s = await FakeSmsc().start()
    yield s
    await s.stop()


def backend(port: int, **kw) -> SmppBackend:
    return SmppBackend(SmppSettings(port=port, system_id="cp", password="pw", source_addr="ACME",
                                    submit_timeout_seconds=kw.pop("timeout", 0.5), **kw))


async def test_accepted_with_the_gateway_id(smsc):
    b = backend(smsc.port)
    try:
        r = await b.send(MSG)
        assert r.accepted and r.gateway_message_id == "m1"
        [(_, _, _, body)] = smsc.sent(P.SUBMIT_SM)
        assert b"5511912345678\0" in body and b"Protocolo 20260000000000001" in body
    finally:
        await b.close()
    await smsc.wait_for(P.UNBIND)  # a clean close unbinds


async def test_written_but_unanswered_is_unknown(smsc):
    smsc.mode = "silent"
    b = backend(smsc.port, timeout=0.3)
    try:
        r = await b.send(MSG)
        assert not r.accepted and r.unknown and "no submit_sm_resp" in r.reason
        assert len(smsc.sent(P.SUBMIT_SM)) == 1
    finally:
        await b.close()


async def test_never_bound_is_never_submitted_and_never_written_later():
    s = await FakeSmsc().start()
    port = s.port
    await s.stop()  # nothing listens
    b = backend(port, timeout=0.3)
    try:
        r = await b.send(MSG)
        assert not r.accepted and not r.unknown and "never submitted" in r.reason
        s2 = FakeSmsc()
        s2.server = await asyncio.start_server(s2._serve, "127.0.0.1", port)
        try:
            await asyncio.sleep(1.0)  # the session binds again
            assert s2.binds == 1 and s2.sent(P.SUBMIT_SM) == []  # the given-up message is not sent late
            assert (await b.send(MSG)).accepted
        finally:
            await s2.stop()
    finally:
        await b.close()


async def test_generic_nack_is_a_transient_refusal(smsc):
    smsc.mode = "nack"
    b = backend(smsc.port)
    try:
        r = await b.send(MSG)
        assert not r.accepted and not r.permanent and not r.unknown and "ESME_RSYSERR" in r.reason
    finally:
        await b.close()


async def test_receipt_answered_after_storing_and_refused_when_storing_fails(smsc):
    b = backend(smsc.port)
    stored, fail = [], [False]

    async def handler(gw_id, status, detail, key):
        if fail[0]:
            raise RuntimeError("database is locked")
        stored.append((gw_id, status))

    b.set_receipt_handler(handler)
    try:
        assert (await b.send(MSG)).accepted
        text = b"id:m1 sub:001 dlvrd:001 submit date:2603101400 done date:2603101400 stat:DELIVRD err:000"
        dsm = (b"\0\1\1" + b"5511912345678\0" + b"\5\0ACME\0" + bytes([4, 0, 0]) + b"\0\0"
               + bytes([0, 0, 0, 0, len(text)]) + text)
        w = smsc.writers[0]
        w.write(P.pdu(P.DELIVER_SM, 77, dsm))
        [(_, status, seq, _)] = await smsc.wait_for(P.DELIVER_SM_RESP)
        assert (status, seq) == (0, 77) and stored == [("m1", "DELIVRD")]
        fail[0] = True
        w.write(P.pdu(P.DELIVER_SM, 78, dsm))
        resps = await smsc.wait_for(P.DELIVER_SM_RESP, 2)
        assert (resps[1][1], resps[1][2]) == (0x64, 78)  # ESME_RX_T_APPN: the SMSC sends it again
    finally:
        await b.close()


async def test_smsc_enquire_link_and_unbind(smsc):
    b = backend(smsc.port)
    try:
        assert (await b.send(MSG)).accepted
        w = smsc.writers[0]
        w.write(P.pdu(P.ENQUIRE_LINK, 5))
        [(_, _, seq, _)] = await smsc.wait_for(P.ENQUIRE_LINK_RESP)
        assert seq == 5
        w.write(P.pdu(P.UNBIND, 6))
        [(_, _, seq, _)] = await smsc.wait_for(P.UNBIND_RESP)
        assert seq == 6
        for _ in range(100):  # the session binds again by itself
            if smsc.binds == 2:
                break
            await asyncio.sleep(0.02)
        assert smsc.binds == 2
        assert (await b.send(MSG)).accepted
    finally:
        await b.close()


async def test_unanswered_enquire_link_drops_and_rebinds(smsc):
    smsc.mode = "accept"
    b = backend(smsc.port, timeout=0.2, enquire_link_seconds=0.1)
    real = smsc._serve

    async def no_enquire_answers(reader, writer):  # this SMSC ignores enquire_link
        smsc.writers.append(writer)
        try:
            while True:
                head = await reader.readexactly(16)
                length, cmd, _, seq = struct.unpack(">IIII", head)
                body = await reader.readexactly(length - 16)
                smsc.received.append((cmd, 0, seq, body))
                if cmd == P.BIND_TRANSCEIVER:
                    smsc.binds += 1
                    writer.write(P.pdu(P.BIND_TRANSCEIVER_RESP, seq, b"fake\0"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    smsc._serve = no_enquire_answers
    smsc.server.close()
    smsc.server = await asyncio.start_server(no_enquire_answers, "127.0.0.1", smsc.port)
    try:
        b.submit(MSG)  # starts the session
        for _ in range(150):
            if smsc.binds >= 2:
                break
            await asyncio.sleep(0.02)
        assert smsc.binds >= 2 and smsc.sent(P.ENQUIRE_LINK)
    finally:
        smsc._serve = real
        await b.close()
