"""``callproof sms ...``: status of a protocol's SMS, dead-letter list and
retry, and the Prometheus counters (printed, or served on loopback)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from callproof.config import Config
    from callproof.storage import Database

from .metrics import OUTBOX_STATES as STATES


def _masked(number: str | None) -> str:
    return "-" if not number else number[:-4] + "****" if len(number) > 6 else "****"


async def _with_db(config: Config, fn: Callable[[Database], Awaitable[int]]) -> int:
    from callproof.storage import open_database
    db = await open_database(config)
    try:
        return await fn(db)
    finally:
        await db.close()


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    if not (len(args.protocol) == 17 and args.protocol.isdigit()):
        print("callproof: PROTOCOL must be 17 digits (4-digit year + 13-digit sequence)", file=sys.stderr)
        return 2

    async def run(db: Database) -> int:
        rows = await db.outbox.get_for_protocol(args.protocol)
        if not rows:
            print(f"callproof: no SMS for protocol {args.protocol}", file=sys.stderr)
            return 1
        await db.audit.append("sms.status_viewed", actor=args.actor, protocol=args.protocol,
                              details={"via": "cli"})
        out = []
        for row in rows:
            out.append({**dict(row), "attempts_log": await db.outbox.attempts(row["id"]),
                        "receipts": await db.outbox.dlrs(row["id"])})
        print(json.dumps(out, indent=2, default=str))
        return 0

    return asyncio.run(_with_db(config, run))


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    async def run(db: Database) -> int:
        states = ("dead", "failed") if args.state == "failed" else args.state
        rows = await db.outbox.list(states, args.limit)
        if args.json:
            for row in rows:
                print(json.dumps({**dict(row), "destination": _masked(row["destination"])}, default=str))
            return 0
        print(f"{'ID':>8}  {'PROTOCOL':17}  {'STATE':12}  {'TRIES':>5}  {'DESTINATION':16}  {'UPDATED':27}  REASON")
        for r in rows:
            print(f"{r['id']:>8}  {r['protocol']:17}  {r['state']:12}  {r['attempts']:>5}  "
                  f"{_masked(r['destination']):16}  {r['updated_at']:27}  {r['reason'] or ''}")
        return 0

    return asyncio.run(_with_db(config, run))


def cmd_retry(args: argparse.Namespace, config: Config) -> int:
    from callproof.storage import InvalidStateError, NotFoundError

    async def run(db: Database) -> int:
        try:
            await db.outbox.retry(args.ids, db.now())
        except (InvalidStateError, NotFoundError) as exc:
            print(f"callproof: nothing retried: {exc}", file=sys.stderr)
            return 1
        for oid in args.ids:
            row = await db.outbox.get(oid)
            assert row is not None  # retry() has just found every one
            await db.audit.append("sms.retry_requested", actor=args.actor, protocol=row["protocol"],
                                  details={"outbox_id": oid})
        print(f"queued again: {' '.join(str(i) for i in args.ids)}")
        return 0

    return asyncio.run(_with_db(config, run))


def cmd_metrics(args: argparse.Namespace, config: Config) -> int:
    from .metrics import exposition

    if args.serve is None:
        async def once(db: Database) -> int:
            sys.stdout.write(exposition(await db.outbox.counters()))
            return 0
        return asyncio.run(_with_db(config, once))

    async def serve(db: Database) -> int:
        runner = await serve_metrics(db, args.host, args.serve)
        host, port = runner.addresses[0][:2]
        print(f"serving SMS metrics on http://{host}:{port}/metrics", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
        return 0

    try:
        return asyncio.run(_with_db(config, serve))
    except KeyboardInterrupt:
        return 0


async def serve_metrics(db: Database, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Start GET /metrics (Prometheus text) on host:port; returns the aiohttp AppRunner."""
    from aiohttp import web

    from .metrics import exposition

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=exposition(await db.outbox.counters()), content_type="text/plain",
                            charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def add_sms_commands(sub: Any, load: Callable[[argparse.Namespace], Config]) -> None:
    def bind(fn: Callable) -> Callable:
        return lambda args: fn(args, load(args))

    sms = sub.add_parser("sms", help="protocol SMS delivery").add_subparsers(dest="sub", required=True)
    st = sms.add_parser("status", help="the SMS of a protocol: state, attempts, receipts")
    st.add_argument("protocol")
    st.add_argument("--actor", default=getpass.getuser(), help="who is looking (audit log)")
    st.set_defaults(func=bind(cmd_status))
    ls = sms.add_parser("list", help="list outbox rows (e.g. --state dead for the dead letters)")
    ls.add_argument("--state", choices=STATES,
                    help="only rows in this state; 'failed' lists the dead letters (dead and failed rows)")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="JSON lines (destination masked)")
    ls.set_defaults(func=bind(cmd_list))
    rt = sms.add_parser("retry", help="send dead (or failed) rows again, with a fresh attempt budget")
    rt.add_argument("ids", nargs="+", type=int, metavar="ID")
    rt.add_argument("--actor", default=getpass.getuser(), help="who asked (audit log)")
    rt.set_defaults(func=bind(cmd_retry))
    mt = sms.add_parser("metrics", help="Prometheus counters (sent, failed, retried, DLR delivered)")
    mt.add_argument("--serve", type=int, metavar="PORT", help="serve /metrics over HTTP instead of printing")
    mt.add_argument("--host", default="127.0.0.1", help="listen address for --serve (loopback by default)")
    mt.set_defaults(func=bind(cmd_metrics))
