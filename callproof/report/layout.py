"""What every rendering of the report shows, in one place: the table's columns (stable key,
heading and formatted cell) and the charts (title, one value per day), in the reader's
language.  The HTML, PDF and CSV renderers draw these; none of them decides what a figure is.

The words come from the ops web page's gettext catalogues (callproof/web/locales, the same
``en``/``pt_BR``/``es`` as the page), the numbers and dates from CLDR through
callproof/web/localefmt.py.  A column's ``key`` never changes with the language: it is the
CSV's header and the JSON's field name, for what reads the report by program."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from callproof.web.i18n import LOCALES, N_, html_lang, translations
from callproof.web.localefmt import LocaleFormat

from .figures import PeriodFigures, Report

NONE = "—"  # nothing to divide: no calls, no queued callers


@dataclass(frozen=True)
class Words:
    """The reader's language: its catalogue and its number/date formats (in the report's zone)."""

    locale: str
    gettext: Callable[[str], str]
    pgettext: Callable[[str, str], str]
    fmt: LocaleFormat

    @property
    def lang(self) -> str:
        return html_lang(self.locale)

    def pct(self, value: float | None) -> str:
        return NONE if value is None else self.fmt.percent_text(value / 100.0, 1)

    def seconds(self, value: float | None) -> str:
        return NONE if value is None else self.fmt.seconds_text(round(value))

    def count(self, value: int) -> str:
        return self.fmt.number_text(value)

    def period(self, f: PeriodFigures) -> str:
        """A row's period as the reader writes it: a day, a month, or the total's name."""
        label = f.label
        if len(label) == 10 and label[4] == "-":
            return self.fmt.day_text(date.fromisoformat(label))
        if len(label) == 7 and label[4] == "-":
            return self.fmt.month_text(int(label[:4]), int(label[5:]))
        return self.gettext("Total")


def words(report: Report, locale: str = "en") -> Words:
    """The words of ``locale`` (one of :data:`callproof.web.i18n.LOCALES`; ValueError otherwise)."""
    if locale not in LOCALES:
        raise ValueError(f"locale {locale!r}: one of {', '.join(LOCALES)}")
    catalogue = translations(locale)

    def pgettext(context: str, message: str) -> str:
        return str(catalogue.pgettext(context, message))

    return Words(locale, catalogue.gettext, pgettext, LocaleFormat(locale, ZoneInfo(report.timezone)))


@dataclass(frozen=True)
class Column:
    key: str  # stable: the CSV header and the JSON field
    heading: str  # in the reader's language, whole: the PDF's heading, the page's tooltip
    cell: Callable[[PeriodFigures], str]
    group: str = ""  # the page groups its columns under a heading each ("Wait to agent") ...
    short: str = ""  # ... and names each by what differs within the group ("median")


def columns(report: Report, w: Words) -> list[Column]:
    t, _, pgettext = report.targets, w.gettext, w.pgettext  # a short heading: "report" context
    calls, wait, recordings = _("Calls"), _("Wait to agent"), _("Recordings")
    requests, histories = _("Requests"), _("Histories")
    hours, due, history_due = {"hours": t.sms_within_hours}, {"days": t.request_due_days}, \
        {"days": t.history_due_days}
    cols = [
        Column("calls", _("Calls"), lambda f: w.count(f.calls), calls, pgettext("report", "number")),
        Column("announcement_pct", _("Announcement in full"), lambda f: w.pct(f.announcement_pct), calls,
               pgettext("report", "announcement in full")),
        Column("protocol_pct", _("Protocol given"), lambda f: w.pct(f.protocol_pct), calls,
               pgettext("report", "protocol given")),
        Column("sms_pct", _("Protocol SMS within %(hours)s h") % hours, lambda f: w.pct(f.sms_pct), calls,
               pgettext("report", "protocol SMS ≤ %(hours)s h") % hours),
        Column("wait_median_seconds", _("Wait to agent, median"), lambda f: w.seconds(f.wait_median), wait,
               pgettext("report", "median")),
        Column("wait_p95_seconds", _("Wait to agent, p95"), lambda f: w.seconds(f.wait_p95), wait,
               pgettext("report", "p95")),
    ]
    for i, threshold in enumerate(t.wait_thresholds):
        within = {"seconds": threshold}
        cols.append(Column(f"answered_within_{threshold}s_pct", _("Answered within %(seconds)s s") % within,
                           _within(w, i), wait, pgettext("report", "answered ≤ %(seconds)s s") % within))
    cols += [
        Column("abandoned", _("Abandoned while waiting"), lambda f: w.count(f.abandoned), wait,
               pgettext("report", "abandoned")),
        Column("recordings_kept", _("Recordings kept"), lambda f: w.count(f.recordings_kept), recordings,
               pgettext("report", "kept")),
        Column("recordings_deleted", _("Recordings deleted"), lambda f: w.count(f.recordings_deleted), recordings,
               pgettext("report", "deleted")),
        Column("recordings_held", _("Recordings held"), lambda f: w.count(f.recordings_held), recordings,
               pgettext("report", "held")),
        Column("requests_received", _("Requests received"), lambda f: w.count(f.requests_received), requests,
               pgettext("report", "received")),
        Column("requests_in_time", _("Requests delivered within %(days)s days") % due,
               lambda f: w.count(f.requests_in_time), requests,
               pgettext("report", "delivered ≤ %(days)s days") % due),
        Column("requests_late", _("Requests late"), lambda f: w.count(f.requests_late), requests,
               pgettext("report", "late")),
        Column("histories_received", _("Histories requested"), lambda f: w.count(f.histories_received),
               histories, pgettext("report", "requested")),
        Column("histories_in_time", _("Histories within %(days)s days") % history_due,
               lambda f: w.count(f.histories_in_time), histories, pgettext("report", "≤ %(days)s days") % history_due),
    ]
    return cols


def groups(cols: list[Column]) -> list[tuple[str, int]]:
    """The page's upper heading row: each run of columns of one group, and its length."""
    runs: list[tuple[str, int]] = []
    for col in cols:
        if runs and runs[-1][0] == col.group:
            runs[-1] = (col.group, runs[-1][1] + 1)
        else:
            runs.append((col.group, 1))
    return runs


