"""CLI: ``callproof lookup``, ``callproof request ...``, ``callproof history``.

Human-readable output by default, ``--json`` for machines.  A problem with what
was typed (bad protocol, unknown request, refused transition, missing secret)
goes to stderr naming what was wrong, with exit code 2.  ``--by`` says who acts
(written to the audit log); the default is the login name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..actors import cli_actor

if TYPE_CHECKING:
    from callproof.config import Config
    from callproof.storage import SyncDatabase

EXIT_USAGE = 2
REQUEST_STATES = ("needs_identity_check", "received", "exported", "delivered", "refused")


class _Fail(Exception):
    """An error to print on stderr (exit 2)."""


def _actor(args: argparse.Namespace) -> str:
    return cli_actor(getattr(args, "by", None)).strip()


def _expected_errors() -> tuple[type[BaseException], ...]:
    """What a command reports as "you asked for something that cannot be done"."""
    from callproof.config import ConfigError
    from callproof.storage import StorageError

    from .history import FontMissing

    kinds: list[type[BaseException]] = [ValueError, StorageError, ConfigError, FontMissing, _Fail]
    for module, name in (("callproof.rights.export", "ExportError"),
                         ("callproof.rights.delivery", "DeliveryError"),
                         ("callproof.rights.links", "LinkError"),
                         ("callproof.encryption.keyring", "KeyringError")):
        try:
            kinds.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)


Command = Callable[[argparse.Namespace, "Config", "SyncDatabase"], int]


def _run(fn: Command, args: argparse.Namespace, config: Config) -> int:
    """Open the database, run ``fn(args, config, db)``, turn expected errors into exit 2."""
    from callproof.storage import open_sync

    from .cli_input import read_identifiers

    try:
        read_identifiers(args)  # --cpf / --customer-code: read, never from the command line
    except ValueError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        db = open_sync(config)
    except Exception as exc:  # unreadable path, permissions, newer schema...
        from callproof.storage.pg_url import masked

        print(f"callproof: cannot open the database {masked(config.storage.target)}: {masked(str(exc))}",
              file=sys.stderr)
        return EXIT_USAGE
    with db:
        try:
            return fn(args, config, db)
        except _expected_errors() as exc:
            print(f"callproof: {exc}", file=sys.stderr)
            return EXIT_USAGE


def _now() -> str:
    from callproof.storage import utc_now

    return utc_now()


def _local(config: Config, value: str | None) -> str:
    if not value:
        return "-"
    from callproof.storage.timefmt import parse_db_time

    return parse_db_time(value).astimezone(config.general.tz).strftime("%Y-%m-%d %H:%M")


def _plain(value: Any) -> Any:
    """Rows (storage dataclasses) as their columns; anything else as text."""
    as_dict = getattr(value, "as_dict", None)
    return as_dict() if callable(as_dict) else str(value)


def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=_plain))


# -- lookup ------------------------------------------------------------------

def cmd_lookup(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .lookup import lookup_sync

    if (args.date_from or args.date_to) and not (args.phone or args.cpf or args.customer_code):
        raise _Fail("--from/--to go with --phone, --cpf or --customer-code")
    results = lookup_sync(db, config, actor=_actor(args), protocol=args.protocol, phone=args.phone,
                          cpf=args.cpf, customer_code=args.customer_code, date_from=args.date_from,
                          date_to=args.date_to, now=_now(), limit=args.limit)
    if args.json:
        _dump(results)
        return 0
    if not results:
        print("no calls found")
        return 1
    for r in results:
        _print_call(config, r)
    print(f"{len(results)} call(s)")
    return 0


def _print_call(config: Config, r: dict) -> None:
    c, consent = r["call"], r["consent"]
    print(f"protocol {c['protocol'] or '(none)'}   {_local(config, c['started_at'])}"
          f" -> {_local(config, c['ended_at'])}   caller {c['caller_number'] or '(withheld/anonymised)'}")
    print(f"  status {c['status']}, hang-up cause {c['hangup_cause'] or '-'}"
          + (f", anonymised {_local(config, c['anonymised_at'])}" if c.get("anonymised_at") else ""))
    if consent["prompt"]:
        print(f"  consent: {consent['prompt']} ({consent['language']}) {consent['outcome'] or 'unfinished'},"
              f" {_local(config, consent['started_at'])}..{_local(config, consent['finished_at'])},"
              f" sha256 {consent['sha256']}")
    else:
        print("  consent: not played")
    wait = r.get("time_to_agent")
    if wait is not None:
        queue = f" to queue {wait['queue']}" if wait["queue"] else ""
        print(f"  handed off {_local(config, wait['handed_off_at'])}{queue}"
              + {"answered": f", agent answered after {wait['waited_seconds']} s",
                 "abandoned": f", caller gave up after {wait['waited_seconds']} s",
                 "not_seen": ", no queue event seen"}[wait["outcome"]])
    for rec in r["recordings"] or [None]:
        if rec is None:
            print("  recording: none")
            continue
        line = f"  recording {rec['id']}: {rec['state']}"
        if rec["state"] == "finalised":
            line += f", {(rec['duration_ms'] or 0) / 1000:.1f} s, sha256 {rec['sha256']}"
            line += f", kept until {_local(config, rec['retention_until'])}" if rec["retention_until"] else ""
        receipt = rec.get("deletion_receipt")
        if receipt:
            line += (f", deleted {_local(config, receipt['at'])} (audit entry {receipt['audit_id']},"
                     f" hash {receipt['hash']})")
        print(line)
    hold = r["hold"]
    if hold["held"]:
        parts = [f"legal hold {h['id']} ({h['reason']})" for h in hold["legal_holds"]]
        parts += [f"request {rid}" for rid in hold["requests"]]
        print(f"  held by: {', '.join(parts)}")
    for sms in r["sms"]:
        print(f"  sms {sms['id']}: {sms['state']} to {sms['destination'] or '-'}, {sms['attempts']} attempt(s)"
              + (f" ({sms['reason']})" if sms["reason"] else ""))
    for q in r["requests"]:
        print(f"  request {q['id']} ({q['request_protocol'] or 'hold hook'}): {q['state']},"
              f" due {_local(config, q['due_at'])} [{_deadline_text(q)}]")


def _deadline_text(row: dict) -> str:
    if row["deadline"] in ("closed", "none"):
        return row["deadline"]
    days = row["days_remaining"]
    if row["deadline"] == "overdue":
        return f"OVERDUE by {-days} day(s)" if days < 0 else "OVERDUE"
    return f"{days} day(s) left" + (", due soon" if row["deadline"] == "due_soon" else "")


# -- requests ----------------------------------------------------------------

def _filed_text(config: Config, filed) -> str:
    verb = "filed" if filed.created else "already open (same requester)"
    why = {"caller_number": "calling number matches the call; the link goes only to that number",
           "cpf": "CPF matches the call", "customer_code": "customer code matches the call",
           "agent": "identity verified by an agent"}.get(filed.identity_basis or "", "")
    return (f"request {filed.id} {verb}: protocol {filed.request_protocol} for call {filed.call_protocol},"
            f" state {filed.state}{f' ({why})' if why else ''}, due {_local(config, filed.due_at)}")


def cmd_request_file(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .requests import file_request_sync

    filed = file_request_sync(db, config, call_protocol=args.protocol.strip(), channel="cli",
                              actor=_actor(args), now=_now(), requester_number=args.phone, cpf=args.cpf,
                              customer_code=args.customer_code, deliver_to=args.deliver_to,
                              identity_verified_by=args.verified_by)
    if args.json:
        from dataclasses import asdict
        _dump(asdict(filed))
    else:
        print(_filed_text(config, filed))
        if filed.code_sent:
            print("  a one-time code went by SMS to the call's number: the requester returns it"
                  " (POST /api/requests/<request protocol>/code), or an agent verifies identity")
        if filed.state == "needs_identity_check":
            print("  an agent must confirm identity: callproof request verify-identity "
                  f"{filed.id} --by AGENT (or refuse it)")
    return 0


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "requester_identity_hash"}


def cmd_request_list(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .requests import due_soon_until, with_deadline

    now = _now()
    due_before = due_soon_until(config, now) if args.due_soon else now if args.overdue else None
    rows = db.requests.list(states=[args.state] if args.state else None,
                              open_only=args.due_soon or args.overdue or args.open, due_before=due_before,
                              limit=args.limit)
    rows = [with_deadline(r, config, now) for r in rows]
    if args.due_soon:
        rows = [r for r in rows if r["deadline"] == "due_soon"]
    if args.json:
        _dump([_public(r) for r in rows])
        return 0
    if not rows:
        print("no requests")
        return 0
    print(f"{'ID':>6}  {'REQUEST':17}  {'CALL':17}  {'STATE':20}  {'CH':4}  {'DUE':16}  DEADLINE")
    for r in rows:
        print(f"{r['id']:>6}  {r['request_protocol'] or '-':17}  {r['protocol']:17}  {r['state']:20}"
              f"  {r['channel']:4}  {_local(config, r['due_at']):16}  {_deadline_text(r)}")
    return 0


_DELIVERY_FIELDS = ("id", "channel", "recipient", "state", "error", "created_at", "created_by", "sent_at",
                    "link_id")


def cmd_request_show(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .requests import resolve_request_sync, with_deadline

    now = _now()
    row = with_deadline(resolve_request_sync(db, args.request), config, now)
    exports = db.exports.summaries(row["id"])
    deliveries = [{k: d[k] for k in _DELIVERY_FIELDS} for d in db.deliveries.for_request(row["id"])]
    history = db.audit.for_subject(f"request:{row['id']}")
    db.audit.append("request.viewed", _actor(args), now, protocol=row["protocol"],
                    subject=f"request:{row['id']}", details={"via": "cli"})
    if args.json:
        _dump({"request": _public(row), "exports": exports, "deliveries": deliveries, "audit": history})
        return 0
    print(f"request {row['id']}  protocol {row['request_protocol'] or '(hold hook)'}  for call {row['protocol']}")
    print(f"  state {row['state']}" + (f" (reason: {row['refused_reason']})" if row["refused_reason"] else ""))
    print(f"  received {_local(config, row['opened_at'])} via {row['channel']} by {row['created_by']}")
    print(f"  due {_local(config, row['due_at'])} [{_deadline_text(row)}]"
          + (f", closed {_local(config, row['closed_at'])}" if row["closed_at"] else ""))
    print(f"  requester {row['requester_number'] or '-'}"
          f"{' (+ CPF/customer code given)' if row['requester_identity_hash'] else ''},"
          f" deliver to {row['deliver_to'] or '-'}")
    for e in exports:
        print(f"  export {e['id']}: {e['format']} {e['size_bytes']} bytes sha256 {e['sha256']}"
              f" {_local(config, e['created_at'])} by {e['created_by']}")
    for d in deliveries:
        print(f"  delivery {d['id']}: {d['channel']} to {d['recipient']} {d['state']}"
              f" {_local(config, d['created_at'])}" + (f" ({d['error']})" if d["error"] else ""))
    for h in history:
        print(f"  {_local(config, h['at'])}  {h['action']:28} by {h['actor']}")
    return 0


def cmd_request_verify(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .requests import resolve_request_sync, verify_identity_sync

    row = resolve_request_sync(db, args.request)
    row = verify_identity_sync(db, config, row["id"], actor=_actor(args), now=_now(), note=args.note)
    print(f"request {row['id']} ({row['request_protocol']}): identity verified by {row['updated_by']};"
          f" state {row['state']}, due {_local(config, row['due_at'])}")
    return 0


def cmd_request_refuse(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .requests import refuse_request_sync, resolve_request_sync

    row = resolve_request_sync(db, args.request)
    row = refuse_request_sync(db, config, row["id"], reason=args.reason, actor=_actor(args), now=_now())
    print(f"request {row['id']} ({row['request_protocol']}) refused by {row['updated_by']}: {row['refused_reason']}")
    return 0


def cmd_request_export(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .export import export_request_sync
    from .requests import resolve_request_sync

    row = resolve_request_sync(db, args.request)
    export = export_request_sync(db, config, row["id"], actor=_actor(args), now=_now(), fmt=args.format)
    if args.json:
        _dump(export)
    else:
        print(f"request {row['id']} exported: {export['format']}, {export['size_bytes']} bytes,"
              f" sha256 {export['sha256']}\n  {export['path']}")
    return 0


def cmd_request_deliver(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .delivery import deliver_request_sync
    from .requests import resolve_request_sync

    row = resolve_request_sync(db, args.request)
    delivery = deliver_request_sync(db, config, row["id"], via=args.via, actor=_actor(args), now=_now(),
                                    to=args.to)
    if args.json:
        _dump(delivery)
    else:
        kind, _, target = str(delivery["recipient"]).partition(":")
        to = target if kind == delivery["channel"] else delivery["recipient"]
        print(f"request {row['id']}: delivery {delivery['id']} by {delivery['channel']} to {to}:"
              f" {delivery['state']}" + (f" ({delivery['error']})" if delivery.get("error") else ""))
    return 0 if delivery.get("state") != "failed" else 1


def cmd_request_metrics(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .requests import request_metrics_sync

    m = request_metrics_sync(db, config, now=_now())
    if args.json:
        _dump(m)
        return 0
    print(f"open requests: {m['open']}  due within {config.rights.due_soon_days} day(s): {m['due_soon']}"
          f"  overdue: {m['overdue']}")
    print("by state: " + ", ".join(f"{k} {v}" for k, v in m["by_state"].items()))
    return 0


# -- history -----------------------------------------------------------------

def cmd_history(args: argparse.Namespace, config: Config, db: SyncDatabase) -> int:
    from .history import produce_history_sync, resolve_subject

    subject = resolve_subject(config, args.subject, phone=args.phone, cpf=args.cpf,
                              customer_code=args.customer_code)
    if args.subject and subject.kind == "cpf":
        from .cli_input import refusal

        raise _Fail(refusal("cpf").replace("--cpf VALUE", "a CPF as the subject"))
    row = produce_history_sync(db, config, subject, fmt=args.format, actor=_actor(args), now=_now(),
                               out=args.out, language=args.language)
    if args.json:
        _dump(row)
    else:
        print(f"history {row['id']} ({subject.kind} {subject.display}): {row['path']}")
        print(f"  {row['format']}, sha256 {row['sha256']}; received {_local(config, row['received_at'])},"
              f" due {_local(config, row['due_at'])}, produced {_local(config, row['produced_at'])}")
    return 0
