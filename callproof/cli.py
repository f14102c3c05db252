"""The ``callproof`` console command."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from .config import ConfigError, load_config
from .logs import setup_logging


def _load(args: argparse.Namespace):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"callproof: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(f"configuration OK: ARI {config.ari.url} app={config.ari.app}, AMI {config.ami.host}:{config.ami.port}, "
          f"database {config.storage.database}, recordings under {config.recording.root}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    setup_logging(config.logging.level, config.logging.format)
    from ari_app.app import Application

    async def main() -> None:
        app = Application(config)
        await app.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.ensure_future(app.run())
        await stop.wait()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()

    asyncio.run(main())
    return 0


def cmd_fastagi(args: argparse.Namespace) -> int:
    """The FastAGI server (agi_scripts/fastagi.py) until SIGTERM/SIGINT."""
    config = _load(args)
    setup_logging(config.logging.level, config.logging.format)
    from agi_scripts.fastagi import FastAgiServer

    async def main() -> None:
        server = await FastAgiServer(config).start(host=args.host, port=args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(main())
    return 0


def cmd_protocol_show(args: argparse.Namespace) -> int:
    config = _load(args)
    from storage import Database

    async def main() -> int:
        db = await Database.open(config.storage.database, busy_timeout_ms=config.storage.busy_timeout_ms)
        try:
            call = await db.calls.get_by_protocol(args.protocol)
            if call is None:
                print(f"callproof: no call with protocol {args.protocol}", file=sys.stderr)
                return 1
            recordings = await db.recordings.for_call(call["id"])
            sms = await db.outbox.get_for_protocol(args.protocol)
            await db.audit.append("protocol.viewed", actor=args.actor, protocol=args.protocol,
                                  details={"via": "cli"})
            print(json.dumps({"call": dict(call), "recordings": [dict(r) for r in recordings],
                              "sms": [dict(s) for s in sms]}, indent=2, default=str))
            return 0
        finally:
            await db.close()

    if not (len(args.protocol) == 17 and args.protocol.isdigit()):
        print("callproof: PROTOCOL must be 17 digits (4-digit year + 13-digit sequence)", file=sys.stderr)
        return 2
    return asyncio.run(main())


def cmd_prompts_generate(args: argparse.Namespace) -> int:
    from .prompts import generate_prompts

    dest = Path(args.dest) if args.dest else _load(args).prompts.directory
    result = generate_prompts(dest, force=args.force)
    print(f"prompts ready in {dest} ({len(result)} entries)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep, caller=args.caller)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callproof", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $CALLPROOF_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the ARI application").set_defaults(func=cmd_run)
    sub.add_parser("check-config", help="validate the configuration and exit").set_defaults(func=cmd_check_config)
    fastagi = sub.add_parser("fastagi", help="run the FastAGI server (dialplan/callproof-fastagi.conf)")
    fastagi.add_argument("--host", help="listen address (default: [fastagi] host, 127.0.0.1)")
    fastagi.add_argument("--port", type=int, help="TCP port (default: [fastagi] port, 4573)")
    fastagi.set_defaults(func=cmd_fastagi)

    demo = sub.add_parser("demo", help="place one demo call through a sandbox Asterisk 22")
    demo.add_argument("--caller", default="11987654321", help="caller ID of the demo call")
    demo.add_argument("--keep", action="store_true", help="keep the run directory")
    demo.set_defaults(func=cmd_demo)

    protocol = sub.add_parser("protocol", help="protocol numbers").add_subparsers(dest="sub", required=True)
    show = protocol.add_parser("show", help="show the call, recording and SMS of a protocol")
    show.add_argument("protocol")
    show.add_argument("--actor", default="cli", help="who is looking (written to the audit log)")
    show.set_defaults(func=cmd_protocol_show)

    prompts = sub.add_parser("prompts", help="announcement prompts").add_subparsers(dest="sub", required=True)
    gen = prompts.add_parser("generate", help="generate the default prompts with espeak-ng")
    gen.add_argument("--dest", help="directory (default: [prompts] directory)")
    gen.add_argument("--force", action="store_true", help="regenerate existing files")
    gen.set_defaults(func=cmd_prompts_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
