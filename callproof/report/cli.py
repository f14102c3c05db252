"""CLI: ``callproof report compliance --from D --to D [--format html|pdf|csv|json] [--out FILE] [--locale L]``.

The format defaults to the one ``--out``'s suffix names, else CSV; a PDF is not written to a
terminal.  ``--locale`` (en, pt_BR, es; default ``[web] default_locale``) is the language of
the words and the numbers' format; the CSV's column keys and the JSON do not change with it.
The file holds counts only (no number, name or protocol of anyone).  Each report made is
audited (``report.viewed``, with its period, format and locale), as on the web page."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from ..config import Config

Load = Callable[[argparse.Namespace], Config]
FORMATS = ("html", "pdf", "csv", "json")


def parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {value[:40]!r}") from None


def render(report: object, fmt: str, locale: str = "en") -> bytes:
    """The report in ``fmt``; its words and numbers in ``locale`` (JSON: the same in all)."""
    if fmt == "pdf":
        from .render_pdf import render_pdf
        return render_pdf(report, locale)  # type: ignore[arg-type]
    if fmt == "html":
        from .render_html import document
        return document(report, locale).encode()  # type: ignore[arg-type]
    from .render_data import render_csv, render_json
    if fmt == "json":
        return render_json(report).encode()  # type: ignore[arg-type]
    return render_csv(report, locale).encode()  # type: ignore[arg-type]


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.out).suffix.lstrip(".").lower() if args.out else ""
    return suffix if suffix in FORMATS else "csv"


def cmd_report_compliance(args: argparse.Namespace, load: Load) -> int:
    from callproof.actors import cli_actor
    from callproof.storage import open_sync

    from .figures import read_report

    fmt = _format(args)
    if fmt == "pdf" and not args.out and sys.stdout.isatty():
        print("callproof: a PDF is not written to a terminal: give --out FILE", file=sys.stderr)
        return 2
    config = load(args)
    locale = args.locale or config.web.default_locale
    from callproof.web.i18n import LOCALES
    if locale not in LOCALES:
        print(f"callproof: --locale {locale[:20]!r}: one of {', '.join(LOCALES)}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        with open_sync(config) as db:
            report = read_report(db, config, args.first, args.last, now)
            db.audit.append("report.viewed", cli_actor(args.by), now,
                            details={"from": args.first.isoformat(), "to": args.last.isoformat(), "format": fmt,
                                     "locale": locale})
    except ValueError as exc:  # a backwards or too long period, or more rows than a report reads
        print(f"callproof: {exc}", file=sys.stderr)
        return 2
    data = render(report, fmt, locale)
    if not args.out:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"callproof: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{fmt} report {args.first}..{args.last} written to {out}")
    return 0


def add_report_commands(sub: argparse._SubParsersAction, load: Load) -> None:
    report = sub.add_parser("report", help="reports").add_subparsers(dest="sub", required=True)
    c = report.add_parser("compliance", help="calls, waits, SMS, recordings and requests per day and month")
    c.add_argument("--from", dest="first", type=parse_day, required=True, help="first day (YYYY-MM-DD, local)")
    c.add_argument("--to", dest="last", type=parse_day, required=True, help="last day, included")
    c.add_argument("--format", choices=FORMATS, help="default: from --out's suffix, else csv")
    c.add_argument("--out", help="write to FILE instead of standard output")
    c.add_argument("--locale", metavar="{en,pt_BR,es}",
                   help="language of the headings, titles and numbers (default: [web] default_locale);"
                        " the CSV's column keys and the JSON stay the same in every locale")
    c.add_argument("--by", help="who asks, for the audit log (default: your login name)")
    c.set_defaults(func=lambda args: cmd_report_compliance(args, load))
