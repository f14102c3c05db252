"""The protocol SMS text, from a per-language template.

Only the company name, the protocol and the call's date and time go into the
message: no other personal data leaves through the SMS gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

# Basque writes the year first (2026/12/02), as its own date order does.
DATE_FORMATS = {"pt_BR": "%d/%m/%Y", "es": "%d/%m/%Y", "en": "%Y-%m-%d", "ca": "%d/%m/%Y", "eu": "%Y/%m/%d",
                "gl": "%d/%m/%Y"}


def render_sms(templates: Mapping[str, str], language: str, *, company: str, protocol: str,
               call_started: datetime, tz: ZoneInfo) -> str:
    local = call_started.astimezone(tz)
    template = templates[language]
    return template.format(
        company=company,
        protocol=protocol,
        date=local.strftime(DATE_FORMATS.get(language, "%Y-%m-%d")),
        time=local.strftime("%H:%M"),
    )
