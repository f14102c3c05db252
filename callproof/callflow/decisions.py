"""The flow's decisions: which language, which SMS goes with the protocol, where
the recording goes and how long it is kept.  Pure functions of the configuration
and the call's facts (no I/O), also used by the request IVR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from callproof.config import Config
from callproof.logs import event
from callproof.naming import recording_path, recording_relpath
from callproof.numbers import normalise_caller
from callproof.prompts import PromptCatalogue
from callproof.retention.policy import RetentionChoice, choose_class
from callproof.sms.text import render_sms
from callproof.storage import SmsDraft

from . import language_choice
from .language_choice import LanguageChoice
from .port import CallFacts

log = logging.getLogger("callproof.flow")


def iso(dt: datetime) -> str:
    """UTC ISO-8601 with milliseconds, as stored."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


def choose_language(config: Config, prompts: PromptCatalogue, facts: CallFacts) -> LanguageChoice:
    """The dialplan's CALLPROOF_LANGUAGE if set, else ``[languages] by_did`` on the DID,
    else the channel's language when ``general.use_channel_language`` trusts it, else
    the default language (:mod:`.language_choice`).

    Asterisk reports "en" for every channel whose language was never set, which is
    why the channel language is not used unless configured.
    """
    return language_choice.choose_language(config, prompts, asked=facts.language, dialled=facts.dialled,
                                           channel_language=facts.channel_language)


def menu_for(config: Config, dialled: str) -> tuple[str, ...]:
    """The languages the menu after the announcement offers on this DID; () = none."""
    return language_choice.menu_for(config, dialled)


def protocol_year(config: Config, started_at: datetime) -> int:
    """Protocols are numbered per year of the deployment's time zone."""
    return started_at.astimezone(config.general.tz).year


def sms_draft(config: Config, language: str, caller_raw: str | None, started_at: datetime) -> SmsDraft:
    """The SMS queued with the protocol (same transaction): sendable only to mobile numbers."""
    number = normalise_caller(str(caller_raw or ""), config.general.phone_region)

    def body(protocol: str) -> str:
        return render_sms(config.sms.templates, language, company=config.general.company_name,
                          protocol=protocol, call_started=started_at, tz=config.general.tz)

    return SmsDraft(destination=number.e164 if number.sendable else None, language=language,
                    render_body=body, not_sendable_reason=None if number.sendable else number.reason)


@dataclass(frozen=True)
class RecordingTarget:
    path: Path          # absolute, checked to stay under the recordings root
    caller_part: str    # the sanitised caller digits (or 'anonymous') used in the name


def recording_target(config: Config, protocol: str, caller_raw: str | None, now: datetime) -> RecordingTarget:
    """``<root>/YYYY/MM/DD/<protocol>_<caller digits>_<YYYYmmdd-HHMMSS>.wav``."""
    rel = recording_relpath(protocol, caller_raw, now, tz=config.general.tz)
    return RecordingTarget(path=recording_path(config.recording.root, rel), caller_part=rel.name.split("_")[1])


def retention_choice(config: Config, *, asked: str, did: str, context: str, channel: str) -> RetentionChoice:
    """The recording's retention class: the dialplan's CALLPROOF_RETENTION_CLASS, else
    the [retention] rules on the DID, then on the entry context."""
    rt = config.retention
    asked = asked.strip()
    if asked and asked not in rt.classes:
        event(log, "retention.unknown_class", logging.WARNING, channel=channel, asked=asked[:40])
    return choose_class(rt.classes, rt.default_class, did_classes=rt.did_classes,
                        context_classes=rt.context_classes, variable=asked, did=did, context=context)
