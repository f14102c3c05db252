"""Sending a file's bytes with HTTP Range: a plain file or the plaintext of an age file.

An encrypted recording, export or history document is served through
:class:`~callproof.encryption.AgeReader`: a seekable view of its plaintext that opens
only the 64 KiB chunks a range touches, so the first byte of a range in the middle of a
one-hour recording costs one chunk, not the hour (docs/benchmarks.md).  Nothing
decrypted is written to disk.  One range per request (``bytes=a-b``, ``a-``, ``-n``);
anything the range cannot satisfy is a 416 naming the size.  Every read runs in a
worker thread: the event loop never waits on the disk or the cipher.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Sequence
from typing import Any, BinaryIO

from aiohttp import web

from ..encryption.atrest import AGE_MAGIC

CHUNK = 256 * 1024


def parse_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) asked for, the whole file without a Range; None when
    the range cannot be satisfied (416).  One range only."""
    if "Range" not in request.headers:
        return 0, size
    try:
        asked = request.http_range
    except ValueError:
        return None
    start, stop = asked.start, asked.stop
    if start is None:
        return 0, size
    if start < 0:  # bytes=-N: the last N bytes
        start = max(0, size + start)
        stop = size
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        return None
    return start, stop


def unsatisfiable(size: int) -> web.Response:
    return web.Response(status=416, text="Requested range not satisfiable.\n", content_type="text/plain",
                        charset="utf-8", headers={"Content-Range": f"bytes */{size}"})


class Opened:
    """An open file to serve: ``fh`` reads the plaintext (seekable), ``size`` its length."""

    def __init__(self, fh: BinaryIO | io.RawIOBase, size: int, encrypted: bool) -> None:
        self.fh, self.size, self.encrypted = fh, size, encrypted

    def head(self, n: int) -> bytes:
        self.fh.seek(0)
        return self.fh.read(n) or b""

    def close(self) -> None:
        self.fh.close()


def open_plaintext(path: str | os.PathLike[str], identities: Sequence[Any] | None) -> Opened:
    """The file at ``path`` (already checked to be where it may be) for reading its plaintext:
    an age file through AgeReader with ``identities`` (ValueError without them), any other
    file as it is.  Told by its first bytes, never by its name.  Blocking: run in a thread."""
    fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by Opened.close
    try:
        fd = fh.fileno()
        if os.pread(fd, len(AGE_MAGIC), 0) == AGE_MAGIC:
            if not identities:
                raise ValueError("the file is encrypted and this process holds no private key")
            from ..encryption import AgeReader
            reader = AgeReader(fh, identities)
            return Opened(reader, reader.size, True)
        return Opened(fh, os.fstat(fd).st_size, False)
    except BaseException:
        fh.close()
        raise


async def send(request: web.Request, opened: Opened, wanted: tuple[int, int], *,
               headers: dict[str, str]) -> web.StreamResponse:
    """Answer with bytes ``wanted`` of ``opened`` (206 when a Range was asked; HEAD: headers
    only), then close it."""
    try:
        start, stop = wanted
        partial = "Range" in request.headers
        response = web.StreamResponse(status=206 if partial else 200, headers=headers)
        response.headers["Accept-Ranges"] = "bytes"
        response.content_length = stop - start
        if partial:
            response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{opened.size}"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        await asyncio.to_thread(opened.fh.seek, start)
        left = stop - start
        while left > 0:
            chunk = await asyncio.to_thread(opened.fh.read, min(CHUNK, left))
            if not chunk:
                break
            await response.write(chunk)
            left -= len(chunk)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(opened.close)
