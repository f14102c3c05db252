"""Jurisdiction profiles: the defaults a profile gives, and anything set explicitly winning."""

from pathlib import Path

import pytest

from callproof.cli import main
from callproof.config import Config, ConfigError, load_config, load_config_and_sources
from callproof.config.jurisdictions import PROFILES

#: key -> (a TOML snippet setting it to something no profile uses, the value it must load as)
EXPLICIT = {
    "general.timezone": ('timezone = "UTC"', "UTC"),
    "general.languages": ('languages = ["en", "es", "pt_BR"]', ("en", "es", "pt_BR")),
    "general.default_language": ('default_language = "en"', "en"),
    "general.phone_region": ('phone_region = "PT"', "PT"),
    "retention.classes": ("classes = { consumer_service = 120, mobile_telecom = 200, customer_service = 100 }",
                          {"consumer_service": 120, "mobile_telecom": 200, "customer_service": 100}),
    "retention.default_class": ('classes = { consumer_service = 90, mobile_telecom = 180, own = 45 }\n'
                                'default_class = "own"', "own"),
    "retention.call_record_days": ("call_record_days = 1000", 1000),
    "rights.request_due_days": ("request_due_days = 7", 7),
    "rights.history_due_days": ("history_due_days = 3", 3),
    "compliance.wait_thresholds_seconds": ("wait_thresholds_seconds = [30]", (30,)),
    "compliance.sms_within_hours": ("sms_within_hours = 12", 12),
}

#: the same keys through the environment (mappings are set in the file only)
ENV = {
    "general.timezone": ("UTC", "UTC"),
    "general.languages": ("en,es,pt_BR", ("en", "es", "pt_BR")),
    "general.default_language": ("en", "en"),
    "general.phone_region": ("PT", "PT"),
    "retention.call_record_days": ("1000", 1000),
    "rights.request_due_days": ("7", 7),
    "rights.history_due_days": ("3", 3),
    "compliance.wait_thresholds_seconds": ("30,90", (30, 90)),
    "compliance.sms_within_hours": ("12", 12),
}

PROFILE_KEYS = sorted({(name, f"{section}.{key}") for name, profile in PROFILES.items()
                       for section, keys in profile.items() for key in keys})


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "callproof.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


def value(config: Config, dotted: str):
    section, key = dotted.split(".")
    got = getattr(getattr(config, section), key)
    return dict(got) if isinstance(got, dict) else got


def test_every_profile_key_has_an_explicit_case():
    assert {key for _, key in PROFILE_KEYS} <= set(EXPLICIT)


@pytest.mark.parametrize(("name", "dotted"), PROFILE_KEYS)
def test_profile_gives_its_default_when_the_key_is_unset(tmp_path, name, dotted):
    config, sources = load_config_and_sources(write(tmp_path, f'[general]\njurisdiction = "{name}"\n'),
                                              env={}, require_asterisk_apis=False)
    section, key = dotted.split(".")
    expected = PROFILES[name][section][key]
    assert value(config, dotted) == (dict(expected) if isinstance(expected, dict) else expected)
    assert dotted in sources.from_profile


@pytest.mark.parametrize(("name", "dotted"), PROFILE_KEYS)
def test_a_key_set_in_the_file_wins_over_the_profile(tmp_path, name, dotted):
    section, key = dotted.split(".")
    snippet, expected = EXPLICIT[dotted]
    assert PROFILES[name][section][key] != expected  # else the test would prove nothing
    general = f'jurisdiction = "{name}"\n' + (snippet + "\n" if section == "general" else "")
    extra = "" if section == "general" else f"[{section}]\n{snippet}\n"
    config, sources = load_config_and_sources(write(tmp_path, f"[general]\n{general}{extra}"),
                                              env={}, require_asterisk_apis=False)
    assert value(config, dotted) == expected
    assert dotted not in sources.from_profile


@pytest.mark.parametrize(("name", "dotted"), [(n, k) for n, k in PROFILE_KEYS if k in ENV])
def test_a_key_set_in_the_environment_wins_over_the_profile(tmp_path, name, dotted):
    raw, expected = ENV[dotted]
    env = {"CALLPROOF_" + dotted.upper().replace(".", "_"): raw}
    config, sources = load_config_and_sources(write(tmp_path, f'[general]\njurisdiction = "{name}"\n'),
                                              env=env, require_asterisk_apis=False)
    assert value(config, dotted) == expected
    assert dotted not in sources.from_profile


