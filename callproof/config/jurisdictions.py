"""Jurisdiction profiles: ``[general] jurisdiction`` picks a set of defaults for the keys a
regulator sets (retention, deadlines, wait thresholds, languages, time zone).

A profile only changes *defaults*: a key set in the TOML file or the environment wins over
it, key by key.  No jurisdiction (the default) leaves the built-in defaults as they are.
Each figure and its legal source, with what was and was not checked: docs/compliance.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

#: section -> key -> value, already of the field's type (tuples, dicts, ints).
Profile = Mapping[str, Mapping[str, Any]]

_BR_COMMON: dict[str, dict[str, Any]] = {
    "general": {"timezone": "America/Sao_Paulo", "languages": ("pt_BR", "es", "en"),
                "default_language": "pt_BR", "phone_region": "BR"},
    # Decree 11.034/2022 art. 12: history within 5 calendar days; call record kept 2 years
    "rights": {"history_due_days": 5, "request_due_days": 10},
    # the request and history deadlines live in [rights] only: the rights code enforces them and
    # the compliance report reads them from there
    "compliance": {"wait_thresholds_seconds": (60,), "sms_within_hours": 24},
}

PROFILES: dict[str, Profile] = {
    # Brazil, SAC (Decree 11.034/2022): recordings >= 90 days from the call
    "br_sac": {
        **_BR_COMMON,
        "retention": {"classes": {"consumer_service": 90}, "default_class": "consumer_service",
                      "call_record_days": 730},
    },
    # Brazil, telecoms under Anatel's RGC: per-service periods (to be confirmed, docs/compliance.md)
    "br_anatel": {
        **_BR_COMMON,
        "retention": {"classes": {"consumer_service": 90, "mobile_telecom": 180,
                                  "pay_tv": 180, "fixed_telecom": 365},
                      "default_class": "mobile_telecom", "call_record_days": 730},
    },
    # Spain, Ley 10/2025: 3-minute wait, replies within 15 business days, co-official languages
    "es": {
        # Ley 10/2025: service in the co-official language the customer asks for where it is
        # official.  ca, eu and gl are offered where their prompts are installed (OFFERED_IF_INSTALLED)
        "general": {"timezone": "Europe/Madrid", "languages": ("es", "en", "ca", "eu", "gl"),
                    "default_language": "es", "phone_region": "ES"},
        # no retention figure: the law sets none (docs/compliance.md); the built-in classes stay
        "rights": {"request_due_days": 15, "history_due_days": 15},
        "compliance": {"wait_thresholds_seconds": (180,), "sms_within_hours": 24},
    },
}

#: Languages a profile's ``general.languages`` offers only where their prompt files are
#: installed: ``callproof run`` and ``callproof fastagi`` leave out one whose prompts are
#: missing, with a note, instead of refusing to start (callproof/prompts/startup.py).  A
#: language named explicitly (``general.languages`` set in the file or the environment,
#: ``default_language``, a ``[languages]`` rule or menu) is required as any other.
OFFERED_IF_INSTALLED: dict[str, tuple[str, ...]] = {"es": ("ca", "eu", "gl")}

KEY = "general.jurisdiction"
ENV_NAME = "CALLPROOF_GENERAL_JURISDICTION"


def chosen_jurisdiction(data: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The jurisdiction named by the environment, else the file; "" for none.
    ConfigError naming the key and the valid names when it is not one of them."""
    general = data.get("general")
    value: Any = env.get(ENV_NAME)
    if value is None:
        value = general.get("jurisdiction", "") if isinstance(general, dict) else ""
    if not isinstance(value, str):
        raise ConfigError(KEY, f"expected str, got {value!r}")
    name = value.strip()
    if name and name not in PROFILES:
        raise ConfigError(KEY, f"unknown jurisdiction {name!r} (valid: {', '.join(PROFILES)}; "
                               "empty for none)")
    return name


def offered_if_installed(name: str, from_profile: list[str]) -> tuple[str, ...]:
    """The languages of jurisdiction ``name`` to offer only where installed: none when
    ``general.languages`` was set explicitly (it is not among the keys the profile gave)."""
    return OFFERED_IF_INSTALLED.get(name, ()) if "general.languages" in from_profile else ()


def profile_defaults(name: str) -> Profile:
    """The profile's defaults ({} for none)."""
    return PROFILES.get(name, {})
