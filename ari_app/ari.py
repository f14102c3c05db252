"""The few ARI operations the call flow needs, over aioari.

aioari gives us the WebSocket and swagger-described REST operations; this
module narrows them to what callproof does and turns "the channel is no
longer ours" answers (404 Not Found, 409 not in Stasis) into one exception,
:class:`ChannelGone`, so the flow can treat every kind of hang-up alike, and a
broken link (a closed session, a reset or refused connection) into
:class:`~callproof.callflow.port.LinkLost`, which is not the call's fault.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urljoin, urlparse

import aioari
import aiohttp
from aioari.model import promote
from aiohttp import web_exceptions
from aioswagger11.http_client import ApiKeyAuthenticator, AsynchronousHttpClient

from callproof.callflow.port import LinkLost
from callproof.logs import event

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Any]


class ChannelGone(Exception):
    """The channel hung up or left our Stasis application."""


class AriError(Exception):
    """ARI refused an operation for a reason other than the channel being gone."""


def link_lost(exc: BaseException) -> LinkLost | None:
    """The LinkLost an exception from the REST client means, or None when it is something else.

    aiohttp raises ClientError subclasses for a refused, reset or dropped connection, and
    RuntimeError("Session is closed") for a request on a session already closed (a flow
    that outlived its connection)."""
    if isinstance(exc, aiohttp.ClientError | ConnectionError | TimeoutError):
        return LinkLost(f"ARI link lost: {type(exc).__name__}: {exc}")
    if isinstance(exc, RuntimeError) and "Session is closed" in str(exc):
        return LinkLost("ARI link lost: the session is closed")
    return None


async def _call(op: Awaitable[Any]) -> Any:
    try:
        return await op
    except (web_exceptions.HTTPNotFound, web_exceptions.HTTPConflict) as exc:
        raise ChannelGone(str(getattr(exc, "text", exc))) from None
    except web_exceptions.HTTPError as exc:
        raise AriError(f"{exc.status_code}: {getattr(exc, 'text', exc)}") from None
    except (aiohttp.ClientError, ConnectionError, TimeoutError, RuntimeError) as exc:
        lost = link_lost(exc)
        if lost is None:
            raise
        raise lost from None


class AriSession:
    """One connection to Asterisk's ARI (REST + events WebSocket)."""

    def __init__(self, client: Any, app: str, base_url: str = ""):
        self._client = client
        self.app = app
        self._base_url = base_url
        # REST requests by operation and events by type since connecting; logged as
        # 'ari.counts' when the session closes (the benchmark reads them per call).
        self.counts: Counter[str] = Counter()

    async def _op(self, repository: str, operation: str, **params: Any) -> Any:
        """``client.<repository>.<operation>(**params)``, as aioari 0.10.2 runs it, without the
        class that aioari's ``Repository.__getattr__`` defines on *every* such call
        (``class AttrOp``): 8 classes per call, cyclic garbage that outlives young GC
        collections and piles up until a full one (bench/bench_soak.py, docs/benchmarks.md)."""
        oper = getattr(self._client.repositories[repository].api, operation)
        response = await self._client.run_operation(oper, **params)
        return await promote(self._client, response, oper.json)

    @classmethod
    async def connect(cls, url: str, username: str, password: str, app: str) -> AriSession:
        """aioari.connect(), but the HTTP session is closed when the connection fails
        (aioari leaves it open: one "Unclosed client session" per failed attempt)."""
        host = urlparse(url).netloc.split(":")[0]
        http_client = AsynchronousHttpClient(auth=ApiKeyAuthenticator(host, f"{username}:{password}"))
        try:
            client = aioari.Client(url, http_client)
            await client.init()
        except BaseException:
            await http_client.close()
            raise
        return cls(client, app, url)

    async def wait_registered(self, runner: asyncio.Future[Any], timeout: float = 10.0) -> None:
        """Return once Asterisk knows our application (the events WebSocket is up): until
        then ``GET /applications/{app}`` answers 404.  Raises what ``runner`` (the
        WebSocket reader) raised if it ends first."""
        async with asyncio.timeout(timeout):
            while True:
                if runner.done():
                    runner.result()
                    raise LinkLost("ARI events WebSocket closed before the application registered")
                try:
                    self.counts["rest GET applications/{app}"] += 1
                    await _call(self._client.applications.get(applicationName=self.app))
                    return
                except ChannelGone:  # 404: not registered yet
                    await asyncio.sleep(0.01)

    async def is_registered(self) -> bool:
        """Whether Asterisk has our application now (False once a process that took it over
        has gone: Asterisk destroys it then, and our WebSocket hears nothing any more)."""
        self.counts["rest GET applications/{app}"] += 1
        try:
            await _call(self._client.applications.get(applicationName=self.app))
        except ChannelGone:  # 404
            return False
        return True

    async def allow_only_events(self, event_types: list[str]) -> bool:
        """Ask Asterisk to send this application only these event types.

        Asterisk 22's ``PUT /applications/{app}/eventFilter`` takes the filter as
        the whole JSON body, which the swagger client cannot express, so this
        one request goes through its HTTP client directly.  A PBX without the
        feature keeps sending everything: that costs CPU, not correctness.
        """
        url = urljoin(self._base_url, f"ari/applications/{quote(self.app, safe='')}/eventFilter")
        body = json.dumps({"allowed": [{"type": t} for t in event_types]})
        self.counts["rest PUT applications/eventFilter"] += 1
        try:
            response = await self._client.swagger.http_client.request(
                "PUT", url, data=body, headers={"Content-Type": "application/json"})
            response.release()
            return True
        except web_exceptions.HTTPError as exc:
            log.warning("ARI event filter not accepted (%s); receiving every event", exc)
            return False

    def on_any_event(self, handler: EventHandler) -> None:
        counts = self.counts

        def counted(ev: dict[str, Any]) -> Any:
            counts[f"event {ev.get('type')}"] += 1
            return handler(ev)

        self._client.on_event("*", counted)

    async def run(self) -> None:
        """Read events until the WebSocket closes (Asterisk stopped, link lost)."""
        await self._client.run(apps=self.app)

    async def close(self) -> None:
        if self.counts:
            event(log, "ari.counts", app=self.app, counts=dict(sorted(self.counts.items())))
            self.counts.clear()
        try:
            await self._client.close()
        except Exception:  # closing a dead connection must not mask the real error
            log.debug("error closing ARI client", exc_info=True)

    # --- channel operations -------------------------------------------------
    async def answer(self, channel_id: str) -> None:
        self.counts["rest POST channels/answer"] += 1
        await _call(self._op("channels", "answer", channelId=channel_id))

    async def play(self, channel_id: str, media: list[str], playback_id: str, language: str | None = None) -> None:
        kwargs: dict[str, Any] = {"channelId": channel_id, "media": media, "playbackId": playback_id}
        if language:
            kwargs["lang"] = language
        self.counts["rest POST channels/play"] += 1
        await _call(self._op("channels", "playWithId", **kwargs))

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        self.counts["rest POST channels/variable"] += 1
        await _call(self._op("channels", "setChannelVar", channelId=channel_id, variable=name, value=value))

    async def get_variable(self, channel_id: str, name: str) -> str | None:
        """A channel variable's value; None when it is not set (ARI answers 404)."""
        try:
            self.counts["rest GET channels/variable"] += 1
            reply = await self._op("channels", "getChannelVar", channelId=channel_id, variable=name)
        except web_exceptions.HTTPNotFound:
            return None
        except web_exceptions.HTTPConflict as exc:
            raise ChannelGone(str(getattr(exc, "text", exc))) from None
        except web_exceptions.HTTPError as exc:
            raise AriError(f"{exc.status_code}: {getattr(exc, 'text', exc)}") from None
        except (aiohttp.ClientError, ConnectionError, TimeoutError, RuntimeError) as exc:
            lost = link_lost(exc)
            if lost is None:
                raise
            raise lost from None
        value = reply.get("value") if isinstance(reply, dict) else getattr(reply, "json", {}).get("value")
        return None if value is None else str(value)

    async def playback_state(self, playback_id: str) -> str | None:
        """The state of a playback Asterisk still has ('queued', 'playing', ...), None when it
        has none by that id (finished, stopped or never created)."""
        try:
            self.counts["rest GET playbacks/{id}"] += 1
            playback = await _call(self._client.playbacks.get(playbackId=playback_id))
        except ChannelGone:
            return None
        body = getattr(playback, "json", playback)
        return str(body.get("state")) if isinstance(body, dict) else "playing"

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (e.g. the caller started typing); already finished is fine."""
        try:
            self.counts["rest DELETE playbacks"] += 1
            await _call(self._op("playbacks", "stop", playbackId=playback_id))
        except ChannelGone:
            pass

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, priority: int) -> None:
        self.counts["rest POST channels/continue"] += 1
        await _call(
            self._op("channels", "continueInDialplan",
                     channelId=channel_id, context=context, extension=extension, priority=priority))

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        try:
            self.counts["rest DELETE channels"] += 1
            await _call(self._op("channels", "hangup", channelId=channel_id, reason=reason))
        except ChannelGone:
            pass

    async def originate(self, *, endpoint: str, channel_id: str, app_args: str, caller_id: str = "",
                        timeout: int = 30) -> None:
        """Dial ``endpoint`` into this Stasis application (StasisStart when answered)."""
        kwargs: dict[str, Any] = {"endpoint": endpoint, "channelId": channel_id, "app": self.app,
                                  "appArgs": app_args, "timeout": timeout}
        if caller_id:
            kwargs["callerId"] = caller_id
        self.counts["rest POST channels"] += 1
        await _call(self._op("channels", "originate", **kwargs))

    async def channel_exists(self, channel_id: str) -> bool:
        try:
            self.counts["rest GET channels/{id}"] += 1
            await _call(self._op("channels", "get", channelId=channel_id))
            return True
        except ChannelGone:
            return False

    async def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        try:
            self.counts["rest GET channels/{id}"] += 1
            channel = await _call(self._op("channels", "get", channelId=channel_id))
        except ChannelGone:
            return None
        return getattr(channel, "json", channel)

    async def channel_ids(self) -> set[str]:
        """Every channel Asterisk has now (in our application or not)."""
        self.counts["rest GET channels"] += 1
        channels = await _call(self._op("channels", "list"))
        return {str(getattr(c, "json", c)["id"]) for c in channels or []}

    async def application_channel_ids(self, app: str | None = None) -> list[str]:
        """Channels Asterisk kept in our application while we were away (or in ``app``, another
        instance's: none when Asterisk has no such application any more)."""
        self.counts["rest GET applications/{app}"] += 1
        try:
            found = await _call(self._op("applications", "get", applicationName=app or self.app))
        except ChannelGone:  # 404
            if app is None:
                raise
            return []
        return list(found.get("channel_ids", []))

    # --- several instances (docs/scale-out.md) -------------------------------
    async def claim(self, channel_id: str) -> bool:
        """Claim a channel StasisBroadcast() offered (CallBroadcast): True if we won it (its
        StasisStart follows), False if another instance was first or the offer is over."""
        self.counts["rest POST events/claim"] += 1
        try:
            await _call(self._op("events", "claimChannel", channelId=channel_id, application=self.app))
        except ChannelGone:  # 409 claimed by another, 404 no longer offered
            return False
        return True

    async def move(self, channel_id: str, app: str) -> None:
        """Move a channel (in any application's Stasis) into ``app``: Asterisk runs the move
        after the channel's current playback, then ``app`` gets its StasisStart."""
        self.counts["rest POST channels/move"] += 1
        await _call(self._op("channels", "move", channelId=channel_id, app=app))
