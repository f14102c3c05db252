"""Retention classes and retention_until: calendar days in the deployment
time zone, leap years, DST, class rules, config validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callproof.config import ConfigError, load_config
from callproof.retention.policy import choose_class, retention_until

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")
CLASSES = {"consumer_service": 90, "mobile_telecom": 180, "bank": 1825}
ENV = {"CALLPROOF_ARI_PASSWORD": "a-long-ari-secret-1", "CALLPROOF_AMI_PASSWORD": "a-long-ami-secret-1"}


def test_90_days_same_wall_clock():
    start = datetime(2026, 1, 10, 23, 30, tzinfo=SP)  # 02:30Z on the 11th
    until = retention_until(start, 90, SP)
    assert until.astimezone(SP) == datetime(2026, 4, 10, 23, 30, tzinfo=SP)
    assert until - start == timedelta(days=90)  # no DST in Brazil since 2019


def test_leap_year_feb_29_counts():
    start = datetime(2028, 2, 1, 10, 0, tzinfo=SP)
    assert retention_until(start, 90, SP).astimezone(SP).date().isoformat() == "2028-05-01"
    start = datetime(2027, 2, 1, 10, 0, tzinfo=SP)  # not a leap year
    assert retention_until(start, 90, SP).astimezone(SP).date().isoformat() == "2027-05-02"
    start = datetime(2028, 2, 29, 8, 0, tzinfo=SP)
    assert retention_until(start, 180, SP).astimezone(SP).date().isoformat() == "2028-08-27"


def test_dst_keeps_local_wall_clock():
    # 2026-03-08 New York springs forward: 90 calendar days are 90*24h - 1h.
    start = datetime(2026, 2, 1, 9, 0, tzinfo=NY)
    until = retention_until(start, 90, NY)
    assert until.astimezone(NY) == datetime(2026, 5, 2, 9, 0, tzinfo=NY)
    assert until.astimezone(UTC) - start.astimezone(UTC) == timedelta(days=90, hours=-1)


def test_utc_midnight_is_previous_local_day():
    # 01:00Z on the 1st is 22:00 on the 31st in Sao Paulo: the local day counts.
    start = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
    until = retention_until(start, 90, SP)
    assert until.astimezone(SP) == datetime(2026, 6, 29, 22, 0, tzinfo=SP)


def test_naive_refused():
    with pytest.raises(ValueError, match="aware"):
        retention_until(datetime(2026, 1, 1), 90, SP)  # noqa: DTZ001 -- naive on purpose: refused


def test_class_rules_priority():
    did = {"+551140000001": "mobile_telecom"}
    ctx = {"from-bank": "bank"}

    def pick(**kw):
        return choose_class(CLASSES, "consumer_service", did_classes=did, context_classes=ctx, **kw)

    assert pick().retention_class == "consumer_service" and pick().why == "default"
    assert pick(did="+551140000001").retention_class == "mobile_telecom"
    assert pick(context="from-bank").days == 1825
    assert pick(did="+551140000001", context="from-bank").why == "did"
    assert pick(variable="bank", did="+551140000001").why == "variable"
    # an unknown class in the channel variable falls back to the rules
    assert pick(variable="no-such", did="+551140000001").retention_class == "mobile_telecom"


def test_config_retention_section(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[retention]\nclasses = { consumer_service = 90, mobile_telecom = 180, bank = 1825 }\n'
                   'did_classes = { "+551140000001" = "bank" }\ncall_record_days = 365\n')
    rt = load_config(cfg, env=ENV).retention
    assert rt.classes["bank"] == 1825 and rt.did_classes == {"+551140000001": "bank"}
    assert rt.call_record_days == 365 and rt.default_class == "consumer_service"


@pytest.mark.parametrize("text, key", [
    ('[retention]\nclasses = { a = 0 }\ndefault_class = "a"\n', "retention.classes.a"),
    ('[retention]\ndefault_class = "nope"\n', "retention.default_class"),
    ('[retention]\ndid_classes = { "+5511" = "nope" }\n', "retention.did_classes.+5511"),
    ('[retention]\ncontext_classes = { x = "nope" }\n', "retention.context_classes.x"),
    ('[retention]\nclasses = { a = true }\n', "retention.classes"),
    ('[retention]\nbatch_size = 0\n', "retention.batch_size"),
    ('[retention]\nquarantine_dir = "rel/dir"\n', "retention.quarantine_dir"),
    ('[retention]\nsweep_interval_seconds = 1\n', "retention.sweep_interval_seconds"),
    ('[retention]\ncall_record_days = -1\n', "retention.call_record_days"),
])
def test_config_errors_name_the_key(tmp_path, text, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg, env=ENV)
    assert exc.value.key == key
