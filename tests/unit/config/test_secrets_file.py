"""The commands read /etc/callproof/callproof.toml by default and the secrets file beside
it (a systemd EnvironmentFile), say which files they read, and the real environment wins."""

from __future__ import annotations

import os

import pytest

from callproof.cli import main
from callproof.config import ConfigError, load_config_and_sources
from callproof.config.secrets_file import parse_env_file

STRONG_ARI = "Ari-pass-4f9c2d7e1b"
STRONG_AMI = "Ami-pass-8e3a6c0f5d"


def write_config(tmp_path, secrets: str | None = None, secrets_mode: int = 0o600):
    cfg = tmp_path / "callproof.toml"
    cfg.write_text(f'[storage]\ndatabase = "{tmp_path}/cp.db"\n[recording]\nroot = "{tmp_path}/rec"\n')
    cfg.chmod(0o644)
    if secrets is not None:
        env = tmp_path / "secrets.env"
        env.write_text(secrets)
        env.chmod(secrets_mode)
    return cfg


def test_secrets_beside_the_file_are_read_and_named(tmp_path):
    cfg = write_config(tmp_path, f"# generated\nCALLPROOF_ARI_PASSWORD={STRONG_ARI}\n"
                                 f"export CALLPROOF_AMI_PASSWORD='{STRONG_AMI}'\nPATH=/x\n")
    config, sources = load_config_and_sources(cfg, env={})
    assert (config.ari.password, config.ami.password) == (STRONG_ARI, STRONG_AMI)
    assert sources.describe() == f"read {cfg}; read {tmp_path / 'secrets.env'}"
    assert sources.notes == [f"{tmp_path / 'secrets.env'}: ignored PATH (not CALLPROOF_*)"]


def test_the_environment_wins_over_the_secrets_file(tmp_path):
    cfg = write_config(tmp_path, f"CALLPROOF_ARI_PASSWORD={STRONG_ARI}\nCALLPROOF_AMI_PASSWORD={STRONG_AMI}\n")
    config, _ = load_config_and_sources(cfg, env={"CALLPROOF_ARI_PASSWORD": "Other-strong-9d8c7b6a"})
    assert config.ari.password == "Other-strong-9d8c7b6a" and config.ami.password == STRONG_AMI


def test_a_world_readable_secrets_file_is_refused(tmp_path):
    cfg = write_config(tmp_path, f"CALLPROOF_ARI_PASSWORD={STRONG_ARI}\n", secrets_mode=0o644)
    with pytest.raises(ConfigError, match=r"general\.secrets_file.*readable or writable by every user.*chmod 0600"):
        load_config_and_sources(cfg, env={})


def test_a_bad_line_names_the_file_and_line_not_the_value(tmp_path):
    with pytest.raises(ConfigError, match=r"s\.env line 2: expected NAME=value") as info:
        parse_env_file(tmp_path / "s.env", "A=1\nthis is hunter2\n")
    assert "hunter2" not in str(info.value)


def test_default_file_used_when_none_is_given(tmp_path):
    cfg = write_config(tmp_path)
    _, sources = load_config_and_sources(None, env={}, default_path=cfg, require_asterisk_apis=False)
    assert sources.config_file == cfg
    _, sources = load_config_and_sources(None, env={}, default_path=tmp_path / "absent.toml",
                                         require_asterisk_apis=False)
    assert sources.config_file is None and "built-in defaults" in sources.describe()


def test_check_config_says_which_files_it_read_and_warns_about_the_log_backend(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path, f"CALLPROOF_ARI_PASSWORD={STRONG_ARI}\nCALLPROOF_AMI_PASSWORD={STRONG_AMI}\n")
    for name in [n for n in os.environ if n.startswith("CALLPROOF_") and n != "CALLPROOF_GENERAL_SERVICE_USER"]:
        monkeypatch.delenv(name)
    assert main(["--config", str(cfg), "check-config"]) == 0
    out, err = capsys.readouterr()
    assert f"files: read {cfg}; read {tmp_path / 'secrets.env'}" in out
    assert "backend is 'log': no SMS is sent" in err


def test_an_invalid_configuration_names_the_file(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path)
    for name in [n for n in os.environ if n.startswith("CALLPROOF_") and n != "CALLPROOF_GENERAL_SERVICE_USER"]:
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit):
        main(["--config", str(cfg), "check-config"])
    assert f"invalid configuration ({cfg}): config key 'ari.password'" in capsys.readouterr().err
