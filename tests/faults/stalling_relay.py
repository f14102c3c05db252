"""A TCP relay in front of a server's unix socket that can go silent, as a cut network does to
the application: :meth:`StallingRelay.stall` stops reading and writing on every link, the
sockets left open (nothing is reset or closed, so neither end is told anything); links made
meanwhile are accepted and stalled too.  :meth:`resume` forwards again, what waited in the
kernels' buffers first.

(Unlike :class:`tests.faults.tcp_proxy.TcpProxy`, which resets its links: a reset is noticed
at once, silence is not.)
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


class _Side(asyncio.Protocol):
    def __init__(self, relay: StallingRelay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.waiting: list[bytes] = []  # what came before the peer was connected
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.relay.sides.add(self)
        if self.relay.stalled:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.waiting.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is not None and self.peer.transport is not None and self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        return True  # half-closed: the other direction goes on

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.sides.discard(self)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def joined(self, peer: _Side) -> None:
        self.peer = peer
        assert peer.transport is not None
        for data in self.waiting:
            peer.transport.write(data)
        self.waiting.clear()
        if self.eof and peer.transport.can_write_eof():
            peer.transport.write_eof()


class StallingRelay:
    def __init__(self, upstream: Path, host: str = "127.0.0.1") -> None:
        self.upstream, self.host = upstream, host
        self.port = 0
        self.stalled = False
        self.sides: set[_Side] = set()
        self._server: asyncio.Server | None = None
        self._joining: set[asyncio.Task[None]] = set()

    async def start(self) -> StallingRelay:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accepted, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accepted(self) -> _Side:
        client = _Side(self)
        task = asyncio.ensure_future(self._join(client))
        self._joining.add(task)
        task.add_done_callback(self._joining.discard)
        return client

    async def _join(self, client: _Side) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, server = await loop.create_unix_connection(lambda: _Side(self), str(self.upstream))
        except OSError:
            if client.transport is not None:
                client.transport.abort()
            return
        server.joined(client)
        client.joined(server)

    def stall(self) -> None:
        """Every link stops reading (and so writing): the sockets stay open, nothing is said."""
        self.stalled = True
        for side in list(self.sides):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.pause_reading()

    def resume(self) -> None:
        self.stalled = False
        for side in list(self.sides):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.resume_reading()

    async def close(self) -> None:
        for side in list(self.sides):
            if side.transport is not None:
                side.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._joining):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
