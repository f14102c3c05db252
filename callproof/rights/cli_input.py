"""Personal identifiers for the CLI without the command line: a CPF or customer code given
as ``--cpf VALUE`` is in every user's ``ps`` and in shell history, so the value is read
instead: from ``$CALLPROOF_CPF`` / ``$CALLPROOF_CUSTOMER_CODE``, else typed at a prompt
that does not echo (a terminal), else one line on standard input (a pipe)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import TextIO

#: what argparse stores for a bare ``--cpf`` (read the value); a real value is refused
READ = "\x00read"

IDENTIFIERS = {"cpf": ("--cpf", "CALLPROOF_CPF", "CPF"),
               "customer_code": ("--customer-code", "CALLPROOF_CUSTOMER_CODE", "customer code")}


class OnCommandLine(ValueError):
    """An identifier was given as an argument; the message says what to use instead."""


def add_identifier(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, name: str,
                   what: str) -> None:
    """``--cpf`` / ``--customer-code`` as a switch: the value is read, never taken from argv."""
    flag, env, _label = IDENTIFIERS[name]
    parser.add_argument(flag, dest=name, nargs="?", const=READ, default=None, metavar="",
                        help=f"{what}: read from ${env}, a prompt, or one line on stdin (never on the"
                             " command line)")


def refusal(name: str) -> str:
    flag, env, label = IDENTIFIERS[name]
    return (f"{flag} VALUE puts the {label} in the process list (ps) and the shell history; refused."
            f" Give {flag} alone and type it at the prompt, pipe it on stdin"
            f" (e.g. {flag} < file), or set {env}")


def read_identifier(name: str, given: str | None, *, env: dict[str, str] | None = None,
                    stdin: TextIO | None = None, prompt: Callable[[str], str] = getpass.getpass) -> str | None:
    """The identifier's value for ``args.<name>``: None when the option was not used."""
    if given is None:
        return None
    if given != READ:
        raise OnCommandLine(refusal(name))
    _flag, env_name, label = IDENTIFIERS[name]
    environ = os.environ if env is None else env
    value = environ.get(env_name, "")
    if not value.strip():
        source = sys.stdin if stdin is None else stdin
        value = prompt(f"{label}: ") if source.isatty() else source.readline()
    value = value.strip()
    if not value:
        raise ValueError(f"no {label} given (${env_name}, the prompt or stdin was empty)")
    return value


def read_identifiers(args: argparse.Namespace) -> None:
    """Replace ``args.cpf`` / ``args.customer_code`` (when present) by the values read."""
    for name in IDENTIFIERS:
        if hasattr(args, name):
            setattr(args, name, read_identifier(name, getattr(args, name)))
