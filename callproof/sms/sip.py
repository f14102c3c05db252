"""SIP MESSAGE through Asterisk: ARI ``PUT /endpoints/sendMessage``, for trunks
that turn SIP MESSAGE into SMS ([sms.sip]).

Asterisk answers 202 once it has queued the MESSAGE; it gives no message id
and no delivery receipt, so 'accepted' here means "Asterisk took it".  404
(no such endpoint/technology) and 400 (bad URI) are permanent, 5xx and
connection errors transient, a timeout unknown.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import aiohttp

from .backends import SendResult


class SipMessageBackend:
    name = "sip"
    idempotent = False

    def __init__(self, settings: Any, ari_url: str, ari_username: str, ari_password: str) -> None:
        self.s = settings
        self.url = urljoin(ari_url if ari_url.endswith("/") else ari_url + "/", "ari/endpoints/sendMessage")
        token = base64.b64encode(f"{ari_username}:{ari_password}".encode()).decode()
        self.auth_header = f"Basic {token}"
        self._session: aiohttp.ClientSession | None = None

    async def send(self, message: Mapping[str, Any]) -> SendResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": self.auth_header},
                timeout=aiohttp.ClientTimeout(total=self.s.timeout_seconds))
        number = message["destination"]
        params = {"to": self.s.to_template.format(destination=number, number=number.lstrip("+")),
                  "body": message["body"]}
        if self.s.from_uri:
            params["from"] = self.s.from_uri
        try:
            async with self._session.put(self.url, params=params) as resp:
                text = (await resp.text())[:200]
                if resp.status in (200, 202, 204):
                    return SendResult(accepted=True, gateway_message_id=None)
                reason = f"ARI {resp.status}: {text}"
                if resp.status >= 500:
                    return SendResult(accepted=False, reason=reason)
                return SendResult(accepted=False, permanent=True, reason=reason)
        except TimeoutError:
            return SendResult(accepted=False, unknown=True, reason="ARI did not answer in time")
        except aiohttp.ClientConnectorError as exc:
            return SendResult(accepted=False, reason=f"cannot reach ARI: {exc}")
        except aiohttp.ClientError as exc:
            return SendResult(accepted=False, unknown=True, reason=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
