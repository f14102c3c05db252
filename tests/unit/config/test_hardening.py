"""The configuration findings of the security review: each bad input is refused with a
ConfigError that names the key (and, for templates, the field)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callproof.config import ConfigError, load_config

GOOD = """
[ari]
password = "s3cure-ari-passphrase"
[ami]
password = "s3cure-ami-passphrase"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "callproof.toml"
    p.write_text(text)
    p.chmod(mode)
    return p


def refused(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env=env or {})
    return err.value


# -- templates --------------------------------------------------------------

@pytest.mark.parametrize(("section", "key", "template"), [
    ("sms.templates", "pt_BR", "{company.nope} {protocol}"),
    ("sms.templates", "pt_BR", "{company[0]} {protocol}"),
    ("sms.templates", "en", "{nope} {protocol}"),
    ("rights.sms_link_templates", "es", "{company.__class__} {url}"),
    ("sms.templates", "pt_BR", "{protocol:>{width}}"),
])
def test_template_field_errors_name_key_and_field(tmp_path, section, key, template):
    table = dict.fromkeys(("pt_BR", "es", "en"), "{company} {protocol} {url}" if "link" in section
                          else "{company} {protocol}")
    table[key] = template
    lines = "".join(f'{lang} = "{text}"\n' for lang, text in table.items())
    err = refused(tmp_path, GOOD + f"[{section}]\n{lines}")
    assert err.key == f"{section}.{key}"
    field = template.split("{", 1)[1].split("}", 1)[0].split(":")[0].split(".")[0].split("[")[0]
    assert field in str(err)


def test_callback_template_attribute_refused(tmp_path):
    err = refused(tmp_path, GOOD + '[callback]\nendpoint_template = "PJSIP/{number.real}@trunk"\n')
    assert err.key == "callback.endpoint_template" and "number" in str(err)


# -- numbers ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_refused_from_the_file(tmp_path, value):
    err = refused(tmp_path, GOOD + f"[recording]\nfinalise_grace_seconds = {value}\n")
    assert err.key == "recording.finalise_grace_seconds"


@pytest.mark.parametrize("value", ["nan", "inf", "NaN", "1e999"])
def test_non_finite_floats_refused_from_the_environment(tmp_path, value):
    err = refused(tmp_path, GOOD, env={"CALLPROOF_STORAGE_CALL_WAIT_SECONDS": value})
    assert err.key == "storage.call_wait_seconds"


@pytest.mark.parametrize(("section", "key", "value"), [
    ("recording", "finalise_grace_seconds", "-1"),
    ("storage", "busy_timeout_ms", "-5"),
    ("sms.smpp", "enquire_link_seconds", "-0.5"),
    ("callback", "first_delay_seconds", "-30"),
])
def test_negative_durations_refused(tmp_path, section, key, value):
    err = refused(tmp_path, GOOD + f"[{section}]\n{key} = {value}\n")
    assert err.key == f"{section}.{key}"


def test_finalise_grace_has_an_upper_bound(tmp_path):
    err = refused(tmp_path, GOOD + "[recording]\nfinalise_grace_seconds = 100000\n")
    assert err.key == "recording.finalise_grace_seconds"


@pytest.mark.parametrize(("section", "key", "value"), [
    ("sms.smpp", "port", '"2775"'),
    ("handoff", "priority", '"1"'),
    ("general", "use_channel_language", '"yes"'),
    ("web", "secure_cookies", '"true"'),
    ("recording", "finalise_grace_seconds", '"10"'),
    ("protocol_reading", "groups", '["4", "4", "4", "5"]'),
])
def test_strings_refused_for_numbers_and_booleans_in_the_file(tmp_path, section, key, value):
    err = refused(tmp_path, GOOD + f"[{section}]\n{key} = {value}\n")
    assert err.key == f"{section}.{key}"