def _within(w: Words, i: int) -> Callable[[PeriodFigures], str]:
    return lambda f: w.pct(f.within_pct[i])


@dataclass(frozen=True)
class Chart:
    title: str
    labels: list[str]  # one per day: the ISO day; the axis shows its day of month
    values: list[float | None]
    shown: list[str]  # each value as the reader writes it ("—" for none)
    percent: bool  # 0..100 scale; otherwise 0..the largest value

    @property
    def top(self) -> float:
        if self.percent:
            return 100.0
        return max([v for v in self.values if v is not None] or [0.0]) or 1.0


def charts(report: Report, w: Words) -> list[Chart]:
    days, t, _ = report.days, report.targets, w.gettext
    labels = [f.label for f in days]
    last = len(t.wait_thresholds) - 1

    def chart(title: str, values: list[float | None], percent: bool) -> Chart:
        shown = [w.pct(v) if percent else (NONE if v is None else w.count(round(v))) for v in values]
        return Chart(title, labels, values, shown, percent)

    return [
        chart(_("Calls per day"), [float(f.calls) for f in days], False),
        chart(_("Protocol given (%)"), [f.protocol_pct for f in days], True),
        chart(_("Protocol SMS delivered within %(hours)s h (%%)") % {"hours": t.sms_within_hours},
              [f.sms_pct for f in days], True),
        chart(_("Answered within %(seconds)s s (%%)") % {"seconds": t.wait_thresholds[last]},
              [f.within_pct[last] for f in days], True),
    ]


def title(report: Report, w: Words) -> str:
    return w.gettext("Compliance report %(first)s to %(last)s") % {
        "first": w.fmt.day_text(report.first), "last": w.fmt.day_text(report.last)}


def subtitle(report: Report, w: Words) -> str:
    return w.gettext("Days in %(timezone)s; generated %(when)s") % {
        "timezone": report.timezone, "when": w.fmt.datetime_text(report.generated_at)}


#: the tables' headings, and their first column's (marked here, translated where drawn)
HEADINGS = {"months": (N_("Per month"), N_("Month")), "days": (N_("Per day"), N_("Day"))}


def headings(w: Words) -> dict[str, tuple[str, str]]:
    return {kind: (w.gettext(table), w.gettext(first)) for kind, (table, first) in HEADINGS.items()}
