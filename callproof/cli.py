"""The ``callproof`` console command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .config import DEFAULT_CONFIG, ConfigError, GeneralConfig, Sources, load_config_and_sources
from .config.secrets_file import config_path
from .logs import event, setup_logging
from .service_user import (
    EXIT_NO_PERMISSION,
    ServiceUserError,
    account,
    drop_to_service_user,
    permission_message,
)

#: The files read as root, before a command dropped to the service user (see main()).
_as_root: Sources | None = None

#: Commands that stay root when started as root: the sandbox demo builds a chroot, the
#: dialplan goes to /etc/asterisk, install writes /etc and sets owners (the package's
#: postinst runs it), doctor checks what the service user may do, and an evidence package
#: is checked offline (no configuration, nothing written).
STAYS_ROOT = frozenset({"demo", "dialplan", "install", "doctor", "evidence verify"})


def _load_with_sources(args: argparse.Namespace, *, talks_to_asterisk: bool = False):
    """The configuration and the files it came from: ``--config``, ``$CALLPROOF_CONFIG``, else
    /etc/callproof/callproof.toml if it exists, and the secrets file beside it.  ARI/AMI
    passwords are required only where they are used (``run``, ``check-config``): AGI-only
    installs and ops commands need none."""
    try:
        config, sources = load_config_and_sources(args.config, require_asterisk_apis=talks_to_asterisk,
                                                  default_path=DEFAULT_CONFIG)
        if _as_root is not None and _as_root.config_file == sources.config_file:
            sources = _as_root  # read as root before dropping to the service user: what it read then
        return config, sources
    except ConfigError as exc:
        chosen = config_path(args.config, os.environ, DEFAULT_CONFIG)
        where = f"{chosen}" if chosen else "built-in defaults, no configuration file"
        print(f"callproof: invalid configuration ({where}): {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _load(args: argparse.Namespace, *, talks_to_asterisk: bool = False):
    return _load_with_sources(args, talks_to_asterisk=talks_to_asterisk)[0]


def _signing_key_or_exit(config) -> None:
    """A configured signing key that cannot be used stops the command, naming the file."""
    from .evidence.keys import KeyFileError, signer_from_config
    try:
        signer_from_config(config)
    except KeyFileError as exc:
        print(f"callproof: invalid configuration: config key 'evidence.signing_key': {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    config, sources = _load_with_sources(args, talks_to_asterisk=True)
    _signing_key_or_exit(config)
    print(f"files: {sources.describe()}")
    print(f"profile: {sources.describe_profile()}")
    for note in sources.notes:
        print(f"note: {note}")
    if config.sms.backend == "log":
        print("warning: [sms] backend is 'log': no SMS is sent, each is only logged (state 'logged');"
              " set [sms] backend to smpp, http or sip (docs/sms.md)", file=sys.stderr)
    print(f"configuration OK: ARI {config.ari.url} app={config.ari.registered_app}, "
          f"AMI {config.ami.host}:{config.ami.port}, "
          f"database {_database_named(config)}, recordings under {config.recording.root}")
    return 0


def _prompts_or_exit(config: Any, sources: Any) -> Any:
    """Every configured language has its prompt files (callproof/prompts/startup.py): a
    language without them stops the service at start-up, not at a caller's first prompt.

    A jurisdiction's languages offered only where installed (``es``: ca, eu, gl) are left
    out instead, with a note: the configuration returned is the one to serve calls with."""
    from .callflow.language_choice import any_menu
    from .config.jurisdictions import offered_if_installed
    from .prompts import MissingPromptsError, PromptCatalogue, require_prompts
    from .prompts.startup import leave_out_uninstalled

    def catalogue_of(config: Any) -> PromptCatalogue:
        return PromptCatalogue(config.prompts.directory, default_language=config.general.default_language,
                               languages=config.general.languages, custom_dir=config.prompts.custom_directory)

    catalogue = catalogue_of(config)
    optional = offered_if_installed(sources.jurisdiction, sources.from_profile)
    if optional:
        config, left_out = leave_out_uninstalled(config, catalogue, optional, with_menu=any_menu(config))
        for lang, files in left_out.items():
            more = f" and {len(files) - 1} more" if len(files) > 1 else ""
            print(f"note: jurisdiction {sources.jurisdiction!r}: {lang} is not offered: its prompt files are "
                  f"missing ({files[0]}{more}); run 'callproof prompts generate' (or record custom/{lang}/) "
                  "and restart to offer it", file=sys.stderr)
        if left_out:
            catalogue = catalogue_of(config)
    try:
        require_prompts(catalogue, with_menu=any_menu(config))
    except MissingPromptsError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return config


def _database_named(config: Any) -> str:
    """The database as a message names it (a PostgreSQL URL without any password)."""
    from callproof.storage.pg_url import masked

    return masked(config.storage.target)


def cmd_run(args: argparse.Namespace) -> int:
    config, sources = _load_with_sources(args, talks_to_asterisk=True)
    _signing_key_or_exit(config)
    config = _prompts_or_exit(config, sources)
    setup_logging(config.logging.level, config.logging.format)
    from callproof.ari_app.app import Application
    from callproof.ari_app.logins import EXIT_LOGIN_REFUSED, LoginRefused

    async def main() -> None:
        app = Application(config)
        try:
            await app.start()
        except BaseException:
            await app.stop()
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # SIGUSR1: one 'app.stats' log line (tasks, calls and recordings held); docs/operations.md
        loop.add_signal_handler(signal.SIGUSR1, lambda: event(logging.getLogger("callproof.app"), "app.stats",
                                                              **app.stats()))
        runner: asyncio.Future[Any] = asyncio.ensure_future(app.run())
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        assert app.ami is not None
        watched: tuple[asyncio.Future[Any], ...] = (runner, stopping, app.ami.refused)
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await app.stop()
        for fut in (app.ami.refused, runner):
            error = fut.exception() if fut.done() and not fut.cancelled() else None
            if error is not None:
                raise error

    try:
        asyncio.run(main())
    except LoginRefused as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return EXIT_LOGIN_REFUSED
    return 0


def cmd_fastagi(args: argparse.Namespace) -> int:
    """The FastAGI server (agi_scripts/fastagi.py) until SIGTERM/SIGINT."""
    config, sources = _load_with_sources(args)
    _signing_key_or_exit(config)
    config = _prompts_or_exit(config, sources)
    setup_logging(config.logging.level, config.logging.format)
    from callproof.agi_scripts.fastagi import FastAgiServer

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
    from callproof.storage import open_database

    async def main() -> int:
        db = await open_database(config)
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
    """The configured languages' prompts ([general] languages; --languages overrides it,
    and is the default set with --dest and no configuration)."""
    from .prompts import LANGUAGES, generate_prompts
    from .prompts.cli import print_recordings_needed

    config = None if args.dest else _load(args)
    dest = Path(args.dest) if args.dest else config.prompts.directory  # type: ignore[union-attr]
    if args.languages:
        languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    else:
        languages = list(config.general.languages if config else LANGUAGES)
    custom = config.prompts.custom_directory if config else None
    try:
        result = generate_prompts(dest, languages, force=args.force, custom_dir=custom)
    except ValueError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 2
    print(f"prompts ready in {dest} ({len(result['created'])} created, {len(result['kept'])} kept; "
          f"languages {', '.join(languages)})")
    print_recordings_needed(result)
    return 0


def cmd_dialplan_install(args: argparse.Namespace) -> int:
    from .dialplan import directory, install

    try:
        written = install(Path(args.dest), overwrite=args.overwrite)
    except FileExistsError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    print(f"add '#include {Path(args.dest).name}/callproof.conf' (or the AGI/FastAGI file) to extensions.conf, "
          f"then: asterisk -rx 'dialplan reload'   (shipped copies: {directory()})", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep, caller=args.caller)


# -- retention, holds, integrity (docs/operations.md, Retention) -------------------------

def cmd_retention_sweep(args: argparse.Namespace) -> int:
    config = _load(args)
    from .retention import EXIT_LOCKED, SweepLocked, SweepLockLost, json_line, print_summary, run_sweep

    report = None
    if args.json:
        def report(item):
            print(json_line({"type": "item", **item}), flush=False)
    elif args.dry_run:
        def report(item):
            if item["action"] not in ("deleted", "anonymised"):
                print(f"{item['action']:>16}  {item.get('protocol') or '-'}  {item.get('path', '')}"
                      f"  {item.get('why') or item.get('error') or ''}")
    bar = None

    def progress_total(total: int):
        nonlocal bar
        if args.json or not sys.stderr.isatty():
            return None
        from tqdm import tqdm
        bar = tqdm(total=total, unit="rec", desc="retention sweep", file=sys.stderr)
        return bar.update

    try:
        summary = run_sweep(config, dry_run=args.dry_run, scan=not args.no_scan, report=report,
                            progress_total=progress_total)
    except SweepLockLost as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except SweepLocked as exc:
        print(f"callproof: {exc}; not starting a second sweep", file=sys.stderr)
        return EXIT_LOCKED
    except FileNotFoundError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if not args.dry_run:  # a host without calls still anchors its audit chain (docs/evidence.md)
        from .evidence.checkpoints import anchor_once
        if not anchor_once(config):
            print("callproof: the audit checkpoint could not be written (see the log)", file=sys.stderr)
    if args.json:
        print(json_line({"type": "summary", **summary.as_dict()}))
    else:
        print_summary(summary)
    return 1 if summary.errors else 0


def _parse_when(text: str, tz, *, end: bool) -> str:
    """YYYY-MM-DD (a whole local day: start, or the start of the next day for
    --to) or an ISO-8601 time with an offset."""
    from datetime import date, datetime, time, timedelta

    from callproof.storage.timefmt import to_db_time
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            return to_db_time(text)
        except ValueError as exc:
            raise SystemExit(f"callproof: bad date {text!r}: {exc} (use YYYY-MM-DD or ISO-8601 with offset)") from None
    return to_db_time(datetime.combine(day + timedelta(days=1 if end else 0), time(0), tz))


def _actor(args: argparse.Namespace) -> str:
    from .actors import cli_actor

    return cli_actor(args.by)


def cmd_hold_place(args: argparse.Namespace) -> int:
    config = _load(args)
    from callproof.storage import open_sync, utc_now

    from .numbers import normalise_caller

    kw: dict = {}
    if args.protocol:
        kind, kw["protocol"] = "protocol", args.protocol
    elif args.caller:
        number = normalise_caller(args.caller, config.general.phone_region).e164
        if number is None:
            print(f"callproof: --caller {args.caller!r} is not a valid phone number", file=sys.stderr)
            return 2
        kind, kw["caller_number"] = "caller", number
    else:
        if not (args.date_from and args.date_to):
            print("callproof: give --protocol, --caller, or both --from and --to", file=sys.stderr)
            return 2
        kind = "date_range"
        kw["from_at"] = _parse_when(args.date_from, config.general.tz, end=False)
        kw["to_at"] = _parse_when(args.date_to, config.general.tz, end=True)
    with open_sync(config) as db:
        try:
            hold_id = db.holds.place(kind, reason=args.reason, placed_by=_actor(args), at=utc_now(), **kw)
        except ValueError as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return 2
    print(f"hold {hold_id} placed ({kind}: {', '.join(f'{k}={v}' for k, v in kw.items())})")
    return 0


def cmd_hold_release(args: argparse.Namespace) -> int:
    config = _load(args)
    from callproof.storage import StorageError, open_sync, utc_now

    with open_sync(config) as db:
        try:
            db.holds.release(args.hold_id, released_by=_actor(args), reason=args.reason, at=utc_now())
        except (ValueError, StorageError) as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return 1
    print(f"hold {args.hold_id} released")
    return 0


def cmd_hold_list(args: argparse.Namespace) -> int:
    config = _load(args)
    from callproof.storage import open_sync

    with open_sync(config) as db:
        holds = db.holds.list(include_released=args.all)
    if args.json:
        print(json.dumps(holds, indent=2))
        return 0
    for h in holds:
        sel = h["protocol"] or h["caller_number"] or f"{h['from_at']} .. {h['to_at']}"
        state = f"released by {h['released_by']} {h['released_at']}" if h["released_at"] else "ACTIVE"
        print(f"{h['id']:>5}  {h['kind']:<10}  {sel}  by {h['placed_by']} {h['placed_at']}"
              f"  {state}  reason: {h['reason']}")
    if not holds:
        print("no holds" if args.all else "no active holds")
    return 0


def _add_retention_commands(sub) -> None:
    retention = sub.add_parser("retention", help="recording retention").add_subparsers(dest="sub", required=True)
    sweep = retention.add_parser("sweep", help="delete expired recordings, anonymise old call records")
    sweep.add_argument("--dry-run", action="store_true", help="list what would go and why; change nothing")
    sweep.add_argument("--json", action="store_true", help="JSON lines: one per item, then the summary")
    sweep.add_argument("--no-scan", action="store_true", help="skip the orphan/missing-file scan")
    sweep.set_defaults(func=cmd_retention_sweep)

    hold = sub.add_parser("hold", help="legal holds").add_subparsers(dest="sub", required=True)
    place = hold.add_parser("place", help="place a legal hold")
    sel = place.add_mutually_exclusive_group()
    sel.add_argument("--protocol", help="17-digit protocol")
    sel.add_argument("--caller", help="caller number (any spelling; stored as E.164)")
    place.add_argument("--from", dest="date_from", help="start (YYYY-MM-DD local day, or ISO-8601)")
    place.add_argument("--to", dest="date_to", help="end, inclusive day (YYYY-MM-DD) or ISO-8601 (exclusive)")
    place.add_argument("--reason", required=True, help="why (e.g. court case number)")
    place.add_argument("--by", help="who places it (default: the login name)")
    place.set_defaults(func=cmd_hold_place)
    release = hold.add_parser("release", help="release a legal hold")
    release.add_argument("hold_id", type=int)
    release.add_argument("--reason", required=True)
    release.add_argument("--by", help="who releases it (default: the login name)")
    release.set_defaults(func=cmd_hold_release)
    lst = hold.add_parser("list", help="list holds")
    lst.add_argument("--all", action="store_true", help="include released holds")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_hold_list)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callproof", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $CALLPROOF_CONFIG, else "
                                         "/etc/callproof/callproof.toml; secrets.env beside it is read too)")
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
    gen.add_argument("--languages", help="comma-separated (default: [general] languages)")
    gen.set_defaults(func=cmd_prompts_generate)
    dialplan = sub.add_parser("dialplan", help="the shipped dialplan contexts").add_subparsers(dest="sub",
                                                                                                required=True)
    dpi = dialplan.add_parser("install", help="copy the shipped contexts into DEST (e.g. /etc/asterisk/callproof)")
    dpi.add_argument("dest")
    dpi.add_argument("--overwrite", action="store_true", help="replace files that exist")
    dpi.set_defaults(func=cmd_dialplan_install)
    _add_retention_commands(sub)
    from .sms.cli import add_sms_commands
    add_sms_commands(sub, _load)
    from .rights.cli_parser import add_rights_commands
    add_rights_commands(sub, _load)
    from .web.cli import add_web_commands
    add_web_commands(sub, _load)
    from .callback_cli import add_callback_commands
    add_callback_commands(sub, _load)
    from .evidence.cli import add_evidence_commands
    add_evidence_commands(sub, _load)
    from .doctor.cli import add_doctor_command
    add_doctor_command(sub)
    from .installer.cli import add_install_command
    add_install_command(sub)
    from .encryption.cli import add_keys_commands
    add_keys_commands(sub, _load)
    from .report.cli import add_report_commands
    add_report_commands(sub, _load)
    from .storage_cli import add_storage_commands
    add_storage_commands(sub, _load)
    return parser


def _become_service_user(args: argparse.Namespace) -> tuple[str, Path | None]:
    """As root: read the configuration and its root-only secrets file, keep the secrets in
    the environment, then become the service user for the rest of the command (nothing
    it creates is root's).  Returns the service user's name and the database path."""
    global _as_root
    _as_root = None
    if os.geteuid() != 0 or {args.command, f"{args.command} {getattr(args, 'sub', '')}"} & STAYS_ROOT:
        try:
            config, _ = load_config_and_sources(args.config, require_asterisk_apis=False,
                                                default_path=DEFAULT_CONFIG)
        except ConfigError:
            return GeneralConfig().service_user, None  # the command itself reports it
        return config.general.service_user, config.storage.database
    config, _as_root = _load_with_sources(args)
    try:
        if account(config.general.service_user).uid != 0:  # the user will not be able to read them
            for name, value in _as_root.secret_env.items():
                os.environ.setdefault(name, value)
        drop_to_service_user(config.general.service_user)
    except (ServiceUserError, OSError) as exc:
        print(f"callproof: running as root: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_NO_PERMISSION) from None
    return config.general.service_user, config.storage.database


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    service_user, database = _become_service_user(args)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # a permission problem is one line; anything else stays what it is
        message = permission_message(exc, service_user, database)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return EXIT_NO_PERMISSION


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
