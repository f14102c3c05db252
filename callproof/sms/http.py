"""HTTP SMS gateway backend, configured rather than coded ([sms.http]).

Method, URL, Authorization header, a JSON or form body template with
placeholders ({destination}, {body}, {protocol}, {idempotency_key},
{outbox_id}), the statuses that mean "accepted" and the dotted path of the
provider's message id in a JSON answer.  The row's idempotency key goes in a
header (default ``Idempotency-Key``) on every attempt, the same for all
attempts, so a gateway that honours it drops a repeat after an unknown outcome.

Answers: success statuses -> accepted; 429 -> throttled (Retry-After honoured);
408, 5xx, timeouts and connection errors -> transient (a timeout or a broken
connection after the request was sent is 'unknown'); other 4xx -> permanent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from .backends import SendResult


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _dig(data: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


class HttpBackend:
    name = "http"
    idempotent = True  # when the gateway honours the idempotency header

    def __init__(self, settings: Any) -> None:
        self.s = settings
        self._session: aiohttp.ClientSession | None = None

    async def send(self, message: Mapping[str, Any]) -> SendResult:
        s = self.s
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=s.timeout_seconds))
        values = {"destination": message["destination"], "body": message["body"],
                  "protocol": message["protocol"], "idempotency_key": message.get("idempotency_key", ""),
                  "outbox_id": message["id"]}
        fields = {k: v.format(**values) for k, v in s.body_template.items()}
        headers = {}
        if s.auth_header:
            headers["Authorization"] = s.auth_header
        if s.idempotency_header and values["idempotency_key"]:
            headers[s.idempotency_header] = values["idempotency_key"]
        kwargs: dict[str, Any] = {"headers": headers}
        if s.method.upper() == "GET":
            kwargs["params"] = fields
        elif s.body_format == "json":
            kwargs["json"] = fields
        else:
            kwargs["data"] = fields
        try:
            async with self._session.request(s.method.upper(), s.url, **kwargs) as resp:
                text = await resp.text()
                status = resp.status
                if status in s.success_statuses:
                    gw_id = None
                    try:
                        found = _dig(json.loads(text), s.message_id_field)
                        gw_id = None if found is None else str(found)
                    except ValueError:
                        pass
                    return SendResult(accepted=True, gateway_message_id=gw_id or values["idempotency_key"])
                reason = f"HTTP {status}: {text[:200]}"
                if status == 429:
                    return SendResult(accepted=False, throttled=True, reason=reason,
                                      retry_after=_retry_after(resp.headers.get("Retry-After")))
                if status == 408 or status >= 500:
                    return SendResult(accepted=False, reason=reason)
                return SendResult(accepted=False, permanent=True, reason=reason)
        except (TimeoutError, aiohttp.ServerDisconnectedError) as exc:
            return SendResult(accepted=False, unknown=True, reason=f"{type(exc).__name__}: no answer")
        except aiohttp.ClientConnectorError as exc:  # never reached the gateway
            return SendResult(accepted=False, reason=f"cannot connect: {exc}")
        except aiohttp.ClientError as exc:
            return SendResult(accepted=False, unknown=True, reason=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
