"""Configuration: defaults, env overrides, and errors that name the key."""

from pathlib import Path

import pytest

from callproof.config import ConfigError, load_config

GOOD = """
[ari]
password = "s3cure-ari-passphrase"
[ami]
password = "s3cure-ami-passphrase"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "callproof.toml"
    p.write_text(text)
    p.chmod(0o600)  # it holds secrets: world-readable is refused
    return p


def test_defaults_are_loopback_and_brazilian(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), env={})
    assert cfg.ari.url.startswith("http://127.0.0.1:")
    assert cfg.ami.host == "127.0.0.1"
    assert cfg.general.timezone == "America/Sao_Paulo"
    assert cfg.general.default_language == "pt_BR"
    assert sum(cfg.protocol_reading.groups) == 17


def test_env_overrides_file(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), env={"CALLPROOF_AMI_PORT": "6038",
                                                  "CALLPROOF_PROTOCOL_READING_GROUPS": "5,4,4,4"})
    assert cfg.ami.port == 6038
    assert cfg.protocol_reading.groups == (5, 4, 4, 4)


def test_config_path_from_env(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_config(None, env={"CALLPROOF_CONFIG": str(path), "CALLPROOF_ARI_APP": "cp2"})
    assert cfg.ari.app == "cp2"


@pytest.mark.parametrize("password", ["", "asterisk", "secret", "changeme", "short"])
def test_weak_ari_password_refused(tmp_path, password):
    text = GOOD.replace('"s3cure-ari-passphrase"', f'"{password}"')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    assert err.value.key == "ari.password"


def test_missing_ami_password_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[ari]\npassword = "s3cure-ari-passphrase"\n'), env={})
    assert err.value.key == "ami.password"
    assert "ami.password" in str(err.value)


def toml_with(section: str, key: str, value: str) -> str:
    """GOOD's passwords plus one ``key = value`` line in ``section``."""
    tables = {"ari": {"password": '"s3cure-ari-passphrase"'}, "ami": {"password": '"s3cure-ami-passphrase"'}}
    tables.setdefault(section, {})[key] = value
    out = []
    for name, items in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {v}" for k, v in items.items()]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    "section, key, value, named",
    [
        ("general", "timezone", '"Mars/Olympus"', "general.timezone"),
        ("general", "default_language", '"fr"', "general.default_language"),
        ("protocol_reading", "groups", "[4, 4, 4]", "protocol_reading.groups"),
        ("protocol_reading", "replay_key", '"ab"', "protocol_reading.replay_key"),
        ("ami", "port", '"x"', "ami.port"),
        ("recording", "root", '"relative/dir"', "recording.root"),
        ("handoff", "context", '"bad context;"', "handoff.context"),
        ("sms", "backend", '"carrier-pigeon"', "sms.backend"),
        ("sms", "templates", '{ pt_BR = "{nope}", es = "x", en = "x" }', "sms.templates.pt_BR"),
        ("ari", "pasword", '"typo"', "ari.pasword"),
        ("aris", "x", "1", "aris"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, section, key, value, named):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, toml_with(section, key, value)), env={})
    assert err.value.key == named, str(err.value)


def test_bad_env_value_names_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD), env={"CALLPROOF_STORAGE_BUSY_TIMEOUT_MS": "soon"})
    assert err.value.key == "storage.busy_timeout_ms"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[ari\n"), env={})


def test_agi_only_install_needs_no_ari_ami_password(tmp_path):
    """Dialplan-driven installs (AGI/FastAGI) and ops commands never talk to ARI/AMI."""
    cfg = load_config(write(tmp_path, ""), env={}, require_asterisk_apis=False)
    assert cfg.ari.password == "" and cfg.ami.password == ""
    with pytest.raises(ConfigError) as err:  # a password that is set must still be strong
        load_config(write(tmp_path, '[ami]\npassword = "secret"\n'), env={}, require_asterisk_apis=False)
    assert err.value.key == "ami.password"
