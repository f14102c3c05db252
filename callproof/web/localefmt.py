"""Dates, times, durations, counts and percentages as the page's reader writes them
(CLDR data through babel.dates / babel.numbers / babel.units), in ``[general] timezone``.

Every value comes out as HTML that keeps the exact value: a time in ``<time datetime=ISO>``,
a number in ``<data value=...>``, so what the reader sees may be rounded or localised
without anything losing precision (a test or a script reads the attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from babel import Locale
from babel.dates import format_skeleton, format_time
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from markupsafe import Markup


def _parse(value: str | datetime) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class LocaleFormat:
    """The formatters of one page: its locale and the deployment's time zone."""

    locale: str
    tz: tzinfo

    @property
    def _babel(self) -> Locale:
        return Locale.parse(self.locale)

    def datetime_text(self, value: str | datetime) -> str:
        """``22/11/2026 18:30:04 -03`` (pt_BR, es), ``11/22/2026, 6:30:04 PM -03`` (en): the full
        year and the seconds (a protocol's time is evidence), then the zone's short name."""
        local = _parse(value).astimezone(self.tz)
        babel_locale = self._babel
        date = format_skeleton("yMMdd", local, tzinfo=self.tz, locale=babel_locale)
        time = format_time(local, "medium", tzinfo=self.tz, locale=babel_locale)
        # CLDR's own way of joining a date and a time ("{1}, {0}" in en, "{1} {0}" in pt and es)
        joined = str(babel_locale.datetime_formats["medium"]).replace("{1}", date).replace("{0}", time)
        return f"{joined} {local.strftime('%Z')}"

    def moment(self, value: str | datetime | None) -> Markup:
        """A stored time as ``<time datetime="ISO">localised</time>``; empty for none."""
        if not value:
            return Markup("")
        moment = _parse(value)
        return Markup('<time datetime="{}">{}</time>').format(moment.isoformat(), self.datetime_text(moment))

    def date_text(self, value: str | datetime) -> str:
        local = _parse(value).astimezone(self.tz)
        return format_skeleton("yMMdd", local, tzinfo=self.tz, locale=self._babel)

    def number_text(self, value: float | int, digits: int = 0) -> str:
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self._babel)

    def number(self, value: float | int | None, digits: int = 0) -> Markup:
        """A count (``1.234`` in pt_BR and es, ``1,234`` in en) in ``<data value>``."""
        if value is None:
            return Markup("")
        return Markup('<data value="{}">{}</data>').format(value, self.number_text(value, digits))

    def percent_text(self, ratio: float, digits: int = 1) -> str:
        """A ratio (0.953) as the locale writes a percentage: ``95,3 %`` (es), ``95,3%`` (pt_BR),
        ``95.3%`` (en)."""
        babel_locale = self._babel
        pattern = str(babel_locale.percent_formats[None].pattern)  # "#,##0%" (pt), "#,##0 %" (es)
        if digits:
            pattern = pattern.replace("0", "0." + "0" * digits, 1)
        return format_percent(ratio, format=pattern, locale=babel_locale)

    def percent(self, ratio: float | None, digits: int = 1) -> Markup:
        """A ratio (0.953) as a percentage (``95,3 %`` in pt_BR and es, ``95.3%`` in en)."""
        if ratio is None:
            return Markup("")
        return Markup('<data value="{}">{}</data>').format(ratio, self.percent_text(ratio, digits))

    def seconds_text(self, value: float | int, digits: int = 0) -> str:
        """A duration in seconds as the locale's short unit (``12 s``, ``12 sec``)."""
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_unit(value, "duration-second", length="short", format=pattern, locale=self._babel)

    def seconds(self, value: float | int | None, digits: int = 0) -> Markup:
        """A duration in seconds as the locale's short unit (``12 s``, ``12,5 s``)."""
        if value is None:
            return Markup("")
        return Markup('<data value="{}">{}</data>').format(value, self.seconds_text(value, digits))

    def month_text(self, year: int, month: int) -> str:
        """A month as the locale writes it in a table (``10/2026``)."""
        return format_skeleton("yMM", date(year, month, 1), locale=self._babel)

    def day_text(self, day: date) -> str:
        """A calendar day (no time, no zone): ``05/10/2026`` (pt_BR), ``5/10/2026`` (es), ``10/5/2026`` (en)."""
        return format_skeleton("yMMdd", day, locale=self._babel)

    def days(self, value: int | None) -> Markup:
        """A whole number of days (``3 d``, ``3 días``, ``3 dias``)."""
        if value is None:
            return Markup("")
        text = format_unit(value, "duration-day", length="short", locale=self._babel)
        return Markup('<data value="{}">{}</data>').format(value, text)
