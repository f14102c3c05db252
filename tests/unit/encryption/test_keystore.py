"""Creating, exporting, listing and destroying keys on disk (callproof/encryption/keystore.py)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime

import pytest

from callproof.encryption.keyring import KeyringError, PrivateKeyring, PublicKeyring
from callproof.encryption.keystore import (
    create_key,
    destroy_private_key,
    export_public,
    list_keys,
    new_hold_key,
    period_over,
    top_up,
)
from tests.unit.encryption.keyworld import KEYS_MADE, MARCH, key_config, make_keys


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_the_hold_key_and_period_keys_ahead_private(tmp_path):
    config = key_config(tmp_path)
    ring = make_keys(config)
    directory = config.encryption.private_keys_dir
    assert _mode(directory) == 0o700
    # 90 days from 1 Dec 2026 is March 2027; one month back for late recordings, 6 ahead
    assert ring.key_ids() == [f"consumer_service-2027-{m:02d}" for m in range(2, 10)] + ["hold-1"]
    for key_file in directory.glob("*.key"):
        assert _mode(key_file) == 0o600
        assert key_file.read_text().startswith("# created: ")  # age-keygen's format
        assert "AGE-SECRET-KEY-1" in key_file.read_text()


def test_topping_up_is_idempotent_and_adds_only_what_is_missing(tmp_path):
    config = key_config(tmp_path)
    make_keys(config)
    again = top_up(config.encryption.private_keys_dir, config.retention.classes, KEYS_MADE, 6, 7)
    assert again == []
    later = top_up(config.encryption.private_keys_dir, config.retention.classes,
                   datetime(2027, 2, 1, tzinfo=UTC), 6, 7)
    assert [k for k, _ in later] == ["consumer_service-2027-10", "consumer_service-2027-11"]


def test_a_destroyed_key_is_never_made_again(tmp_path):
    config = key_config(tmp_path)
    make_keys(config)
    directory = config.encryption.private_keys_dir
    destroy_private_key(directory, MARCH, at=KEYS_MADE, reason="test")
    assert top_up(directory, config.retention.classes, KEYS_MADE, 6, 7) == []
    assert not (directory / f"{MARCH}.key").exists()
    with pytest.raises(KeyringError, match="never reused"):
        create_key(directory, MARCH)


def test_a_key_file_is_never_overwritten(tmp_path):
    config = key_config(tmp_path)
    make_keys(config)
    before = (config.encryption.private_keys_dir / f"{MARCH}.key").read_text()
    with pytest.raises(KeyringError, match="never overwritten"):
        create_key(config.encryption.private_keys_dir, MARCH)
    assert (config.encryption.private_keys_dir / f"{MARCH}.key").read_text() == before


def test_destroying_leaves_a_record_without_the_key(tmp_path):
    config = key_config(tmp_path)
    ring = make_keys(config)
    directory = config.encryption.private_keys_dir
    secret = ring.identity(MARCH).secret_string()
    fingerprint = destroy_private_key(directory, MARCH, at=KEYS_MADE, reason="period over")
    assert fingerprint == ring.identity(MARCH).recipient.fingerprint
    assert not (directory / f"{MARCH}.key").exists()
    record = json.loads((directory / f"{MARCH}.destroyed").read_text())
    assert record["fingerprint"] == fingerprint and record["key_id"] == MARCH
    assert secret not in (directory / f"{MARCH}.destroyed").read_text()
    assert MARCH not in PrivateKeyring.from_dir(directory).key_ids()
    assert [i.state for i in list_keys(directory, None) if i.key_id == MARCH] == ["destroyed"]


def test_export_writes_public_keys_only_and_withdraws_destroyed_ones(tmp_path):
    config = key_config(tmp_path)
    make_keys(config)
    enc = config.encryption
    written, removed = export_public(enc.private_keys_dir, enc.public_keys_dir)
    assert len(written) == 9 and removed == []
    assert all("AGE-SECRET-KEY" not in p.read_text() for p in enc.public_keys_dir.iterdir())
    assert all(_mode(p) == 0o644 for p in enc.public_keys_dir.iterdir())
    assert export_public(enc.private_keys_dir, enc.public_keys_dir) == ([], [])
    destroy_private_key(enc.private_keys_dir, MARCH, at=KEYS_MADE, reason="test")
    assert export_public(enc.private_keys_dir, enc.public_keys_dir) == ([], [MARCH])
    ring = PublicKeyring.from_dir(enc.public_keys_dir)
    assert MARCH not in ring.key_ids()


def test_a_new_hold_key_after_a_compromise_becomes_the_current_one(tmp_path):
    config = key_config(tmp_path)
    make_keys(config)
    key_id, _ = new_hold_key(config.encryption.private_keys_dir, KEYS_MADE)
    assert key_id == "hold-2"
    assert PrivateKeyring.from_dir(config.encryption.private_keys_dir).hold_recipients().key_ids == ("hold-2",)


def test_a_period_is_over_only_after_its_month_and_the_margin():
    assert not period_over("2027-03", datetime(2027, 4, 7, 23, 59, tzinfo=UTC), 7)
    assert period_over("2027-03", datetime(2027, 4, 8, 0, 0, tzinfo=UTC), 7)
    assert period_over("2027-12", datetime(2028, 1, 8, tzinfo=UTC), 7)


def test_list_shows_fingerprints_never_secrets(tmp_path):
    config = key_config(tmp_path)
    ring = make_keys(config)
    infos = list_keys(config.encryption.private_keys_dir, config.encryption.public_keys_dir)
    hold = next(i for i in infos if i.key_id == "hold-1")
    assert hold.kind == "hold" and hold.state == "active"
    assert hold.fingerprint == ring.identity("hold-1").recipient.fingerprint


def test_a_lost_key_keeps_its_id_and_leaves_the_pbx_directory(tmp_path):
    config = key_config(tmp_path)
    make_keys(config)
    enc = config.encryption
    export_public(enc.private_keys_dir, enc.public_keys_dir)
    (enc.private_keys_dir / f"{MARCH}.key").unlink()  # a disk error, an operator's mistake
    assert [i.state for i in list_keys(enc.private_keys_dir, None) if i.key_id == MARCH] == ["LOST"]
    assert top_up(enc.private_keys_dir, config.retention.classes, KEYS_MADE, 6, 7) == []  # id never reused
    assert export_public(enc.private_keys_dir, enc.public_keys_dir) == ([], [MARCH])


def test_a_replaced_period_key_is_what_the_pbx_encrypts_to_next(tmp_path):
    from callproof.encryption.keystore import replace_key

    config = key_config(tmp_path)
    make_keys(config)
    enc = config.encryption
    export_public(enc.private_keys_dir, enc.public_keys_dir)
    pbx = PublicKeyring.from_dir(enc.public_keys_dir)
    in_march = datetime(2027, 3, 10, tzinfo=UTC)
    assert pbx.recipients_for("consumer_service", in_march).key_ids == (MARCH,)
    new_id, new = replace_key(enc.private_keys_dir, MARCH, KEYS_MADE)
    assert new_id == f"{MARCH}.2"
    export_public(enc.private_keys_dir, enc.public_keys_dir)
    chosen = pbx.recipients_for("consumer_service", in_march)  # the running PBX, no restart
    assert chosen.key_ids == (new_id,) and chosen.recipients == (new.recipient,)
    with pytest.raises(KeyringError, match=f"replaced already, by {MARCH}.2"):
        replace_key(enc.private_keys_dir, MARCH, KEYS_MADE)
    assert replace_key(enc.private_keys_dir, f"{MARCH}.2", KEYS_MADE)[0] == f"{MARCH}.3"
    assert replace_key(enc.private_keys_dir, "hold-1", KEYS_MADE)[0] == "hold-2"
    ring = PrivateKeyring.from_dir(enc.private_keys_dir)
    assert {MARCH, f"{MARCH}.2", f"{MARCH}.3"} <= set(ring.key_ids()) and ring.hold_key_id == "hold-2"
