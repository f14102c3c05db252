"""[rights], [rights.smtp], [web] and [callback]: safe defaults, errors naming the key."""

from pathlib import Path

import pytest

from callproof.config import ConfigError, load_config, require_secret

SECRET = "unit-test-rights-secret-0123456789abcdef"


def load(tmp_path: Path, text: str = "", env: dict | None = None):
    p = tmp_path / "callproof.toml"
    p.write_text(text)
    p.chmod(0o600)  # it holds secrets: world-readable is refused
    return load_config(p, env=env or {}, require_asterisk_apis=False)


def test_defaults_keep_everything_on_loopback_and_secrets_unset(tmp_path):
    cfg = load(tmp_path)
    assert cfg.web.host == "127.0.0.1"
    assert cfg.rights.smtp.host == "127.0.0.1"
    assert cfg.rights.identity_key == "" and cfg.rights.link_secret == "" and cfg.web.api_token == ""
    assert cfg.rights.request_due_days == 10 and cfg.rights.history_due_days == 5
    assert cfg.callback.enabled is False


def test_shipped_example_config_is_valid():
    example = Path(__file__).resolve().parents[3] / "deploy" / "callproof.toml.example"
    cfg = load_config(example, env={}, require_asterisk_apis=False)
    assert cfg.rights.export_format == "mp3"


def test_require_secret_names_the_key_and_the_env_variable(tmp_path):
    cfg = load(tmp_path)
    with pytest.raises(ConfigError) as err:
        require_secret(cfg, "rights.identity_key")
    assert err.value.key == "rights.identity_key"
    assert "CALLPROOF_RIGHTS_IDENTITY_KEY" in str(err.value)
    cfg = load(tmp_path, env={"CALLPROOF_RIGHTS_IDENTITY_KEY": SECRET})
    assert require_secret(cfg, "rights.identity_key") == SECRET


@pytest.mark.parametrize("text, key", [
    ('[rights]\nidentity_key = "short"', "rights.identity_key"),
    ('[rights]\nlink_secret = "changeme"', "rights.link_secret"),
    (f'[rights]\nidentity_key = "{SECRET}"\nlink_secret = "{SECRET}"', "rights.link_secret"),
    ('[rights]\nrequest_due_days = 0', "rights.request_due_days"),
    ('[rights]\nexport_format = "flac"', "rights.export_format"),
    ('[rights]\nexport_dir = "relative/exports"', "rights.export_dir"),
    ('[rights]\npublic_base_url = "ftp://x/"', "rights.public_base_url"),
    ('[rights]\npublic_base_url = "https://x.example"', "rights.public_base_url"),
    ('[rights.sms_link_templates]\npt_BR = "{url} {nope}"\nes = "{url}"\nen = "{url}"',
     "rights.sms_link_templates.pt_BR"),
    ('[rights.sms_link_templates]\npt_BR = "{url}"', "rights.sms_link_templates.es"),
    ('[rights.smtp]\nport = 0', "rights.smtp.port"),
    ('[rights.smtp]\ntls = true\nstarttls = true', "rights.smtp.tls"),
    ('[rights.smtp]\npassword = "secret"', "rights.smtp.password"),
    ('[rights.smtp]\nsender = "nobody"', "rights.smtp.sender"),
    ('[rights.smtp]\nhots = "x"', "rights.smtp.hots"),
    ('[web]\nport = 70000', "web.port"),
    ('[web]\napi_token = "abc"', "web.api_token"),
    ('[web]\nsession_minutes = 1', "web.session_minutes"),
    ('[callback]\nendpoint_template = "PJSIP/trunk"', "callback.endpoint_template"),
    ('[callback]\nendpoint_template = "PJSIP/{nope}"', "callback.endpoint_template"),
    ('[callback]\nmax_attempts = 0', "callback.max_attempts"),
    ('[callback]\ndrop_causes = [16, 200]', "callback.drop_causes"),
])
def test_invalid_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert err.value.key == key


def test_env_overrides_reach_subsections_and_tuples(tmp_path):
    cfg = load(tmp_path, env={"CALLPROOF_RIGHTS_SMTP_PORT": "2525", "CALLPROOF_CALLBACK_DROP_CAUSES": "38,41",
                              "CALLPROOF_WEB_PORT": "9000"})
    assert cfg.rights.smtp.port == 2525
    assert cfg.callback.drop_causes == (38, 41)
    assert cfg.web.port == 9000
