"""``callproof report compliance``: the formats, the file written, the audit entry, and a bad
``--from``/``--to`` refused with an error naming the option."""

from __future__ import annotations

import json
import sqlite3

import pytest

from callproof.cli import main


@pytest.fixture
def cfg(seeded_config, tmp_path, monkeypatch):
    monkeypatch.delenv("CALLPROOF_CONFIG", raising=False)
    return str(tmp_path / "callproof.toml")


def run(cfg: str, *args: str) -> int:
    return main(["--config", cfg, "report", "compliance", *args])


def test_json_to_a_file_with_the_seeded_figures_and_an_audit_entry(cfg, seeded_config, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert run(cfg, "--from", "2026-10-01", "--to", "2026-11-30", "--out", str(out), "--by", "ana") == 0
    assert "json report 2026-10-01..2026-11-30 written to" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert (data["total"]["calls"], data["months"][0]["calls"], data["months"][1]["calls"]) == (7, 4, 3)
    conn = sqlite3.connect(seeded_config.storage.database)
    actor, details = conn.execute("SELECT actor, details FROM audit_log WHERE action = 'report.viewed'").fetchone()
    assert actor == "ana"
    assert json.loads(details) == {"from": "2026-10-01", "to": "2026-11-30", "format": "json", "locale": "en"}


@pytest.mark.parametrize(("suffix", "magic"), [("pdf", b"%PDF-"), ("html", b"<!doctype html>"),
                                               ("csv", b"period,kind,calls,")])
def test_the_format_follows_the_files_suffix(cfg, tmp_path, suffix, magic):
    out = tmp_path / f"r.{suffix}"
    assert run(cfg, "--from", "2026-10-01", "--to", "2026-10-31", "--out", str(out)) == 0
    assert out.read_bytes().startswith(magic)


def test_csv_to_standard_output_by_default(cfg, capsysbinary):
    assert run(cfg, "--from", "2026-10-05", "--to", "2026-10-05") == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0].startswith("period,kind,calls,announcement_pct,protocol_pct,sms_pct,")
    assert lines[1].startswith("2026-10,month,4,75.0%,")


def test_the_locale_option_translates_the_words_and_the_numbers_not_the_keys(cfg, seeded_config, capsysbinary):
    assert run(cfg, "--from", "2026-10-05", "--to", "2026-10-05", "--locale", "es") == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0].startswith("period,kind,calls,announcement_pct,")  # the keys: the same in every locale
    assert lines[1].startswith('2026-10,month,4,"75,0\u00a0%",')  # Spanish numbers
    conn = sqlite3.connect(seeded_config.storage.database)
    (details,) = conn.execute("SELECT details FROM audit_log WHERE action = 'report.viewed'").fetchone()
    assert json.loads(details)["locale"] == "es"


def test_an_unknown_locale_is_refused_naming_the_option(cfg, capsys):
    assert run(cfg, "--from", "2026-10-05", "--to", "2026-10-05", "--locale", "fr") == 2
    assert "--locale 'fr': one of en, pt_BR, es" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [
    (["--from", "2026-13-01", "--to", "2026-12-31"], "argument --from: not a date YYYY-MM-DD: '2026-13-01'"),
    (["--from", "2026-10-01", "--to", "yesterday"], "argument --to: not a date YYYY-MM-DD: 'yesterday'"),
])
def test_an_unparseable_day_names_the_option(cfg, capsys, args, named):
    with pytest.raises(SystemExit) as exc:
        run(cfg, *args)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [
    (["--from", "2026-11-02", "--to", "2026-11-01"], "--to 2026-11-01 is before --from 2026-11-02"),
    (["--from", "2025-01-01", "--to", "2026-11-30"], "--from 2025-01-01 --to 2026-11-30 spans 699 days"),
])
def test_a_backwards_or_too_long_period_names_the_options(cfg, seeded_config, capsys, args, named):
    assert run(cfg, *args) == 2
    assert named in capsys.readouterr().err
    conn = sqlite3.connect(seeded_config.storage.database)
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'report.viewed'").fetchone() == (0,)


def test_an_unwritable_out_file_is_a_clear_error(cfg, tmp_path, capsys):
    assert run(cfg, "--from", "2026-10-01", "--to", "2026-10-31", "--out", str(tmp_path / "no" / "r.csv")) == 1
    assert "cannot write" in capsys.readouterr().err


def test_a_jurisdiction_profile_sets_the_reports_targets_and_time_zone(seeded_config, tmp_path, capsys):
    """``es``: days in Madrid time (C, 23:59 in São Paulo, is 04:59 on the 6th there, and Z, 23:30
    on 30 Sep in São Paulo, is 1 Oct in Madrid, inside the period), one wait
    threshold of 180 s, 15-day deadlines (R2, delivered on day 11, is in time); a key set in the
    file wins over the profile."""
    es = tmp_path / "es.toml"
    es.write_text(f'[general]\njurisdiction = "es"\n[storage]\ndatabase = "{seeded_config.storage.database}"\n'
                  "[rights]\nhistory_due_days = 5\n")
    es.chmod(0o600)
    out = tmp_path / "es.json"
    assert main(["--config", str(es), "report", "compliance", "--from", "2026-10-01", "--to", "2026-11-30",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["timezone"] == "Europe/Madrid"
    assert data["targets"] == {"wait_thresholds_seconds": [180], "sms_within_hours": 24,
                               "request_due_days": 15, "history_due_days": 5}
    days = {d["label"]: d["calls"] for d in data["days"] if d["calls"]}
    assert days == {"2026-10-01": 1, "2026-10-05": 3, "2026-10-06": 1, "2026-11-10": 3}
    october = data["months"][0]
    assert (october["requests_in_time"], october["requests_late"]) == (2, 0)
    assert list(october["answered_within"]) == ["180"]
    # [rights] history_due_days = 5 from the file, not the profile's 15: both histories were
    # produced on their 6th Madrid day (10 Oct 20:00 in São Paulo is 11 Oct 01:00 in Madrid)
    assert data["total"]["histories_in_time"] == 0
