"""The argparse tree of ``callproof lookup``, ``callproof request ...`` and
``callproof history``; the commands themselves are in :mod:`callproof.rights.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .cli import (
    REQUEST_STATES,
    _run,
    cmd_history,
    cmd_lookup,
    cmd_request_deliver,
    cmd_request_export,
    cmd_request_file,
    cmd_request_list,
    cmd_request_metrics,
    cmd_request_refuse,
    cmd_request_show,
    cmd_request_verify,
)
from .cli_input import add_identifier

# -- registration ------------------------------------------------------------

def add_rights_commands(sub, load) -> None:
    """Register the customer-rights commands; ``load(args)`` returns the Config."""
    def bind(fn: Callable) -> Callable:
        return lambda args: _run(fn, args, load(args))

    def by(p: argparse.ArgumentParser, what: str = "who acts") -> None:
        p.add_argument("--by", help=f"{what} (audit log; default: the login name)")

    lk = sub.add_parser("lookup", help="find a customer's calls: protocol, phone, CPF or customer code")
    sel = lk.add_mutually_exclusive_group(required=True)
    sel.add_argument("--protocol", help="17-digit call protocol")
    sel.add_argument("--phone", help="caller number, any spelling (+55 11 91234-5678, (11) 91234-5678...)")
    add_identifier(sel, "cpf", "CPF, with or without punctuation (needs [rights] identity_key)")
    add_identifier(sel, "customer_code", "the deployment's customer code (needs [rights] identity_key)")
    lk.add_argument("--from", dest="date_from", help="first local day YYYY-MM-DD (or ISO-8601 with offset)")
    lk.add_argument("--to", dest="date_to", help="last local day YYYY-MM-DD, inclusive")
    lk.add_argument("--limit", type=int, default=200, help="at most this many calls, newest first (200)")
    lk.add_argument("--json", action="store_true")
    by(lk, "who is looking")
    lk.set_defaults(func=bind(cmd_lookup))

    req = sub.add_parser("request", help="customer recording requests").add_subparsers(dest="sub", required=True)
    f = req.add_parser("file", help="file a request for the recording of a call")
    f.add_argument("protocol", help="the call's 17-digit protocol")
    f.add_argument("--phone", help="the number the customer calls from / gave (matched against the caller)")
    add_identifier(f, "cpf", "the customer's CPF (matched against the call's)")
    add_identifier(f, "customer_code", "the customer's code (matched against the call's)")
    f.add_argument("--deliver-to", help="sms:+5511... or email:name@example.com")
    f.add_argument("--verified-by", metavar="AGENT", help="the agent who verified identity another way")
    f.add_argument("--json", action="store_true")
    by(f, "who files it")
    f.set_defaults(func=bind(cmd_request_file))

    ls = req.add_parser("list", help="requests by due time (soonest first)")
    ls.add_argument("--state", choices=REQUEST_STATES)
    ls.add_argument("--open", action="store_true", help="only requests not yet delivered or refused")
    grp = ls.add_mutually_exclusive_group()
    grp.add_argument("--due-soon", action="store_true", help="open, due within [rights] due_soon_days")
    grp.add_argument("--overdue", action="store_true", help="open and past their due time")
    ls.add_argument("--limit", type=int, default=500)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=bind(cmd_request_list))

    sh = req.add_parser("show", help="one request: state, deadline, exports, deliveries, audit trail")
    sh.add_argument("request", metavar="ID|REQUEST_PROTOCOL")
    sh.add_argument("--json", action="store_true")
    by(sh, "who is looking")
    sh.set_defaults(func=bind(cmd_request_show))

    vi = req.add_parser("verify-identity", help="an agent confirmed the requester is the caller")
    vi.add_argument("request", metavar="ID|REQUEST_PROTOCOL")
    vi.add_argument("--by", required=True, help="the agent who verified (audit log)")
    vi.add_argument("--note", help="how identity was checked")
    vi.set_defaults(func=bind(cmd_request_verify))

    rf = req.add_parser("refuse", help="close a request without delivery")
    rf.add_argument("request", metavar="ID|REQUEST_PROTOCOL")
    rf.add_argument("--reason", required=True)
    rf.add_argument("--by", required=True, help="who refuses (audit log)")
    rf.set_defaults(func=bind(cmd_request_refuse))

    ex = req.add_parser("export", help="make the audio file for a request (mp3 by default)")
    ex.add_argument("request", metavar="ID|REQUEST_PROTOCOL")
    ex.add_argument("--format", choices=("mp3", "ogg", "wav"), help="default: [rights] export_format")
    ex.add_argument("--json", action="store_true")
    by(ex)
    ex.set_defaults(func=bind(cmd_request_export))

    dv = req.add_parser("deliver", help="send the customer a download link by SMS or e-mail")
    dv.add_argument("request", metavar="ID|REQUEST_PROTOCOL")
    dv.add_argument("--via", required=True, choices=("sms", "email"))
    dv.add_argument("--to", help="recipient (default: the request's deliver-to / number)")
    dv.add_argument("--json", action="store_true")
    by(dv)
    dv.set_defaults(func=bind(cmd_request_deliver))

    mt = req.add_parser("metrics", help="open / due soon / overdue counts")
    mt.add_argument("--json", action="store_true")
    mt.set_defaults(func=bind(cmd_request_metrics))

    hi = sub.add_parser("history", help="the customer's call history as a PDF or HTML document")
    hi.add_argument("subject", nargs="?", metavar="PHONE|CPF", help="phone number or CPF (told apart by shape)")
    hi.add_argument("--phone", help="say it is a phone number")
    add_identifier(hi, "cpf", "the subject is a CPF")
    add_identifier(hi, "customer_code", "the deployment's customer code")
    hi.add_argument("--format", choices=("pdf", "html"), default="pdf")
    hi.add_argument("--out", metavar="FILE", help="write here (default: a new file under [rights] history_dir)")
    hi.add_argument("--language", help="document language: pt_BR, es, en, ca, eu or gl (default: the"
                                       " customer's latest call's, else [general] default_language)")
    hi.add_argument("--json", action="store_true")
    by(hi, "who asked for it")
    hi.set_defaults(func=bind(cmd_history))
