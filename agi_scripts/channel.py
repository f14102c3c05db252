"""The AGI conversation with Asterisk, behind one small async interface.

Two transports:

* :class:`StreamChannel` — FastAGI over an asyncio TCP stream (``callproof fastagi``).
* :class:`PystChannel` — classic AGI on stdin/stdout through pyst2's ``asterisk.agi.AGI``
  (one process per call; its blocking reads are fine there, there is no other work).

Both turn Asterisk's replies into :class:`AgiReply` and every way Asterisk says
"the caller is gone" (a ``HANGUP`` line, SIGHUP, ``511`` on a dead channel, a
closed pipe or socket, ``result=-1`` with ``(hangup)``) into :class:`AgiHangup`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Protocol

_REPLY = re.compile(r"^(?P<code>\d{3})[ -](?P<rest>.*)$")
_RESULT = re.compile(r"result=(?P<result>\S*)(?:\s+\((?P<data>.*)\))?(?P<tail>[^)]*)$")


class AgiHangup(Exception):
    """The channel hung up (or the AGI link closed)."""


class AgiCommandError(Exception):
    """Asterisk refused a command (510/520) or answered something unexpected."""


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: str
    data: str = ""
    tail: str = ""

    @property
    def failed(self) -> bool:
        return self.result.startswith("-")


def quote(arg: str) -> str:
    """One AGI argument, double-quoted; refuses what would break the command line."""
    if any(c in arg for c in '"\\\n\r'):
        raise ValueError(f"AGI argument contains a quote, backslash or line break: {arg!r}")
    return f'"{arg}"'


def parse_reply(line: str) -> AgiReply:
    """``200 result=1 (value) endpos=42`` -> AgiReply(200, '1', 'value', ' endpos=42')."""
    m = _REPLY.match(line.strip())
    if not m:
        raise AgiCommandError(f"unexpected AGI reply {line!r}")
    code, rest = int(m["code"]), m["rest"]
    if code == 511:
        raise AgiHangup(rest)
    if code != 200:
        raise AgiCommandError(f"{code} {rest}")
    r = _RESULT.search(rest)
    if not r:
        raise AgiCommandError(f"no result in AGI reply {line!r}")
    data = r["data"] or ""
    if r["result"].startswith("-") and data == "hangup":
        raise AgiHangup("hangup during the command")
    return AgiReply(code, r["result"], data, r["tail"] or "")


class AgiChannel(Protocol):
    env: dict[str, str]

    async def command(self, line: str) -> AgiReply: ...


class StreamChannel:
    """FastAGI: environment then commands over one TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 env: dict[str, str], timeout: float = 300.0):
        self.reader, self.writer, self.env = reader, writer, env
        self.timeout = timeout
        self.hung_up = False

    @classmethod
    async def accept(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     timeout: float = 10.0) -> StreamChannel:
        """Read the ``agi_*: value`` environment up to the blank line."""
        env: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                raw = await reader.readline()
                if not raw:
                    raise AgiHangup("connection closed before the AGI environment ended")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                key, _, value = line.partition(":")
                env[key.strip()] = value.strip()
                if len(env) > 200:
                    raise AgiCommandError("AGI environment too long")
        return cls(reader, writer, env)

    async def command(self, line: str) -> AgiReply:
        if self.hung_up:
            raise AgiHangup("channel hung up")
        try:
            self.writer.write(line.encode() + b"\n")
            await self.writer.drain()
            async with asyncio.timeout(self.timeout):
                while True:
                    raw = await self.reader.readline()
                    if not raw:
                        self.hung_up = True
                        raise AgiHangup("AGI connection closed")
                    text = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if text == "HANGUP":  # asynchronous notice; the reply still follows
                        self.hung_up = True
                        continue
                    if text.startswith("100 "):  # "100 result=0 Trying..."
                        continue
                    if text.startswith("520-"):  # usage text up to "520 End of proper usage."
                        usage = [text]
                        while not text.startswith("520 "):
                            text = (await self.reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
                            usage.append(text)
                            if not text:
                                break
                        raise AgiCommandError(" ".join(usage))
                    return parse_reply(text)
        except (ConnectionError, OSError) as exc:
            self.hung_up = True
            raise AgiHangup(f"AGI connection lost: {exc}") from None


class PystChannel:
    """Classic AGI through pyst2 (``asterisk.agi.AGI``), blocking, one call per process."""

    def __init__(self, agi: Any):
        self.agi = agi
        self.env: dict[str, str] = dict(agi.env)

    async def command(self, line: str) -> AgiReply:
        from asterisk import agi as pyst

        try:
            self.agi.test_hangup()
            self.agi.send_command(line)
            raw = self.agi.stdin.readline()
        except pyst.AGIHangup as exc:
            raise AgiHangup(str(exc)) from None
        except OSError as exc:  # EPIPE: Asterisk closed our stdout
            raise AgiHangup(f"AGI pipe closed: {exc}") from None
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not raw:
            raise AgiHangup("AGI pipe closed")
        text = raw.rstrip("\r\n")
        while text == "HANGUP" or text.startswith("100 "):
            text = self.agi.stdin.readline().rstrip("\r\n")
            if not text:
                raise AgiHangup("AGI pipe closed")
        if text.startswith("520-"):
            usage = [text]
            while text and not text.startswith("520 "):
                text = self.agi.stdin.readline().rstrip("\r\n")
                usage.append(text)
            raise AgiCommandError(" ".join(usage))
        return parse_reply(text)
