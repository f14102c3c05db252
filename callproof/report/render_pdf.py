"""The report as a PDF (fpdf2; DejaVu Sans, as the customer history uses, so "—" and
accented text are drawn): the charts as bars drawn with rectangles, then the monthly and the
daily table.  Landscape A4: the table has a column per figure."""

from __future__ import annotations

from callproof.rights.history import find_fonts

from .figures import PeriodFigures, Report
from .layout import Chart, Column, Words, charts, columns, headings, subtitle, title, words

BLUE = (43, 108, 176)


def _chart(pdf, chart: Chart, x: float, y: float, w: float, h: float) -> None:
    pdf.set_font("DejaVu", "B", 9)
    pdf.set_xy(x, y)
    pdf.cell(w, 5, chart.title)
    top, base = chart.top, y + 6 + h
    pdf.set_draw_color(136, 136, 136)
    pdf.line(x + 8, base, x + w, base)
    pdf.set_font("DejaVu", "", 6)
    pdf.set_xy(x, y + 5)
    pdf.cell(7, 3, f"{top:g}", align="R")
    pdf.set_xy(x, base - 3)
    pdf.cell(7, 3, "0", align="R")
    n = max(1, len(chart.values))
    slot = (w - 9) / n
    pdf.set_fill_color(*BLUE)
    step = 1 if n <= 31 else 7
    for i, (label, value) in enumerate(zip(chart.labels, chart.values, strict=True)):
        bx = x + 9 + i * slot
        if value is not None and value > 0:
            bh = h * min(value, top) / top
            pdf.rect(bx, base - bh, max(0.3, slot * 0.8), bh, style="F")
        if i % step == 0:
            pdf.set_xy(bx - 1, base + 0.5)
            pdf.cell(slot + 2, 3, label[-2:], align="C")


def _table(pdf, heading: str, first: str, cols: list[Column], rows: list[PeriodFigures], w: Words) -> None:
    from fpdf.fonts import FontFace

    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 6)
    # the page's width shared out (277 mm inside the margins); headings a size smaller than the
    # cells, so a long word of a translated heading ("Grabaciones", "Solicitações") fits its column
    widths = [18] + [min(15.2, 259.0 / max(1, len(cols)))] * len(cols)
    with pdf.table(headings_style=FontFace(family="DejaVu", emphasis="BOLD", size_pt=5.2,
                                           fill_color=(237, 242, 247)),
                   line_height=3.2, padding=0.6, text_align="RIGHT", col_widths=widths, width=sum(widths)) as t:
        t.row([first] + [c.heading for c in cols])
        for f in rows:
            t.row([w.period(f)] + [c.cell(f) for c in cols])
    pdf.ln(3)


def render_pdf(report: Report, locale: str = "en") -> bytes:
    """The report as a PDF in ``locale`` (the web page's: en, pt_BR, es)."""
    from fpdf import FPDF

    w = words(report, locale)
    regular, bold = find_fonts()
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_title(title(report, w))
    pdf.set_lang(w.lang)
    pdf.set_creator("callproof")
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 8, title(report, w), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    pdf.cell(0, 6, subtitle(report, w), new_x="LMARGIN", new_y="NEXT")
    y = pdf.get_y() + 2
    for i, chart in enumerate(charts(report, w)):
        _chart(pdf, chart, 10 + (i % 2) * 140, y + (i // 2) * 52, 130, 38)
    pdf.set_fill_color(255, 255, 255)  # the bars' blue would otherwise fill the tables' cells
    pdf.set_xy(10, y + 2 * 52 + 2)
    cols, names = columns(report, w), headings(w)
    _table(pdf, *names["months"], cols, [*report.months, report.total], w)
    _table(pdf, *names["days"], cols, report.days, w)
    return bytes(pdf.output())
