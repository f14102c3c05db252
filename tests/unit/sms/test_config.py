"""[sms], [sms.smpp], [sms.http]: values load (file and env) and bad ones name their key."""

from __future__ import annotations

import pytest

from callproof.config import ConfigError, load_config

ENV = {"CALLPROOF_ARI_PASSWORD": "a-long-ari-secret", "CALLPROOF_AMI_PASSWORD": "a-long-ami-secret"}


def load(tmp_path, text, **env):
    p = tmp_path / "c.toml"
    p.write_text(text)
    p.chmod(0o600)  # it holds secrets: world-readable is refused
    return load_config(p, env={**ENV, **env})


def test_smpp_subtable_and_env_override(tmp_path):
    c = load(tmp_path, '[sms]\nbackend = "smpp"\nwindow = 4\n[sms.smpp]\nsystem_id = "acme"\n'
                       'password = "s3cr3t"\nport = 2776\n', CALLPROOF_SMS_SMPP_PORT="2999")
    assert c.sms.backend == "smpp" and c.sms.window == 4
    assert (c.sms.smpp.system_id, c.sms.smpp.port, c.sms.smpp.host) == ("acme", 2999, "127.0.0.1")


def test_http_subtable(tmp_path):
    c = load(tmp_path, '[sms]\nbackend = "http"\n[sms.http]\nurl = "https://gw.example/sms"\n'
                       'body_format = "form"\nsuccess_statuses = [200]\n'
                       '[sms.http.body_template]\nphone = "{destination}"\nmsg = "{body}"\n')
    assert c.sms.http.body_template == {"phone": "{destination}", "msg": "{body}"}
    assert c.sms.http.success_statuses == (200,)


@pytest.mark.parametrize("text, key", [
    ('[sms]\nbackend = "smpp"\n', "sms.smpp.system_id"),
    ('[sms]\nbackend = "smpp"\n[sms.smpp]\nsystem_id = "a"\n', "sms.smpp.password"),
    ('[sms.smpp]\nsystme_id = "a"\n', "sms.smpp.systme_id"),
    ('[sms.smpp]\npassword = "longer-than-8"\n', "sms.smpp.password"),
    ('[sms.smpp]\nbind_mode = "receiver"\n', "sms.smpp.bind_mode"),
    ('[sms.smpp]\nport = "x"\n', "sms.smpp.port"),
    ('[sms]\nbackend = "http"\n', "sms.http.url"),
    ('[sms.http]\nbody_format = "xml"\n', "sms.http.body_format"),
    ('[sms.http.body_template]\nto = "{nope}"\n', "sms.http.body_template.to"),
    ('[sms]\nwindow = 0\n', "sms.window"),
    ('[sms]\nwindow = 100\nbatch_size = 50\n', "sms.window"),
    ('[sms]\nbackend = "carrier-pigeon"\n', "sms.backend"),
    ('[sms]\nsmpp = 3\n', "sms.smpp"),
    ('[sms]\ninstance = "a/b"\n', "sms.instance"),
    ('[sms]\ninstance = ""\n', "sms.instance"),
    ('[sms]\nreceipt_hold_seconds = 0\n', "sms.receipt_hold_seconds"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    assert f"'{key}'" in str(exc.value)


def test_sender_name_and_receipt_hold(tmp_path):
    c = load(tmp_path, '[sms]\ninstance = "node-2.a"\nreceipt_hold_seconds = 30\n')
    assert (c.sms.instance, c.sms.receipt_hold_seconds) == ("node-2.a", 30)
    assert load(tmp_path, "").sms.instance == "callproof"


def test_programs_that_only_queue_sms_load_without_the_smpp_password(tmp_path):
    """The AGI script and FastAGI server (require_asterisk_apis=False) get neither the ARI/AMI
    nor the SMPP password when those live only in callproof run's environment (secrets.env)."""
    p = tmp_path / "c.toml"
    p.write_text('[sms]\nbackend = "smpp"\n[sms.smpp]\nsystem_id = "acme"\n')
    assert load_config(p, env={}, require_asterisk_apis=False).sms.smpp.password == ""
    with pytest.raises(ConfigError, match=r"sms\.smpp\.password"):
        load_config(p, env=ENV)  # callproof run sends: required
