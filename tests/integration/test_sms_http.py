"""HTTP gateway backend against a real aiohttp server on loopback: success,
4xx permanent, 5xx transient, 429 with Retry-After, timeout; the idempotency
key is the same on every attempt, so a gateway that honours it sends once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiohttp import web

from callproof.config import SmsHttpConfig
from callproof.sms import OutboxSender
from callproof.sms.http import HttpBackend
from callproof.storage import Database, NewCall, SmsDraft

pytestmark = pytest.mark.timeout(60)


class Gateway:
    """Answers from a per-destination script; honours Idempotency-Key like real providers."""

    def __init__(self):
        self.script: dict[str, list] = {}
        self.requests: list[dict] = []
        self.delivered: dict[str, dict] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key")
        self.requests.append({"body": body, "key": key, "auth": request.headers.get("Authorization")})
        steps = self.script.get(body["to"], [])
        step = steps.pop(0) if steps else "ok"
        if step == "sleep":
            await asyncio.sleep(2)
            step = "ok"
        if step == "ok":
            if key not in self.delivered:
                self.delivered[key] = body
            return web.json_response({"data": {"message": {"id": f"http-{key}"}}}, status=201)
        if step == "429":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        return web.json_response({"error": step}, status=int(step))


@pytest.fixture
async def gateway():
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/sms", gw.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/sms"
    yield gw
    await runner.cleanup()


async def queue(db, destinations):
    ids = []
    now = datetime.now(UTC).isoformat()
    for i, dest in enumerate(destinations):
        call_id = await db.calls.create(NewCall(f"h{i}", None, None, dest, dest, None, None, "pt_BR", now))
        r = await db.protocols.allocate_for_call(call_id, year=datetime.now(UTC).year, allocated_at=now,
                                                 sms=SmsDraft(dest, "pt_BR", lambda p: f"Protocolo {p}"))
        ids.append(r.outbox_id)
    return ids


async def test_http_gateway_answers(tmp_path, gateway):
    dests = {"ok": "+5511911110001", "400": "+5511911110002", "503": "+5511911110003",
             "429": "+5511911110004", "slow": "+5511911110005"}
    gateway.script = {dests["400"]: ["400"], dests["503"]: ["503", "503"], dests["429"]: ["429"],
                      dests["slow"]: ["sleep"]}
    settings = replace(SmsHttpConfig(), url=gateway.url, auth_header="Bearer t0ken-x",
                       message_id_field="data.message.id", timeout_seconds=0.5)
    async with Database.open(tmp_path / "cp.db") as db:
        ids = dict(zip(dests, await queue(db, list(dests.values())), strict=False))
        sender = OutboxSender(db, HttpBackend(settings), lease_seconds=10, poll_interval=0.1, window=5,
                              backoff_base=0.2, backoff_max=0.5, send_timeout=2.0, max_attempts=5)
        task = asyncio.create_task(sender.run())
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                rows = {k: await db.outbox.get(i) for k, i in ids.items()}
                if all(r["state"] in ("sent", "dead") for r in rows.values()):
                    break
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sender.backend.close()
        assert rows["ok"]["state"] == "sent"
        assert rows["ok"]["gateway_message_id"] == f"http-{rows['ok']['idempotency_key']}"
        assert rows["400"]["state"] == "dead" and rows["400"]["reason"].startswith("HTTP 400")
        assert rows["503"]["state"] == "sent"
        assert [a["outcome"] for a in await db.outbox.attempts(ids["503"])] == ["transient", "transient", "accepted"]
        assert rows["429"]["state"] == "sent" and rows["429"]["throttled"] == 1 and rows["429"]["attempts"] == 1
        # timeout: the gateway got the request but we had no answer -> unknown, resent with the same key,
        # and the gateway (honouring the key) delivered it once
        assert rows["slow"]["state"] == "sent"
        slow = [a["outcome"] for a in await db.outbox.attempts(ids["slow"])]
        assert slow[0] == "unknown" and slow[-1] == "accepted"
        slow_keys = {r["key"] for r in gateway.requests if r["body"]["to"] == dests["slow"]}
        assert slow_keys == {rows["slow"]["idempotency_key"]}
        assert sum(1 for b in gateway.delivered.values() if b["to"] == dests["slow"]) == 1
        assert all(r["auth"] == "Bearer t0ken-x" for r in gateway.requests)
        assert gateway.requests[0]["body"]["text"].startswith("Protocolo ")
