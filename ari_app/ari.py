"""The few ARI operations the call flow needs.

aioari gives us the events WebSocket; the REST requests go straight through
its pooled keep-alive aiohttp session (see :meth:`AriSession._rest`).  This
module narrows ARI to what callproof does and turns "the channel is no
longer ours" answers (404 Not Found, 409 not in Stasis) into one exception,
:class:`ChannelGone`, so the flow can treat every kind of hang-up alike.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urljoin

import aioari
from aiohttp import web_exceptions

from callproof.logs import event

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Any]


class ChannelGone(Exception):
    """The channel hung up or left our Stasis application."""


class AriError(Exception):
    """ARI refused an operation for a reason other than the channel being gone."""


class _NotFound(Exception):
    """404 where "not found" is an answer, not the channel being gone (an unset variable)."""


def _seg(value: str) -> str:
    return quote(value, safe="")


class AriSession:
    """One connection to Asterisk's ARI (REST + events WebSocket)."""

    def __init__(self, client: Any, app: str, base_url: str = "", username: str = "", password: str = ""):
        self._client = client
        self.app = app
        self._base_url = base_url
        self._api_url = urljoin(base_url, "ari/")
        self._http = client.swagger.http_client.session  # aiohttp, keep-alive, shared with the WebSocket
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._auth = {"Authorization": f"Basic {token}"}
        # REST requests by operation and events by type since connecting; logged as
        # 'ari.counts' when the session closes (the benchmark reads them per call).
        self.counts: Counter[str] = Counter()

    @classmethod
    async def connect(cls, url: str, username: str, password: str, app: str) -> AriSession:
        client = await aioari.connect(url, username, password)
        return cls(client, app, url, username, password)

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
        await self._rest("POST", "channels/answer", f"channels/{_seg(channel_id)}/answer")

    async def play(self, channel_id: str, media: list[str], playback_id: str, language: str | None = None) -> None:
        params = {"media": ",".join(media), "playbackId": playback_id}
        if language:
            params["lang"] = language
        await self._rest("POST", "channels/play", f"channels/{_seg(channel_id)}/play", params)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self._rest("POST", "channels/variable", f"channels/{_seg(channel_id)}/variable",
                         {"variable": name, "value": value})

    async def get_variable(self, channel_id: str, name: str) -> str | None:
        """A channel variable's value; None when it is not set (ARI answers 404)."""
        try:
            reply = await self._rest("GET", "channels/variable", f"channels/{_seg(channel_id)}/variable",
                                     {"variable": name}, not_found=_NotFound)
        except _NotFound:
            return None
        value = reply.get("value") if isinstance(reply, dict) else None
        return None if value is None else str(value)

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (e.g. the caller started typing); already finished is fine."""
        try:
            await self._rest("DELETE", "playbacks", f"playbacks/{_seg(playback_id)}")
        except ChannelGone:
            pass

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, priority: int) -> None:
        await self._rest("POST", "channels/continue", f"channels/{_seg(channel_id)}/continue",
                         {"context": context, "extension": extension, "priority": str(priority)})

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        try:
            await self._rest("DELETE", "channels", f"channels/{_seg(channel_id)}", {"reason": reason})
        except ChannelGone:
            pass

    async def originate(self, *, endpoint: str, channel_id: str, app_args: str, caller_id: str = "",
                        timeout: int = 30) -> None:
        """Dial ``endpoint`` into this Stasis application (StasisStart when answered)."""
        params = {"endpoint": endpoint, "channelId": channel_id, "app": self.app, "appArgs": app_args,
                  "timeout": str(timeout)}
        if caller_id:
            params["callerId"] = caller_id
        await self._rest("POST", "channels", "channels", params)

    async def channel_exists(self, channel_id: str) -> bool:
        try:
            await self._rest("GET", "channels/{id}", f"channels/{_seg(channel_id)}")
            return True
        except ChannelGone:
            return False

    async def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        try:
            channel = await self._rest("GET", "channels/{id}", f"channels/{_seg(channel_id)}")
        except ChannelGone:
            return None
        return channel if isinstance(channel, dict) else None

    async def application_channel_ids(self) -> list[str]:
        """Channels Asterisk kept in our application while we were away."""
        app = await self._rest("GET", "applications/{app}", f"applications/{_seg(self.app)}")
        return list((app or {}).get("channel_ids", []))

    # --- transport --------------------------------------------------------
    async def _rest(self, method: str, name: str, path: str, params: dict[str, str] | None = None,
                    not_found: type[Exception] = ChannelGone) -> Any:
        """One ARI REST request on the client's pooled keep-alive HTTP session.

        Straight through aiohttp rather than aioari's swagger operations, which
        validate every parameter and promote every reply into model objects (with
        their own event registrations) that callproof never uses.  404 raises
        ``not_found`` (ChannelGone by default), 409 (not in Stasis) ChannelGone,
        any other error AriError.
        """
        self.counts[f"rest {method} {name}"] += 1
        async with self._http.request(method, self._api_url + path, params=params, headers=self._auth) as resp:
            body = await resp.read()
            status = resp.status
        if status < 300:
            return json.loads(body) if body else None
        text = body.decode(errors="replace")
        if status == 404:
            raise not_found(text)
        if status == 409:
            raise ChannelGone(text)
        raise AriError(f"{status}: {text}")
