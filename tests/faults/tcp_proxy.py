"""An asyncio TCP proxy that can cut the link it carries, as a broken network would.

The application connects to the proxy instead of Asterisk.  :meth:`TcpProxy.cut` aborts
every connection through it (a reset, not a clean close) and, until :meth:`restore`,
accepts new connections only to reset them at once: a reconnect attempt fails fast, as
it does against a host whose port is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1"):
        self.target_host, self.target_port, self.host = target_host, target_port, host
        self.port = 0
        self.down = False
        self.restored_at: float | None = None  # time.monotonic() of the last restore
        self.cuts: list[tuple[float, float]] = []  # (cut at, restored at), monotonic
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def cut_now(self) -> None:
        self.down = True
        self._cut_started = time.monotonic()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def restore(self) -> None:
        self.down = False
        self.restored_at = time.monotonic()
        self.cuts.append((self._cut_started, self.restored_at))

    async def cut(self, seconds: float) -> None:
        self.cut_now()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.restore()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self.down:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(dst)
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._links):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
