"""The report as HTML: its tables and its charts as inline SVG drawn here, server-side, so the
page needs no script and no external asset (the web page's CSP allows neither).

:func:`body` is the part the admin web page shows inside its own layout; :func:`document`
is a complete page for ``--format html`` (its stylesheet inline: it is a file, not served)."""

from __future__ import annotations

import functools

import jinja2
from markupsafe import Markup

from .figures import Report
from .layout import Chart, Words, charts, columns, groups, headings, subtitle, title, words

BAR, GAP, HEIGHT, LEFT, TOP, BOTTOM = 10, 2, 120, 40, 22, 18


def svg(chart: Chart) -> Markup:
    """One bar per day; a day with nothing to measure has no bar (and says so on hover)."""
    n = len(chart.values)
    width = LEFT + n * (BAR + GAP) + 8
    top = chart.top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} '
             f'{TOP + HEIGHT + BOTTOM}" width="{width}" height="{TOP + HEIGHT + BOTTOM}">',
             f'<title>{Markup.escape(chart.title)}</title>',
             f'<text x="0" y="14" font-size="12" font-weight="bold">{Markup.escape(chart.title)}</text>',
             f'<line x1="{LEFT - 2}" y1="{TOP + HEIGHT}" x2="{width}" y2="{TOP + HEIGHT}" stroke="#888"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 8}" font-size="9" text-anchor="end">{top:g}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + HEIGHT}" font-size="9" text-anchor="end">0</text>']
    step = 1 if n <= 31 else 7
    for i, (label, value) in enumerate(zip(chart.labels, chart.values, strict=True)):
        x = LEFT + i * (BAR + GAP)
        shown = chart.shown[i]
        if value is not None:
            h = HEIGHT * min(value, top) / top
            parts.append(f'<rect x="{x}" y="{TOP + HEIGHT - h:.1f}" width="{BAR}" height="{h:.1f}" fill="#2b6cb0">'
                         f'<title>{label}: {shown}</title></rect>')
        if i % step == 0:
            parts.append(f'<text x="{x + BAR / 2}" y="{TOP + HEIGHT + 12}" font-size="8" '
                         f'text-anchor="middle">{label[-2:]}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("callproof.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _values(report: Report, w: Words) -> dict:
    cols = columns(report, w)
    return {"title": title(report, w), "subtitle": subtitle(report, w), "columns": cols, "groups": groups(cols),
            "months": report.months, "days": report.days, "total": report.total, "headings": headings(w),
            "period": w.period, "lang": w.lang, "charts": [svg(c) for c in charts(report, w)]}


def body(report: Report, locale: str = "en") -> Markup:
    """The report's section, in ``locale`` (the web page's: en, pt_BR, es)."""
    w = words(report, locale)
    return Markup(_environment().get_template("compliance_body.html").render(**_values(report, w)))


def document(report: Report, locale: str = "en") -> str:
    """A whole HTML page of the report, in ``locale``."""
    w = words(report, locale)
    return _environment().get_template("compliance_document.html").render(body=body(report, locale),
                                                                           **_values(report, w))
