"""``callproof doctor [--config FILE] [--asterisk-root DIR]``: every check, one line each,
then the exit status: 0 all OK, 1 a FAIL, 2 only WARNs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from callproof.config import DEFAULT_CONFIG, ConfigError, load_config_and_sources
from callproof.config.jurisdictions import offered_if_installed
from callproof.config.secrets_file import config_path
from callproof.service_user import ServiceUserError

from .access import who
from .checks_asterisk import check_ami, check_ari
from .checks_files import check_prompts, check_secret_files, check_service_user_sees, check_storage
from .checks_setup import check_retention, check_sms_backend, check_web_secrets
from .checks_store import check_store
from .report import Result, fail, ok, print_report


def run_checks(args: argparse.Namespace) -> list[Result]:
    import os

    try:
        config, sources = load_config_and_sources(args.config, require_asterisk_apis=True,
                                                  default_path=DEFAULT_CONFIG)
    except ConfigError as exc:
        chosen = config_path(args.config, os.environ, DEFAULT_CONFIG)
        return [fail("config", f"{chosen or 'built-in defaults (no configuration file)'}: {exc}",
                     "correct the key named; callproof check-config repeats this check")]
    results = [ok("config", f"valid; {sources.describe()}")]
    results.append(check_secret_files(config, sources))
    try:
        user = who(config.general.service_user)
    except ServiceUserError as exc:
        results.append(fail("service-user", str(exc), "create the user or set [general] service_user"))
        return results
    results.append(ok("service-user", f"{user.name} (uid {user.uid})"))
    if (seen := check_service_user_sees(user, sources)) is not None:
        results.append(seen)

    async def asterisk() -> list[Result]:
        ari, ami = await asyncio.gather(check_ari(config), check_ami(config))
        return [*ari, *ami]

    results.extend(asyncio.run(asterisk()))
    optional = offered_if_installed(sources.jurisdiction, sources.from_profile)
    results.extend(check_prompts(config, user, Path(args.asterisk_root), optional))
    results.extend(check_storage(config, user))
    results.extend(check_store(config, user))
    results.append(check_sms_backend(config))
    results.append(check_retention(config))
    results.append(check_web_secrets(config))
    return results


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.doctor_config:
        args.config = args.doctor_config
    try:
        results = run_checks(args)
    except Exception as exc:  # a check that broke is reported, not a traceback
        results = [fail("doctor", f"a check failed unexpectedly: {type(exc).__name__}: {exc}"[:300],
                        "report it with this line")]
        return print_report(results, sys.stdout)
    return print_report(results, sys.stdout)


def add_doctor_command(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check the installation: config, secrets, ARI/AMI logins, dialplan, "
                                           "prompts, folders, SMS backend, retention (exit 0 OK, 1 FAIL, 2 WARN)")
    doctor.add_argument("--config", dest="doctor_config", help="TOML config file (as the global --config)")
    doctor.add_argument("--asterisk-root", default="/", help="the folder Asterisk runs chrooted in, if it does "
                                                             "(its sounds are looked up there; default /)")
    doctor.set_defaults(func=cmd_doctor)
