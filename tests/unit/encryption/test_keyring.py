"""The keyring on disk: what the PBX side and the web/export side load, and every refusal
naming the file or directory and the fix (callproof/encryption/keyring.py)."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta

import pytest

from callproof.config import ConfigError, load_config
from callproof.encryption import Identity, format_identity_file
from callproof.encryption.keyring import (
    KeyringError,
    PrivateKeyring,
    PublicKeyring,
    parse_period,
    period_key_id,
)
from callproof.encryption.keystore import export_public
from tests.unit.encryption.keyworld import APRIL, MARCH, key_config, make_keys

IN_MARCH = datetime(2027, 3, 10, 14, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path):
    cfg = key_config(tmp_path)
    make_keys(cfg)
    export_public(cfg.encryption.private_keys_dir, cfg.encryption.public_keys_dir)
    return cfg


def test_period_key_ids_are_class_and_expiry_month_in_utc():
    assert period_key_id("consumer_service", IN_MARCH) == MARCH
    # 31 March 23:30 in São Paulo is already April in UTC
    late = datetime(2027, 3, 31, 23, 30, tzinfo=UTC) + timedelta(hours=3)
    assert period_key_id("consumer_service", late) == APRIL
    assert parse_period("mobile-telecom-2027-12") == ("mobile-telecom", "2027-12")
    assert parse_period("hold-1") is None and parse_period("nonsense") is None


def test_the_pbx_side_is_off_until_encryption_is_enabled(config):
    assert PublicKeyring.load(dataclasses.replace(config, encryption=dataclasses.replace(
        config.encryption, enabled=False))) is None


def test_the_pbx_side_finds_a_recordings_period_key(config):
    ring = PublicKeyring.load(config)
    assert ring is not None
    chosen = ring.recipients_for("consumer_service", IN_MARCH)
    private = PrivateKeyring.load(config)
    assert chosen.key_ids == (MARCH,)
    assert chosen.recipients == (private.identity(MARCH).recipient,)


def test_a_missing_period_key_is_refused_naming_the_file_and_the_commands(config):
    ring = PublicKeyring.load(config)
    assert ring is not None
    with pytest.raises(KeyringError) as err:
        ring.recipients_for("consumer_service", datetime(2031, 1, 5, tzinfo=UTC))
    assert "consumer_service-2031-01.pub" in str(err.value)
    assert "callproof keys rotate" in str(err.value) and "export-public" in str(err.value)


def test_a_key_exported_after_start_up_is_found_without_a_restart(config):
    ring = PublicKeyring.load(config)
    assert ring is not None
    new = Identity.generate()
    (config.encryption.public_keys_dir / "consumer_service-2031-01.pub").write_text(f"{new.recipient}\n")
    assert ring.recipients_for("consumer_service", datetime(2031, 1, 5, tzinfo=UTC)).recipients == (new.recipient,)


def test_an_already_expired_recording_gets_no_key(config):
    ring = PublicKeyring.load(config)
    assert ring is not None
    with pytest.raises(KeyringError, match="expired"):
        ring.recipients_for("consumer_service", datetime.now(UTC) - timedelta(minutes=1))


def test_a_public_key_others_could_replace_is_refused(config):
    path = config.encryption.public_keys_dir / f"{MARCH}.pub"
    path.chmod(0o666)
    with pytest.raises(KeyringError) as err:
        PublicKeyring.load(config)
    assert str(path) in str(err.value) and "chmod 644" in str(err.value)


def test_a_public_keys_dir_others_could_add_keys_to_is_refused(config):
    config.encryption.public_keys_dir.chmod(0o775)
    with pytest.raises(KeyringError) as err:
        PublicKeyring.load(config)
    assert str(config.encryption.public_keys_dir) in str(err.value) and "chmod 755" in str(err.value)


def test_a_missing_public_keys_dir_says_how_to_write_it(tmp_path):
    with pytest.raises(KeyringError, match="callproof keys export-public"):
        PublicKeyring.load(key_config(tmp_path))


def test_the_private_side_holds_every_key_and_the_hold_key(config):
    ring = PrivateKeyring.load(config)
    assert ring.hold_recipients().key_ids == ("hold-1",)
    assert MARCH in ring.key_ids() and APRIL in ring.key_ids()
    assert len(ring.identities()) == len(ring.key_ids())
    assert "AGE-SECRET-KEY" not in repr(ring.identities())


def test_a_private_key_group_can_read_is_refused_naming_it(config):
    path = config.encryption.private_keys_dir / f"{MARCH}.key"
    path.chmod(0o640)
    with pytest.raises(KeyringError) as err:
        PrivateKeyring.load(config)
    assert str(path) in str(err.value) and "0640" in str(err.value) and "chmod 600" in str(err.value)


def test_a_private_keys_dir_others_can_enter_is_refused(config):
    config.encryption.private_keys_dir.chmod(0o750)
    with pytest.raises(KeyringError) as err:
        PrivateKeyring.load(config)
    assert str(config.encryption.private_keys_dir) in str(err.value) and "chmod 700" in str(err.value)


def test_a_missing_private_keys_dir_says_how_to_make_it(tmp_path):
    with pytest.raises(KeyringError) as err:
        PrivateKeyring.load(key_config(tmp_path))
    assert "does not exist" in str(err.value) and "callproof keys init" in str(err.value)


def test_a_linked_key_file_is_refused(config):
    path = config.encryption.private_keys_dir / f"{MARCH}.key"
    elsewhere = config.encryption.private_keys_dir.parent / "elsewhere.key"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    with pytest.raises(KeyringError, match="symbolic link"):
        PrivateKeyring.load(config)


def test_without_the_hold_key_the_private_side_refuses_to_start(config):
    (config.encryption.private_keys_dir / "hold-1.key").unlink()
    with pytest.raises(KeyringError) as err:
        PrivateKeyring.load(config)
    assert "no hold key" in str(err.value) and "callproof keys init" in str(err.value)


def test_a_stray_file_in_the_keys_dir_is_named(config):
    stray = config.encryption.private_keys_dir / "backup-copy.key"
    stray.write_text(format_identity_file(Identity.generate()))
    stray.chmod(0o600)
    with pytest.raises(KeyringError) as err:
        PrivateKeyring.load(config)
    assert str(stray) in str(err.value) and "not a key id" in str(err.value)


def test_a_systemd_credential_directory_replaces_the_private_dir(config, tmp_path):
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o500)
    os.chmod(creds, 0o700)
    for key_id in ("hold-1", MARCH):
        src = config.encryption.private_keys_dir / f"{key_id}.key"
        dst = creds / f"callproof-keys_{key_id}.key"
        dst.write_bytes(src.read_bytes())
        dst.chmod(0o400)
    cfg = dataclasses.replace(config, encryption=dataclasses.replace(
        config.encryption, private_keys_credential="callproof-keys"))
    ring = PrivateKeyring.load(cfg, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert ring.key_ids() == [MARCH, "hold-1"]
    # without $CREDENTIALS_DIRECTORY (not started by systemd) the directory is used
    assert len(PrivateKeyring.load(cfg, env={}).key_ids()) > 2
    empty = tmp_path / "empty-creds"
    empty.mkdir()
    with pytest.raises(KeyringError, match="LoadCredential=callproof-keys:"):
        PrivateKeyring.load(cfg, env={"CREDENTIALS_DIRECTORY": str(empty)})


def _load(tmp_path, text, env=None):
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    return load_config(path, env=env or {}, require_asterisk_apis=False)


def test_config_defaults_keep_existing_installs_unencrypted(tmp_path):
    enc = _load(tmp_path, "").encryption
    assert enc.enabled is False and enc.public_keys_dir.is_absolute() and enc.private_keys_dir.is_absolute()


def test_config_env_overrides_and_refusals_name_the_key(tmp_path):
    enc = _load(tmp_path, "", {"CALLPROOF_ENCRYPTION_ENABLED": "true",
                               "CALLPROOF_ENCRYPTION_PRIVATE_KEYS_DIR": "/srv/keys/private"}).encryption
    assert enc.enabled and str(enc.private_keys_dir) == "/srv/keys/private"
    for text, key in (('[encryption]\npublic_keys_dir = "keys/public"', "encryption.public_keys_dir"),
                      ('[encryption]\npublic_keys_dir = "/k"\nprivate_keys_dir = "/k"', "encryption.public_keys_dir"),
                      ("[encryption]\nmonths_ahead = 0", "encryption.months_ahead"),
                      ("[encryption]\ndestroy_margin_days = 0", "encryption.destroy_margin_days"),
                      ('[encryption]\nprivate_keys_credential = "a/b"', "encryption.private_keys_credential"),
                      ('[encryption]\nenabled = "yes"', "encryption.enabled")):
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, text)
        assert err.value.key == key, text
