"""The console command: errors an administrator can act on."""

import subprocess
import sys

from callproof.cli import main


def test_check_config_names_the_bad_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CALLPROOF_CONFIG", raising=False)
    cfg = tmp_path / "callproof.toml"
    cfg.write_text('[ari]\npassword = "asterisk"\n[ami]\npassword = "a-long-ami-secret"\n')
    try:
        main(["--config", str(cfg), "check-config"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("a well-known password must stop the start")
    assert "ari.password" in capsys.readouterr().err


def test_check_config_ok(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALLPROOF_ARI_PASSWORD", "a-long-ari-secret")
    monkeypatch.setenv("CALLPROOF_AMI_PASSWORD", "a-long-ami-secret")
    cfg = tmp_path / "callproof.toml"
    cfg.write_text("")
    assert main(["--config", str(cfg), "check-config"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_example_config_is_valid_once_passwords_are_set(monkeypatch):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "callproof.toml.example"
    monkeypatch.setenv("CALLPROOF_ARI_PASSWORD", "a-long-ari-secret")
    monkeypatch.setenv("CALLPROOF_AMI_PASSWORD", "a-long-ami-secret")
    assert main(["--config", str(example), "check-config"]) == 0


def test_protocol_show_rejects_malformed_protocol(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CALLPROOF_ARI_PASSWORD", "a-long-ari-secret")
    monkeypatch.setenv("CALLPROOF_AMI_PASSWORD", "a-long-ami-secret")
    monkeypatch.setenv("CALLPROOF_STORAGE_DATABASE", str(tmp_path / "cp.db"))
    assert main(["protocol", "show", "2026-../../etc"]) == 2
    assert "17 digits" in capsys.readouterr().err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "callproof.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "check-config" in out.stdout