def test_the_jurisdiction_itself_can_come_from_the_environment(tmp_path):
    config = load_config(write(tmp_path, '[general]\njurisdiction = "br_sac"\n'),
                         env={"CALLPROOF_GENERAL_JURISDICTION": "es"}, require_asterisk_apis=False)
    assert (config.general.jurisdiction, config.general.timezone) == ("es", "Europe/Madrid")
    assert config.compliance.wait_thresholds_seconds == (180,)


def test_no_jurisdiction_changes_nothing(tmp_path):
    config, sources = load_config_and_sources(write(tmp_path, ""), env={}, require_asterisk_apis=False)
    assert config == Config()
    assert sources.from_profile == []
    assert "no jurisdiction profile" in sources.describe_profile()


def test_the_figures_a_user_would_see(tmp_path):
    def load(name):
        return load_config(write(tmp_path, f'[general]\njurisdiction = "{name}"\n'), env={},
                           require_asterisk_apis=False)
    sac, anatel, es = load("br_sac"), load("br_anatel"), load("es")
    assert dict(sac.retention.classes) == {"consumer_service": 90}
    assert sac.retention.call_record_days == 730
    assert (sac.rights.history_due_days, sac.rights.request_due_days) == (5, 10)
    assert sac.compliance.wait_thresholds_seconds == (60,)
    assert anatel.retention.classes["fixed_telecom"] == 365
    assert anatel.retention.default_class == "mobile_telecom"
    assert es.general.default_language == "es" and es.general.timezone == "Europe/Madrid"
    assert es.compliance.wait_thresholds_seconds == (180,)
    assert es.rights.request_due_days == 15
    assert dict(es.retention.classes) == dict(Config().retention.classes)  # the law sets none


@pytest.mark.parametrize("where", ["file", "env"])
def test_an_unknown_jurisdiction_names_the_key_and_the_valid_ones(tmp_path, where):
    text, env = ('[general]\njurisdiction = "fr"\n', {}) if where == "file" else \
        ("", {"CALLPROOF_GENERAL_JURISDICTION": "fr"})
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env=env, require_asterisk_apis=False)
    assert "general.jurisdiction" in str(exc.value)
    assert "'fr'" in str(exc.value)
    for name in PROFILES:
        assert name in str(exc.value)


def test_a_jurisdiction_that_is_not_a_string_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"general\.jurisdiction"):
        load_config(write(tmp_path, "[general]\njurisdiction = 1\n"), env={}, require_asterisk_apis=False)


@pytest.mark.parametrize(("snippet", "key"), [
    ("wait_thresholds_seconds = []", "compliance.wait_thresholds_seconds"),
    ("wait_thresholds_seconds = [180, 60]", "compliance.wait_thresholds_seconds"),
    ("wait_thresholds_seconds = [0]", "compliance.wait_thresholds_seconds"),
    ("sms_within_hours = 0", "compliance.sms_within_hours"),
    ("[rights]\nrequest_due_days = 0", "rights.request_due_days"),
    ("[rights]\nhistory_due_days = 400", "rights.history_due_days"),
    ("request_due_days = 7", "compliance.request_due_days"),  # [rights] holds the deadlines
])
def test_compliance_figures_are_checked(tmp_path, snippet, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, f"[compliance]\n{snippet}\n"), env={}, require_asterisk_apis=False)


def test_check_config_says_which_profile_and_which_values(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CALLPROOF_CONFIG", raising=False)
    monkeypatch.setenv("CALLPROOF_ARI_PASSWORD", "a-long-ari-secret")
    monkeypatch.setenv("CALLPROOF_AMI_PASSWORD", "a-long-ami-secret")
    cfg = write(tmp_path, '[general]\njurisdiction = "es"\ntimezone = "Atlantic/Canary"\n')
    assert main(["--config", str(cfg), "check-config"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("profile:"))
    assert "'es'" in line
    assert "compliance.wait_thresholds_seconds" in line and "general.languages" in line
    assert "general.timezone" not in line  # set in the file: not the profile's