def test_environment_strings_still_convert(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), env={"CALLPROOF_AMI_PORT": "6038",
                                                  "CALLPROOF_WEB_SECURE_COOKIES": "yes",
                                                  "CALLPROOF_RECORDING_FINALISE_GRACE_SECONDS": "2.5"})
    assert (cfg.ami.port, cfg.web.secure_cookies, cfg.recording.finalise_grace_seconds) == (6038, True, 2.5)


# -- paths ------------------------------------------------------------------

@pytest.mark.parametrize(("section", "key"), [("storage", "database"), ("prompts", "custom_directory")])
def test_relative_paths_refused(tmp_path, section, key):
    err = refused(tmp_path, GOOD + f'[{section}]\n{key} = "data/callproof.db"\n')
    assert err.key == f"{section}.{key}" and "absolute" in str(err)


def test_relative_database_from_the_environment_refused(tmp_path):
    err = refused(tmp_path, GOOD, env={"CALLPROOF_STORAGE_DATABASE": "cp.db"})
    assert err.key == "storage.database"


# -- weak secrets -----------------------------------------------------------

@pytest.mark.parametrize("password", [
    "aaaaaaaaaaaa", "password1234", "Password!2026", "p@ssw0rd2026", "abcd1234efgh",
    "123456789012", "qwertyuiopas", "abababababab", "callproof123",
])
def test_weak_passwords_refused(tmp_path, password):
    err = refused(tmp_path, GOOD.replace("s3cure-ari-passphrase", password))
    assert err.key == "ari.password"


def test_password_equal_to_the_user_name_refused(tmp_path):
    text = GOOD.replace('[ami]\n', '[ami]\nusername = "pbx-recorder-01"\n').replace(
        "s3cure-ami-passphrase", "PBX-Recorder-01")
    err = refused(tmp_path, text)
    assert err.key == "ami.password" and "user name" in str(err)


@pytest.mark.parametrize(("section", "key"), [
    ("rights", "link_secret"), ("rights", "identity_key"), ("web", "api_token"),
])
@pytest.mark.parametrize("secret", ["a" * 32, "ab" * 16, "0123456789abcdef" * 2,
                                    "passwordpasswordpasswordpassword1", "abcdefghijklmnopqrstuvwxyz012345"])
def test_weak_long_secrets_refused(tmp_path, section, key, secret):
    err = refused(tmp_path, GOOD + f'[{section}]\n{key} = "{secret}"\n')
    assert err.key == f"{section}.{key}"


def test_generated_secrets_accepted(tmp_path):
    import secrets

    for _ in range(200):
        text = GOOD.replace("s3cure-ari-passphrase", secrets.token_urlsafe(12)) + (
            f'[rights]\nlink_secret = "{secrets.token_hex(16)}"\nidentity_key = "{secrets.token_urlsafe(32)}"\n'
            f'[web]\napi_token = "{secrets.token_hex(16)}"\n')
        load_config(write(tmp_path, text), env={})


# -- the file's mode --------------------------------------------------------

def test_world_readable_file_with_secrets_refused(tmp_path):
    path = write(tmp_path, GOOD, mode=0o644)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == "config" and "0644" in str(err.value) and "chmod" in str(err.value)


def test_world_writable_file_refused_even_without_secrets(tmp_path):
    path = write(tmp_path, "[general]\ncompany_name = 'ACME'\n", mode=0o666)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={}, require_asterisk_apis=False)
    assert err.value.key == "config"


def test_group_readable_file_and_world_readable_file_without_secrets_accepted(tmp_path):
    load_config(write(tmp_path, GOOD, mode=0o640), env={})
    load_config(write(tmp_path, "[general]\ncompany_name = 'ACME'\n", mode=0o644), env={},
                require_asterisk_apis=False)


def test_secrets_from_the_environment_do_not_make_the_file_secret(tmp_path):
    path = write(tmp_path, "[general]\ncompany_name = 'ACME'\n", mode=0o644)
    env = {"CALLPROOF_ARI_PASSWORD": "s3cure-ari-passphrase", "CALLPROOF_AMI_PASSWORD": "s3cure-ami-passphrase"}
    load_config(path, env=env)
    assert os.stat(path).st_mode & 0o777 == 0o644
